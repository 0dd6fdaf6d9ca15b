import Foundation
import Testing

/// Real containers through the real agent and CLI (issue 2 acceptance).
@Suite(.serialized, .enabled(if: Prerequisites.available, "needs root, busybox and the built binaries"))
final class LifecycleTests {
    let agent: TestAgent

    init() throws {
        agent = try TestAgent()
        try agent.importBusybox()
    }

    deinit { agent.destroy() }

    @Test func launchedContainerIsIsolated() throws {
        try agent.ok(["launch", "busybox", "c1", "-c", "limits.memory=64MiB", "-c", "limits.processes=200", "-c", "limits.cpu=1"])
        let csv = try agent.ok(["list", "--format", "csv"])
        #expect(csv.contains("c1,RUNNING"), "list: \(csv)")

        // PID 1 is our init and a session leader.
        let stat = try agent.ok(["exec", "c1", "--", "cat", "/proc/1/stat"])
        let fields = stat.split(separator: " ")
        #expect(fields.count > 6 && fields[0] == "1" && fields[5] == "1", "pid 1 must be its own session leader: \(stat)")
        #expect(try agent.ok(["exec", "c1", "--", "cat", "/proc/1/cmdline"]).contains("init"))
        #expect(try agent.ok(["exec", "c1", "--", "hostname"]).trimmingCharacters(in: .whitespacesAndNewlines) == "c1")

        // Unprivileged: root inside maps to a 65536-id host range.
        let uidMap = try agent.ok(["exec", "c1", "--", "cat", "/proc/self/uid_map"]).split(whereSeparator: \.isWhitespace)
        #expect(uidMap.count == 3 && uidMap[0] == "0" && uidMap[2] == "65536" && uidMap[1] != "0", "uid_map: \(uidMap)")

        let status = try agent.ok(["exec", "c1", "--", "cat", "/proc/1/status"])
        #expect(status.contains("Seccomp:\t2"), "seccomp filter mode expected")
        let capBnd = status.split(separator: "\n").first { $0.hasPrefix("CapBnd:") }.map { String($0.dropFirst(7)).trimmingCharacters(in: .whitespaces) } ?? ""
        let bound = UInt64(capBnd, radix: 16) ?? .max
        for (cap, bit) in [("sys_module", 16), ("sys_rawio", 17), ("sys_time", 25), ("mac_override", 32), ("mac_admin", 33)] {
            #expect(bound & (1 << UInt64(bit)) == 0, "\(cap) must be dropped from the bounding set (CapBnd \(capBnd))")
        }

        // The memory limit is in the container's cgroup (v1 or v2), named `<project>_<name>`.
        let limitFiles = [
            "/sys/fs/cgroup/memory/lxd-swift/\(agent.name)/default_c1/memory.limit_in_bytes",
            "/sys/fs/cgroup/lxd-swift/\(agent.name)/default_c1/memory.max",
        ]
        let limit = limitFiles.compactMap { try? String(contentsOfFile: $0, encoding: .utf8) }.first?.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(limit == "\(64 << 20)", "memory limit file: \(limit ?? "missing")")

        // Denied syscalls answer EPERM inside (busybox's modprobe-free check: delete_module via rmmod).
        let rm = try agent.ctl(["exec", "c1", "--", "rmmod", "nonexistent"])
        #expect(rm.status != 0)
    }

    @Test func execExitCodesAndStdin() throws {
        try agent.ok(["launch", "busybox", "e1"])
        #expect(try agent.ctl(["exec", "e1", "--", "sh", "-c", "exit 42"]).status == 42)
        #expect(try agent.ctl(["exec", "e1", "--", "true"]).status == 0)
        let echoed = try agent.ctl(["exec", "e1", "-T", "--", "cat"], stdin: "hello from stdin\nline two\n")
        #expect(echoed.status == 0)
        #expect(echoed.stdout == "hello from stdin\nline two\n")
        let err = try agent.ctl(["exec", "e1", "--", "sh", "-c", "echo oops >&2; exit 3"])
        #expect(err.status == 3 && err.stderr.contains("oops"))
        #expect(try agent.ctl(["exec", "e1", "--", "/no/such/command"]).status == 127)
    }

    @Test func stopStartDeleteLeaveNothingBehind() throws {
        try agent.ok(["launch", "busybox", "s1"])
        let pid = try #require(Int32(agent.ok(["list", "--format", "csv"]).split(separator: "\n").first { $0.hasPrefix("s1,") }?.split(separator: ",")[2] ?? ""))
        try agent.ok(["stop", "s1"])
        #expect(kill(pid, 0) != 0, "init must be gone after stop")
        #expect(try agent.ok(["list", "--format", "csv"]).contains("s1,STOPPED"))
        try agent.ok(["start", "s1"])
        #expect(try agent.ok(["list", "--format", "csv"]).contains("s1,RUNNING"))
        try agent.ok(["restart", "s1", "--force"])
        try agent.ok(["stop", "s1", "--force"])
        try agent.ok(["delete", "s1"])
        let mounts = try String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)
        // Host names carry the project: `<project>_<name>`.
        #expect(!mounts.contains("\(agent.dataDir)/containers/default_s1"), "no mount of s1 may remain")
        #expect(!FileManager.default.fileExists(atPath: "\(agent.dataDir)/containers/default_s1"))
        for dir in ["/sys/fs/cgroup/memory/lxd-swift/\(agent.name)/default_s1", "/sys/fs/cgroup/pids/lxd-swift/\(agent.name)/default_s1",
                    "/sys/fs/cgroup/lxd-swift/\(agent.name)/default_s1", "/sys/fs/cgroup/unified/lxd-swift/\(agent.name)/default_s1"] {
            #expect(!FileManager.default.fileExists(atPath: dir), "cgroup \(dir) must be removed")
        }
    }

    /// systemd needs a cgroup2 tree of its own: the container's cgroup2 directory is mounted at
    /// its /sys/fs/cgroup, its root may make groups there, and a stop removes them all.
    @Test func containerOwnsItsCgroup2Tree() throws {
        try agent.ok(["launch", "busybox", "g1"])
        let mounts = try agent.ok(["exec", "g1", "--", "cat", "/proc/self/mounts"])
        #expect(mounts.contains("cgroup2 /sys/fs/cgroup cgroup2"), "mounts: \(mounts)")
        #expect(try agent.ok(["exec", "g1", "--", "cat", "/proc/1/cgroup"]).hasSuffix("0::/\n"))
        try agent.ok(["exec", "g1", "--", "sh", "-c", "mkdir -p /sys/fs/cgroup/a/b && echo $$ > /sys/fs/cgroup/a/b/cgroup.procs && cat /proc/self/cgroup"])
        let host = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"].map { "\($0)/lxd-swift/\(agent.name)/default_g1" }
            .first { FileManager.default.fileExists(atPath: $0 + "/cgroup.procs") }
        let dir = try #require(host, "the container's cgroup2 directory on the host")
        #expect(FileManager.default.fileExists(atPath: dir + "/a/b"))
        // Nothing outside its own tree is visible or writable.
        #expect(try agent.ctl(["exec", "g1", "--", "sh", "-c", "echo $$ > /sys/fs/cgroup/../cgroup.procs"]).status != 0)
        try agent.ok(["stop", "g1"])
        #expect(!FileManager.default.fileExists(atPath: dir), "stop must remove \(dir) and the groups made inside")
    }

    /// A reboot from inside (the kernel ends init with SIGHUP) starts the container again; a
    /// power-off from inside leaves it stopped.
    @Test func rebootAndPowerOffFromInside() throws {
        try agent.ok(["launch", "busybox", "r1"])
        func pid() throws -> String? {
            try agent.ok(["list", "--format", "csv"]).split(separator: "\n").first { $0.hasPrefix("r1,RUNNING,") }
                .map { String($0.split(separator: ",")[2]) }
        }
        let first = try #require(try pid())
        _ = try agent.ctl(["exec", "r1", "--", "reboot", "-f"])
        var second: String?
        for _ in 0..<300 {
            if let p = try pid(), p != first { second = p; break }
            usleep(100_000)
        }
        #expect(second != nil, "r1 must be running again with a new init after reboot -f")
        #expect(try agent.ok(["exec", "r1", "--", "echo", "back"]) == "back\n")
        _ = try agent.ctl(["exec", "r1", "--", "poweroff", "-f"])
        var stopped = false
        for _ in 0..<300 {
            if try agent.ok(["list", "--format", "csv"]).contains("r1,STOPPED") { stopped = true; break }
            usleep(100_000)
        }
        #expect(stopped, "r1 must stay stopped after poweroff -f")
    }

    @Test func containersSurviveAgentCrash() throws {
        try agent.ok(["launch", "busybox", "k1"])
        let before = try agent.ok(["list", "--format", "csv"])
        agent.kill9()
        try agent.start()
        let after = try agent.ok(["list", "--format", "csv"])
        #expect(after.contains("k1,RUNNING"), "after restart: \(after)")
        func pid(_ csv: String) -> Substring? { csv.split(separator: "\n").first { $0.hasPrefix("k1,") }?.split(separator: ",")[2] }
        #expect(pid(before) != nil && pid(before) == pid(after), "same pid after re-adoption: \(before) / \(after)")
        #expect(try agent.ok(["exec", "k1", "--", "echo", "still here"]) == "still here\n")
        try agent.ok(["stop", "k1", "--force"])
        #expect(try agent.ok(["list", "--format", "csv"]).contains("k1,STOPPED"))
    }

    /// An agent restarted on a data directory of the layout before projects (`containers/<name>`)
    /// keeps its instances: the stopped one moves to `containers/default_<name>` with its files,
    /// the running one is adopted as it was.
    @Test func upgradeFromTheLayoutBeforeProjects() throws {
        try agent.ok(["launch", "busybox", "u1"])
        try agent.ok(["launch", "busybox", "u2"])
        try agent.ok(["exec", "u2", "--", "sh", "-c", "echo kept > /root/note"])
        try agent.ok(["stop", "u2", "--force"])
        let before = try agent.ok(["list", "--format", "csv"])
        agent.stop()
        // u2 as the previous layout kept it: the bare name, and config.json pointing there.
        let containers = "\(agent.dataDir)/containers"
        try #require(rename("\(containers)/default_u2", "\(containers)/u2") == 0)
        let config = try String(contentsOfFile: "\(containers)/u2/config.json", encoding: .utf8)
        try config.replacingOccurrences(of: "default_u2", with: "u2").write(toFile: "\(containers)/u2/config.json", atomically: true, encoding: .utf8)

        try agent.start()
        let after = try agent.ok(["list", "--format", "csv"])
        /// "name,STATUS,pid,..." of `name`, as STATUS,pid.
        func row(_ csv: String, _ name: String) -> String? {
            csv.split(separator: "\n").first { $0.hasPrefix("\(name),") }.map { $0.split(separator: ",").dropFirst().prefix(2).joined(separator: ",") }
        }
        #expect(row(after, "u1") == row(before, "u1") && row(after, "u1")?.hasPrefix("RUNNING,") == true, "u1 re-adopted: \(before) / \(after)")
        #expect(row(after, "u2")?.hasPrefix("STOPPED") == true, "\(after)")
        #expect(FileManager.default.fileExists(atPath: "\(containers)/default_u2/config.json"))
        #expect(!FileManager.default.fileExists(atPath: "\(containers)/u2"))
        try agent.ok(["start", "u2"])
        #expect(try agent.ok(["exec", "u2", "--", "cat", "/root/note"]) == "kept\n")
        for name in ["u1", "u2"] {
            try agent.ok(["stop", name, "--force"])
            try agent.ok(["delete", name])
        }
    }

    @Test func filesAndConsole() throws {
        try agent.ok(["launch", "busybox", "f1"])
        let src = "\(agent.dataDir)/push-src"
        try "pushed content\n".write(toFile: src, atomically: true, encoding: .utf8)
        try agent.ok(["file", "push", src, "f1/root/pushed.txt"])
        #expect(try agent.ok(["exec", "f1", "--", "cat", "/root/pushed.txt"]) == "pushed content\n")
        #expect(try agent.ok(["file", "pull", "f1/root/pushed.txt", "-"]) == "pushed content\n")
        // A symlink inside the container must not lead a pull to the host's files.
        try agent.ok(["exec", "f1", "--", "ln", "-s", "/etc/shadow", "/root/evil"])
        let pulled = try agent.ctl(["file", "pull", "f1/root/evil", "-"])
        #expect(!pulled.stdout.contains("root:"), "pull followed a container symlink to the host")
        _ = try agent.ctl(["console", "f1", "--show-log"])
    }
}
