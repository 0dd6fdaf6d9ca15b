import Foundation
import Testing

/// Renames of real containers through the real agent: lxdctl's, and LXD's own `lxc rename`.
@Suite(.serialized, .enabled(if: Prerequisites.available, "needs root, busybox and the built binaries"))
final class RenameTests {
    let agent: TestAgent

    init() throws {
        agent = try TestAgent()
        try agent.importBusybox()
    }

    deinit { agent.destroy() }

    func list() throws -> String { try agent.ok(["list", "--format", "csv"]) }

    func containerDirectory(_ name: String) -> String { "\(agent.dataDir)/containers/default_\(name)" }

    /// A running instance and a taken name are refused and change nothing; a stopped instance
    /// takes the new name with its files, starts under it (hostname, cgroup) and runs commands.
    @Test func aStoppedInstanceIsRenamedAndStartsUnderItsNewName() throws {
        try agent.ok(["launch", "busybox", "r1"])
        try agent.ok(["exec", "r1", "--", "sh", "-c", "echo kept > /root/note"])
        let running = try agent.ctl(["rename", "r1", "r2"])
        #expect(running.status == 1 && running.stderr.contains("stop it first"), "\(running.stderr)")
        #expect(try list().contains("r1,RUNNING"))

        try agent.ok(["stop", "r1"])
        try agent.ok(["init", "busybox", "taken"])
        let taken = try agent.ctl(["rename", "r1", "taken"])
        #expect(taken.status == 1 && taken.stderr.contains("already exists"), "\(taken.stderr)")
        let invalid = try agent.ctl(["rename", "r1", "1bad"])
        #expect(invalid.status == 1 && invalid.stderr.contains("Invalid instance name"), "\(invalid.stderr)")

        try agent.ok(["rename", "r1", "r2"])
        let csv = try list()
        #expect(csv.contains("r2,STOPPED") && !csv.contains("r1,"), "list: \(csv)")
        #expect(!FileManager.default.fileExists(atPath: containerDirectory("r1")))
        #expect(FileManager.default.fileExists(atPath: containerDirectory("r2") + "/config.json"))
        #expect(!FileManager.default.fileExists(atPath: containerDirectory("r2") + "/rename.json"), "a finished rename leaves no marker")

        try agent.ok(["start", "r2"])
        #expect(try agent.ok(["exec", "r2", "--", "cat", "/root/note"]) == "kept\n")
        #expect(try agent.ok(["exec", "r2", "--", "hostname"]) == "r2\n")
        #expect(try agent.ctl(["exec", "r2", "--", "sh", "-c", "exit 7"]).status == 7)
        let cgroups = ["/sys/fs/cgroup/pids/lxd-swift/\(agent.name)/default_r2", "/sys/fs/cgroup/lxd-swift/\(agent.name)/default_r2"]
        #expect(cgroups.contains { FileManager.default.fileExists(atPath: $0) }, "the running container's cgroup carries the new name")
        #expect(try agent.ctl(["info", "r1"]).status == 1)
    }

    /// The agent killed after moving the files and before the commit (made here by hand: the
    /// directory moved with its marker, the row untouched): its next start moves the files back
    /// before autostart, and the instance starts with them under its name.
    @Test func aRenameCutByAnAgentCrashIsSettledAtTheNextStart() throws {
        try agent.ok(["launch", "busybox", "k1"])
        try agent.ok(["exec", "k1", "--", "sh", "-c", "echo kept > /root/note"])
        try agent.ok(["stop", "k1"])
        agent.kill9()
        let marker = #"{"from":"default_k1","to":"default_k2"}"#
        try marker.write(toFile: containerDirectory("k1") + "/rename.json", atomically: true, encoding: .utf8)
        try FileManager.default.moveItem(atPath: containerDirectory("k1"), toPath: containerDirectory("k2"))
        try agent.start()
        // Settling runs before autostart, alongside the API: wait for the files' way back.
        var settled = false
        for _ in 0..<100 where !settled {
            settled = FileManager.default.fileExists(atPath: containerDirectory("k1") + "/config.json")
                && !FileManager.default.fileExists(atPath: containerDirectory("k1") + "/rename.json")
            if !settled { usleep(100_000) }
        }
        #expect(settled, "k1's files are back under its name, marker gone: \(agent.logTail())")
        #expect(!FileManager.default.fileExists(atPath: containerDirectory("k2")))
        try agent.ok(["start", "k1"])
        #expect(try agent.ok(["exec", "k1", "--", "cat", "/root/note"]) == "kept\n")
    }

    static let lxc = "/usr/bin/lxc"

    /// Debian's `lxc` 5.0.2 (package lxd-client) renames through its own request shape.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: lxc), "needs LXD's client at /usr/bin/lxc (apt-get install lxd-client)"))
    func lxcRenameWorksAgainstTheAgent() throws {
        try agent.ok(["init", "busybox", "x1"])
        let home = agent.dataDir + "/lxc-home"
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
        let (renamed, timedOut) = try run(Self.lxc, ["rename", "x1", "x2"], environment: ["LXD_DIR": agent.dataDir, "HOME": home], timeout: 60)
        #expect(!timedOut && renamed.status == 0, "lxc rename: \(renamed.stdout) \(renamed.stderr)")
        let csv = try list()
        #expect(csv.contains("x2,STOPPED") && !csv.contains("x1,"), "list: \(csv)")
    }
}
