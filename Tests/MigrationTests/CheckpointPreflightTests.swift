import Testing
@testable import Migration

@Suite struct CheckpointPreflightTests {
    static func process(_ pid: Int32, _ command: String, unit: String? = nil, uts: String = "uts:[1]", ipc: String = "ipc:[2]",
                        mnt: String? = nil) -> CheckpointPreflight.Process {
        var ns = ["uts": uts, "ipc": ipc, "user": "user:[3]", "pid": "pid:[4]", "cgroup": "cgroup:[5]", "time": "time:[6]"]
        if let mnt { ns["mnt"] = mnt }
        return CheckpointPreflight.Process(pid: pid, command: command, unit: unit, namespaces: ns)
    }

    @Test func aUnitWithItsOwnHostnameIsNamedWithTheFix() {
        // Debian 12's systemd-logind runs with ProtectHostname=yes.
        let problems = CheckpointPreflight.problems(
            initProcess: Self.process(1, "systemd"),
            processes: [Self.process(30, "systemd-logind", unit: "systemd-logind.service", uts: "uts:[9]"),
                        Self.process(31, "agetty", unit: "console-getty.service")])
        #expect(problems.count == 1)
        let text = problems.first ?? ""
        for part in ["process 30", "systemd-logind.service", "uts", "systemctl edit systemd-logind.service", "ProtectHostname=no"] {
            #expect(text.contains(part), "missing \(part) in: \(text)")
        }
    }

    @Test func nestedMountAndNetworkNamespacesAreFine() {
        // PrivateTmp=, ProtectSystem= and PrivateNetwork= make mount and network namespaces: CRIU takes those.
        let problems = CheckpointPreflight.problems(
            initProcess: Self.process(1, "systemd", mnt: "mnt:[1]"),
            processes: [Self.process(40, "journald", unit: "systemd-journald.service", mnt: "mnt:[77]")])
        #expect(problems.isEmpty)
    }

    @Test func severalKindsAndNoUnit() {
        let problems = CheckpointPreflight.problems(
            initProcess: Self.process(1, "init"),
            processes: [Self.process(7, "unshare", uts: "uts:[8]", ipc: "ipc:[9]")])
        #expect(problems == ["process 7 (unshare, no systemd unit) has its own uts, ipc namespace, which CRIU cannot checkpoint "
                             + "(only nested mount and network namespaces): end that process before the checkpoint"])
    }

    @Test func unitComesFromTheCgroup2Path() {
        #expect(CheckpointPreflight.unit(cgroupFile: "9:pids:/\n0::/system.slice/systemd-logind.service\n") == "systemd-logind.service")
        #expect(CheckpointPreflight.unit(cgroupFile: "0::/user.slice/user-0.slice/session-1.scope\n") == "session-1.scope")
        #expect(CheckpointPreflight.unit(cgroupFile: "0::/init.scope\n") == "init.scope")
        #expect(CheckpointPreflight.unit(cgroupFile: "0::/\n") == nil)
        #expect(CheckpointPreflight.unit(cgroupFile: "") == nil)
    }
}
