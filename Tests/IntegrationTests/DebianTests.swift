import Foundation
import Glibc
import Testing

/// The Debian 12 image with systemd (scripts/make-debian-image), as users run it: boot to
/// `running`, journal, hostname from the image's templates, console, a terminal, clean
/// shutdown, reboot from inside, and a stateful stop and start. Bounds (60 s) only catch
/// hangs; the speed is measured by scripts/bench/lifecycle --image debian.
enum DebianImage {
    static let path = ProcessInfo.processInfo.environment["LXD_SWIFT_TEST_DEBIAN_IMAGE"]
    /// Skipped only when no image was asked for (a bare `swift test`); `make test` builds the
    /// image and sets the variable, and then a missing file fails the suite.
    static let skipReason: String? = {
        if let missing = Prerequisites.missing { return missing }
        if path == nil { return "LXD_SWIFT_TEST_DEBIAN_IMAGE is not set (make test builds the image with scripts/make-debian-image)" }
        return nil
    }()
}

@Suite(.serialized, .enabled(if: DebianImage.skipReason == nil, Comment(rawValue: DebianImage.skipReason ?? "")))
final class DebianTests {
    let agent: TestAgent

    init() throws {
        let image = try #require(DebianImage.path)
        guard FileManager.default.fileExists(atPath: image) else { throw HarnessError("Debian image \(image) is missing: run scripts/make-debian-image \(image)") }
        agent = try TestAgent()
        try agent.ok(["image", "import", image, "--alias", "debian12"])
    }

    deinit { agent.destroy() }

    /// Polls `body` every 200 ms for up to `seconds`; true once it held.
    func eventually(_ seconds: Double = 60, _ body: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try body() { return true }
            usleep(200_000)
        }
        return try body()
    }

    func systemState(_ name: String) throws -> String {
        try agent.ctl(["exec", name, "--", "systemctl", "is-system-running"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Launches and waits until systemd reports `running`; records the failed units otherwise.
    func boot(_ name: String) throws {
        try agent.ok(["launch", "debian12", name])
        var state = ""
        let settled = try eventually { state = try systemState(name); return state == "running" || state == "degraded" }
        if state != "running" {
            let failed = try agent.ctl(["exec", name, "--", "systemctl", "--failed", "--no-legend", "--plain"]).stdout
            Issue.record("\(name): systemd is \(settled ? state : "still \"\(state)\" after 60 s"); failed units: \(failed)")
        }
    }

    func pid(_ name: String) throws -> String? {
        try agent.ok(["list", "--format", "csv"]).split(separator: "\n").first { $0.hasPrefix("\(name),RUNNING,") }
            .map { String($0.split(separator: ",")[2]) }
    }

    @Test func bootsToRunningWithJournalHostnameAndCgroups() throws {
        try boot("d1")
        #expect(try agent.ok(["exec", "d1", "--", "hostname"]) == "d1\n")
        // systemd knows it runs in a container, and which kind (container=lxc from the runtime).
        #expect(try agent.ok(["exec", "d1", "--", "systemd-detect-virt", "--container"]) == "lxc\n")
        // /etc/hostname and /etc/hosts come from the image's create templates.
        #expect(try agent.ok(["exec", "d1", "--", "cat", "/etc/hostname"]) == "d1\n")
        let hosts = try agent.ok(["exec", "d1", "--", "cat", "/etc/hosts"])
        #expect(hosts.contains("d1"), "/etc/hosts: \(hosts)")
        let journal = try agent.ok(["exec", "d1", "--", "journalctl", "-b", "--no-pager", "-q"])
        #expect(journal.contains("Reached target"), "journalctl -b: \(journal.suffix(500))")
        #expect(try agent.ok(["exec", "d1", "--", "stat", "-fc", "%T", "/sys/fs/cgroup"]) == "cgroup2fs\n")
        #expect(try agent.ok(["exec", "d1", "--", "cat", "/proc/1/cgroup"]).hasSuffix("0::/init.scope\n"))
        // Still unprivileged: root inside is a mapped id.
        let uidMap = try agent.ok(["exec", "d1", "--", "cat", "/proc/self/uid_map"]).split(whereSeparator: \.isWhitespace)
        #expect(uidMap.count == 3 && uidMap[0] == "0" && uidMap[1] != "0")
        #expect(try agent.ctl(["exec", "d1", "--", "sh", "-c", "echo 3 > /proc/sys/vm/drop_caches"]).status != 0)
    }

    @Test func consoleIsATerminalWithTheBootLogAndALoginPrompt() throws {
        try boot("c1")
        let stat = try agent.ok(["exec", "c1", "--", "stat", "-c", "%F %t", "/dev/console"])
        #expect(stat == "character special file 88\n", "a pts (major 136 = 0x88): \(stat)")
        var log = ""
        let prompt = try eventually(30) {
            log = try agent.ok(["console", "c1", "--show-log"])
            return log.contains("c1 login:")
        }
        #expect(prompt, "console log: \(log.suffix(800))")
        #expect(log.contains("Reached target"))
        // A terminal for exec: bash with a terminal on stdin and stdout. (It is a pty of the
        // host's devpts, so `tty` cannot name it inside: docs/images.md, known limits.)
        let tty = try agent.ctl(["exec", "-t", "c1", "--", "bash", "-c", "[ -t 0 ] && [ -t 1 ] && echo interactive $0"])
        #expect(tty.status == 0 && tty.stdout.contains("interactive bash"), "\(tty)")
    }

    @Test func stopShutsSystemdDownCleanly() throws {
        try boot("s1")
        let before = Date()
        try agent.ok(["stop", "s1", "--timeout", "50"])
        #expect(Date().timeIntervalSince(before) < 50)
        #expect(try agent.ok(["list", "--format", "csv"]).contains("s1,STOPPED"))
        // systemd's own shutdown (SIGRTMIN+3) ends with a halt: the kernel ends init with SIGINT.
        let log = agent.logTail(50_000)
        let ended = log.split(separator: "\n").filter { $0.contains("instance=s1 ") && $0.contains("container init ended") }
        #expect(ended.count == 1 && ended.allSatisfy { $0.contains("killed by signal 2") }, "s1's end in the agent log: \(ended)")
        #expect(!log.contains("did not stop in time"))
    }

    @Test func rebootFromInsideStartsItAgain() throws {
        try boot("r1")
        let first = try #require(try pid("r1"))
        _ = try agent.ctl(["exec", "r1", "--", "systemctl", "reboot"])
        let again = try eventually { (try pid("r1")).map { $0 != first } ?? false }
        #expect(again, "r1 must run again with a new init after systemctl reboot")
        var state = ""
        #expect(try eventually { state = try systemState("r1"); return state == "running" }, "after reboot: \(state)")
    }

    /// Without the image's logind drop-in, logind has its own uts namespace (ProtectHostname=),
    /// which CRIU cannot dump: the stateful stop is refused before any freeze, naming the unit
    /// and the fix, and the container runs on untouched.
    @Test(.enabled(if: Prerequisites.criuAvailable, "needs CRIU (scripts/install-criu)"))
    func anUncheckpointableUnitIsNamedAndNothingStops() throws {
        try boot("u1")
        let dropIn = "/etc/systemd/system/systemd-logind.service.d/lxd-checkpoint.conf"
        try agent.ok(["exec", "u1", "--", "sh", "-c", "rm \(dropIn) && systemctl daemon-reload && systemctl restart systemd-logind"])
        let pidBefore = try pid("u1")
        let refused = try agent.ctl(["stop", "--stateful", "u1"])
        #expect(refused.status != 0)
        for part in ["systemd-logind.service", "uts", "ProtectHostname=no", "keeps running"] {
            #expect(refused.stderr.contains(part), "missing \(part) in: \(refused.stderr)")
        }
        #expect(try pid("u1") == pidBefore, "the container must run on, untouched")
        #expect(try systemState("u1") == "running")
        #expect(!FileManager.default.fileExists(atPath: "\(agent.dataDir)/containers/default_u1/state"), "a refused dump leaves no state")
        try agent.ok(["stop", "u1"])
    }

    /// A restarted unit leaves an empty slice systemd watches and a new logind watching the
    /// timezone file: the checkpoint keeps the cgroup tree and finds the file, and the restore
    /// comes back `running` (both failed before).
    @Test(.enabled(if: Prerequisites.criuAvailable, "needs CRIU (scripts/install-criu)"))
    func statefulStopAndStartAfterAUnitRestart() throws {
        try boot("r1")
        try agent.ok(["exec", "r1", "--", "systemctl", "restart", "systemd-logind"])
        try agent.ok(["stop", "--stateful", "r1"])
        try agent.ok(["start", "r1"])
        #expect(try systemState("r1") == "running")
        try agent.ok(["stop", "r1"])
    }

    @Test(.enabled(if: Prerequisites.criuAvailable, "needs CRIU (scripts/install-criu)"))
    func statefulStopAndStartKeepsItRunning() throws {
        try boot("k1")
        let sleeper = try agent.ok(["exec", "k1", "--", "sh", "-c", "setsid sleep 1000 >/dev/null 2>&1 < /dev/null & echo $!"])
            .trimmingCharacters(in: .whitespacesAndNewlines)
        try agent.ok(["stop", "--stateful", "k1"])
        #expect(try agent.ok(["list", "--format", "csv"]).contains("k1,STOPPED"))
        try agent.ok(["start", "k1"])
        #expect(try systemState("k1") == "running")
        // The same processes: the sleeper kept its pid.
        #expect(try agent.ctl(["exec", "k1", "--", "kill", "-0", sleeper]).status == 0, "sleep \(sleeper) must survive the round trip")
        // The console still works after the restore.
        _ = try agent.ctl(["exec", "k1", "--", "sh", "-c", "echo restored-marker > /dev/console"])
        #expect(try eventually(10) { try agent.ok(["console", "k1", "--show-log"]).contains("restored-marker") })
        try agent.ok(["stop", "k1"])
    }
}
