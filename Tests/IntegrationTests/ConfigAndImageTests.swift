import Foundation
import Testing

@Suite(.serialized, .enabled(if: Prerequisites.available, "needs root, busybox and the built binaries"))
final class ConfigAndImageTests {
    let agent: TestAgent

    init() throws {
        agent = try TestAgent(name: "cfg")
        try agent.importBusybox()
    }

    deinit { agent.destroy() }

    /// The instance's cgroup leaf is its host name, `<project>_<name>` (InstanceRef.hostName).
    func memoryLimit(_ name: String) -> String? {
        ["/sys/fs/cgroup/memory/lxd-swift/\(agent.name)/default_\(name)/memory.limit_in_bytes", "/sys/fs/cgroup/lxd-swift/\(agent.name)/default_\(name)/memory.max"]
            .compactMap { try? String(contentsOfFile: $0, encoding: .utf8) }.first?.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test func liveConfigUpdates() throws {
        try agent.ok(["launch", "busybox", "cfg1", "-c", "limits.memory=64MiB"])
        #expect(memoryLimit("cfg1") == "\(64 << 20)")
        try agent.ok(["config", "set", "cfg1", "limits.memory=96MiB", "user.owner=ops"])
        #expect(memoryLimit("cfg1") == "\(96 << 20)", "a running instance gets the new limit at once")
        #expect(try agent.ok(["config", "get", "cfg1", "limits.memory"]).trimmingCharacters(in: .whitespacesAndNewlines) == "96MiB")
        let shown = try agent.ok(["config", "show", "cfg1"])
        #expect(shown.contains("user.owner: ops") && shown.contains("volatile.idmap.base"))
        // Not live-updatable while running; unknown keys refused; nothing changes.
        #expect(try agent.ctl(["config", "set", "cfg1", "security.privileged=true"]).status != 0)
        #expect(try agent.ctl(["config", "set", "cfg1", "limits.nonsense=1"]).status != 0)
        #expect(try agent.ok(["config", "get", "cfg1", "security.privileged"]).trimmingCharacters(in: .whitespacesAndNewlines).isEmpty)
        try agent.ok(["config", "unset", "cfg1", "user.owner"])
        #expect(!(try agent.ok(["config", "show", "cfg1"]).contains("user.owner")))
        let info = try agent.ok(["info", "cfg1"])
        #expect(info.contains("cfg1") && info.contains("Running") || info.contains("RUNNING"), "info: \(info)")
    }

    @Test func privilegedContainer() throws {
        try agent.ok(["launch", "busybox", "priv1", "-c", "security.privileged=true"])
        let map = try agent.ok(["exec", "priv1", "--", "cat", "/proc/self/uid_map"]).split(whereSeparator: \.isWhitespace)
        #expect(map.count == 3 && map[0] == "0" && map[1] == "0", "privileged runs without an id shift: \(map)")
        #expect(try agent.ok(["exec", "priv1", "--", "cat", "/proc/1/status"]).contains("Seccomp:\t2"))
        try agent.ok(["delete", "--force", "priv1"])
    }

    @Test func distinctIdRanges() throws {
        try agent.ok(["launch", "busybox", "id1"])
        try agent.ok(["launch", "busybox", "id2"])
        let a = try agent.ok(["exec", "id1", "--", "cat", "/proc/self/uid_map"]).split(whereSeparator: \.isWhitespace)
        let b = try agent.ok(["exec", "id2", "--", "cat", "/proc/self/uid_map"]).split(whereSeparator: \.isWhitespace)
        let baseA = Int(a[1]) ?? 0, baseB = Int(b[1]) ?? 0
        #expect(abs(baseA - baseB) >= 65536, "id ranges must not overlap: \(baseA) \(baseB)")
        try agent.ok(["delete", "--force", "id1"])
        try agent.ok(["delete", "--force", "id2"])
    }

    @Test func imageDeletedWhileInUseKeepsItsLayer() throws {
        // A different tarball (other init) so its layer is not shared with "busybox".
        let image = try TestImages.busybox(initKind: "counter")
        try agent.ok(["image", "import", image, "--alias", "bb2"])
        let fp = try #require(agent.ok(["image", "list", "--format", "csv"]).split(separator: "\n").first { $0.hasPrefix("bb2,") }?.split(separator: ",")[1])
        try agent.ok(["launch", "bb2", "user1"])
        try agent.ok(["image", "delete", "bb2"])
        // The cluster forgets the image, but the instance still runs from its layer.
        #expect(try agent.ok(["exec", "user1", "--", "echo", "ok"]) == "ok\n")
        try agent.ok(["restart", "user1", "--force"])
        #expect(try agent.ok(["list", "--format", "csv"]).contains("user1,RUNNING"))
        try agent.ok(["delete", "--force", "user1"])
        let layers = (try? FileManager.default.contentsOfDirectory(atPath: "\(agent.dataDir)/images")) ?? []
        #expect(layers.contains { $0.hasPrefix(String(fp.prefix(12))) } == false, "the last user removed the unreferenced layer: \(layers)")
    }

    @Test func interactiveExecUnderPTY() throws {
        try agent.ok(["launch", "busybox", "tty1"])
        // `script` gives lxdctl a real terminal on stdin and stdout.
        let cmd = "\(Paths.lxdctl) exec tty1 -t -- sh -c 'test -t 0 && test -t 1 && echo on-a-terminal; stty size; exit 7'"
        let r = try run("/usr/bin/script", ["-qec", cmd, "/dev/null"], environment: agent.env, stdin: "")
        #expect(r.status == 7, "exit code through the terminal: \(r.status) \(r.stdout)")
        #expect(r.stdout.contains("on-a-terminal"), "the command sees a terminal: \(r.stdout)")
        // stty reports the size lxdctl sent from its own terminal (script's default 24x80 or the caller's).
        #expect(r.stdout.range(of: #"\d+ \d+"#, options: .regularExpression) != nil, "window size set: \(r.stdout)")
    }
}
