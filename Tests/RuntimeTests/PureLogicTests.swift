import Testing
import Glibc
@testable import Runtime

@Suite struct CgroupLayoutTests {
    // Lines as on this host (hybrid: v1 controllers + an empty cgroup2).
    static let hybrid = """
    27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
    32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
    33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
    34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
    35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
    36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
    37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
    39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
    40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
    41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
    """

    @Test func detectsHybrid() throws {
        let l = try CgroupLayout.parse(mountinfo: Self.hybrid)
        #expect(l.version == .hybrid)
        #expect(l.unified == "/sys/fs/cgroup/unified")
        #expect(l.v1["memory"] == "/sys/fs/cgroup/memory")
        #expect(l.v1["systemd"] == nil)
        #expect(!l.usesV2)
        #expect(l.directories(relative: "p/m/c") == [
            "/sys/fs/cgroup/memory/p/m/c", "/sys/fs/cgroup/cpu/p/m/c", "/sys/fs/cgroup/cpuacct/p/m/c",
            "/sys/fs/cgroup/pids/p/m/c", "/sys/fs/cgroup/cpuset/p/m/c", "/sys/fs/cgroup/freezer/p/m/c",
            "/sys/fs/cgroup/devices/p/m/c", "/sys/fs/cgroup/unified/p/m/c",
        ])
        // Limits stay in v1; the container's own tree (for systemd) is the cgroup2 directory.
        #expect(l.delegatedDirectory(relative: "p/m/c") == "/sys/fs/cgroup/unified/p/m/c")
        #expect(l.directory(of: "memory", relative: "p/m/c") == "/sys/fs/cgroup/memory/p/m/c")
    }

    @Test func readsWhetherTheUnifiedMountFavorsDynamicMoves() throws {
        let plain = try CgroupLayout.parse(mountinfo: Self.hybrid)
        #expect(CgroupLayout.favorsDynamicMoves(mountinfo: Self.hybrid, unified: plain.unified) == false)
        let favoring = Self.hybrid.replacingOccurrences(of: "cgroup2 cgroup2 rw", with: "cgroup2 cgroup2 rw,favordynmods")
        #expect(CgroupLayout.favorsDynamicMoves(mountinfo: favoring, unified: plain.unified) == true)
        // Only the mount in use counts (not CRIU's temporary one), and v1-only hosts have none.
        let yard = favoring + "\n91 27 0:38 / /tmp/yard/unified rw - cgroup2 none rw"
        #expect(CgroupLayout.favorsDynamicMoves(mountinfo: yard, unified: "/tmp/yard/unified") == false)
        #expect(CgroupLayout.favorsDynamicMoves(mountinfo: yard, unified: nil) == nil)
    }

    @Test func detectsPureV2AndCoMountedV1() throws {
        let v2 = try CgroupLayout.parse(mountinfo: "30 1 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate")
        #expect(v2.version == .v2 && v2.usesV2)
        #expect(v2.directories(relative: "a/b") == ["/sys/fs/cgroup/a/b"])
        #expect(v2.directory(of: "memory", relative: "a/b") == "/sys/fs/cgroup/a/b")
        #expect(v2.delegatedDirectory(relative: "a/b") == "/sys/fs/cgroup/a/b")

        let v1 = try CgroupLayout.parse(mountinfo: """
        1 1 0:1 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
        2 1 0:2 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
        """)
        #expect(v1.version == .v1)
        #expect(v1.v1["cpu"] == v1.v1["cpuacct"])
        #expect(v1.directories(relative: "x") == ["/sys/fs/cgroup/memory/x", "/sys/fs/cgroup/cpu,cpuacct/x"])
        #expect(v1.delegatedDirectory(relative: "x") == nil)
    }

    /// CRIU mounts the hierarchies again under its images directory during a restore; a
    /// runtime created meanwhile must still use the system mounts.
    @Test func ignoresLaterDuplicateMounts() throws {
        let l = try CgroupLayout.parse(mountinfo: """
        /tmp/img/.criu.cgyard.x/memory
        """.isEmpty ? "" : Self.hybrid + """

        90 27 0:32 / /tmp/img/.criu.cgyard.x/memory rw,relatime - cgroup none rw,memory
        91 27 0:38 / /tmp/img/.criu.cgyard.x/unified rw,relatime - cgroup2 none rw
        """)
        #expect(l.v1["memory"] == "/sys/fs/cgroup/memory")
        #expect(l.unified == "/sys/fs/cgroup/unified")
        let yardFirst = try CgroupLayout.parse(mountinfo: """
        90 27 0:32 / /tmp/y/memory rw - cgroup none rw,memory
        35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
        """)
        #expect(yardFirst.v1["memory"] == "/sys/fs/cgroup/memory")
    }

    @Test func noCgroupsIsAnError() {
        #expect(throws: RuntimeError.self) { try CgroupLayout.parse(mountinfo: "1 1 0:1 / / rw - ext4 /dev/vda rw") }
    }

    @Test func limitPlans() {
        let v1 = CgroupLayout(version: .v1, v1: ["memory": "/m", "cpu": "/c", "pids": "/p"], unified: nil)
        let w = v1.limitWrites(Limits(memoryBytes: 64 << 20, cpuCores: 0.5, processes: 100))
        #expect(w.contains(CgroupWrite(controller: "memory", file: "memory.limit_in_bytes", value: "67108864")))
        #expect(w.contains(CgroupWrite(controller: "cpu", file: "cpu.cfs_quota_us", value: "50000")))
        #expect(w.contains(CgroupWrite(controller: "pids", file: "pids.max", value: "100")))
        let reset = v1.limitWrites(Limits())
        #expect(reset.contains(CgroupWrite(controller: "memory", file: "memory.limit_in_bytes", value: "-1")))
        #expect(reset.contains(CgroupWrite(controller: "cpu", file: "cpu.cfs_quota_us", value: "-1")))
        #expect(reset.contains(CgroupWrite(controller: "pids", file: "pids.max", value: "max")))

        let v2 = CgroupLayout(version: .v2, v1: [:], unified: "/sys/fs/cgroup")
        let w2 = v2.limitWrites(Limits(memoryBytes: 1000, cpuCores: 2, processes: nil))
        #expect(w2 == [
            CgroupWrite(controller: "memory", file: "memory.max", value: "1000"),
            CgroupWrite(controller: "cpu", file: "cpu.max", value: "200000 100000"),
            CgroupWrite(controller: "pids", file: "pids.max", value: "max"),
        ])
        // The kernel refuses quotas under 1 ms.
        #expect(v2.limitWrites(Limits(cpuCores: 0.001))[1].value == "1000 100000")
    }
}

@Suite struct HelperContractTests {
    @Test func startArguments() {
        let spec = ContainerSpec(instance: "c1", layerRootfs: "/img/l", idmap: IDMap(hostBase: 1_000_000),
                                 environment: ["PATH": "/bin", "A": "b=c"], initCommand: ["/sbin/init", "--x"])
        let p = HelperInvocation.Paths(dir: "/d/containers/c1")
        let a = HelperInvocation.start(helper: "/h", spec: spec, paths: p, cgroupDirs: ["/cg/m/c1"])
        #expect(Array(a.prefix(2)) == ["/h", "start"])
        for item in ["name=c1", "lower=/img/l", "upper=/d/containers/c1/upper", "work=/d/containers/c1/work",
                     "rootfs=/d/containers/c1/rootfs", "console=/d/containers/c1/console.log",
                     "uidmap=1000000:65536", "gidmap=1000000:65536", "cgroup=/cg/m/c1",
                     "deny=kexec_load", "dropcap=cap_sys_module", "env=A=b=c", "env=PATH=/bin", "env=HOME=/root"] {
            #expect(a.contains(item), "missing \(item)")
        }
        #expect(a.filter { $0.hasPrefix("arg=") } == ["arg=/sbin/init", "arg=--x"])
        #expect(a.contains("env=container=lxc"))
        // The cgroup2 directory is entered by clone3, not by a cgroup.procs write.
        let into = HelperInvocation.start(helper: "/h", spec: spec, paths: p, cgroupDirs: ["/v1/m/c1", "/v2/m/c1"],
                                          cloneInto: "/v2/m/c1")
        #expect(into.filter { $0.hasPrefix("cgroup") } == ["cgroup=/v1/m/c1", "cgroup2=/v2/m/c1"])
        let privileged = HelperInvocation.start(helper: "/h", spec: ContainerSpec(instance: "p", layerRootfs: "/l", idmap: nil),
                                                paths: p, cgroupDirs: [])
        #expect(!privileged.contains { $0.hasPrefix("uidmap=") || $0.hasPrefix("gidmap=") })
    }

    @Test func monitorArguments() {
        let a = HelperInvocation.monitor(helper: "/h", initPid: 42, paths: HelperInvocation.Paths(dir: "/d/containers/c1"))
        #expect(a == ["/h", "monitor", "pid=42", "console=/d/containers/c1/console.log", "consolesock=/d/containers/c1/console.sock"])
        // lxd-start's `monitor` mode reads the master there (main.swift).
        #expect(HelperInvocation.monitorMasterFD == 4)
    }

    @Test func execArguments() {
        let a = HelperInvocation.exec(helper: "/h", initPid: 42, userNamespace: true, cgroupDirs: ["/a", "/b"],
                                      command: ["sh", "-c", "x=1"], environment: [:], cwd: "/root",
                                      uid: 1000, gid: 100, terminal: true)
        for item in ["exec", "pid=42", "userns=1", "uid=1000", "gid=100", "cwd=/root", "tty=1",
                     "cgroup=/a", "cgroup=/b", "arg=sh", "arg=-c", "arg=x=1"] {
            #expect(a.contains(item), "missing \(item)")
        }
    }

    @Test func reports() {
        let r = HelperInvocation.parseReport(Array("pid=12\nexec=ok\n".utf8))
        #expect(r == HelperInvocation.Report(pid: 12, execConfirmed: true, error: nil))
        let e = HelperInvocation.parseReport(Array("pid=3\nerror=command not found: x\n".utf8))
        #expect(e.pid == 3 && !e.execConfirmed && e.error == "command not found: x")
        #expect(HelperInvocation.parseReport([]).pid == nil)
    }
}

@Suite struct ValueTests {
    @Test func idmapTranslation() {
        let m = IDMap(hostBase: 1_000_000, size: 65536)
        #expect(m.hostID(0) == 1_000_000)
        #expect(m.hostID(65535) == 1_065_535)
        #expect(m.hostID(65536) == nil)
        #expect(m.containerID(1_000_005) == 5)
        #expect(m.containerID(0) == 0)          // image-layer files seen without idmap
        #expect(m.containerID(1_065_536) == 1_065_536)
    }

    @Test func exitStatusDecoding() {
        #expect(ExitStatus(raw: 7 << 8).code == 7)
        #expect(ExitStatus(raw: 7 << 8).shellCode == 7)
        #expect(ExitStatus(raw: 9).signal == 9)
        #expect(ExitStatus(raw: 9).shellCode == 137)
        #expect(ExitStatus(raw: nil).shellCode == -1)
    }

    @Test func names() throws {
        try ContainerSpec.validate(name: "c1-web")
        for bad in ["", "-x", "a/b", "..", "a b", String(repeating: "a", count: 64)] {
            #expect(throws: RuntimeError.self) { try ContainerSpec.validate(name: bad) }
        }
    }
}

@Suite struct HostProbeTests {
    @Test func memTotalIsReadInBytes() {
        #expect(HostProbe.memTotal("MemTotal:       16316412 kB\nMemFree:         1234 kB\n") == Int64(16_316_412) * 1024)
        #expect(HostProbe.memTotal("MemFree: 1 kB\n") == nil)
    }

    @Test func aDirectoryThatIsNotThereHasNoDiskFigure() {
        let capacity = HostProbe.capacity(dataDir: "/nonexistent-\(UInt32.random(in: 0...UInt32.max))")
        #expect(capacity.diskBytes == nil)
        #expect(capacity.cpuCores >= 1 && capacity.memoryBytes > 0)
    }
}


@Suite struct HaltSignalTests {
    static func status(sigBlk: String) -> String {
        "Name:\tinit\nState:\tS (sleeping)\nSigPnd:\t0000000000000000\nSigBlk:\t\(sigBlk)\nSigIgn:\t0000000000001000\n"
    }

    @Test func systemdGetsOnlySIGRTMINPlus3() {
        // systemd 252's mask as read from a Debian 12 container: it blocks the signals it reads
        // from its signalfd, SIGRTMIN+3 (bit 36) among them.
        #expect(HaltSignal.signals(forInitStatus: Self.status(sigBlk: "7fe3c0fe28014a03")) == [37])
    }

    @Test func otherInitsGetSIGPWRAndSIGTERM() {
        #expect(HaltSignal.signals(forInitStatus: Self.status(sigBlk: "0000000000000000")) == [SIGPWR, SIGTERM])
        // Bit 35 (SIGRTMIN+2) alone is not SIGRTMIN+3.
        #expect(HaltSignal.signals(forInitStatus: Self.status(sigBlk: "0000000800000000")) == [SIGPWR, SIGTERM])
        #expect(HaltSignal.signals(forInitStatus: Self.status(sigBlk: "0000001000000000")) == [37])
    }

    @Test func unreadableStatusFallsBackToTheCommonSignals() {
        for text in ["", "SigBlk:\tzz\n", "SigBlk:\t1ffffffffffffffff\n", "Name:\tx\n"] {
            #expect(HaltSignal.signals(forInitStatus: text) == [SIGPWR, SIGTERM], "\(text)")
        }
    }
}

/// Which freezer a copy uses and when a freeze is complete.
@Suite struct CgroupFreezerTests {
    @Test func theV1FreezerIsPreferredThenCgroup2sFreezeFile() {
        let v1 = "/sys/fs/cgroup/freezer/lxd-swift/m1/default_c1", v2 = "/sys/fs/cgroup/unified/lxd-swift/m1/default_c1"
        #expect(CgroupFreezer.choose(v1Directory: v1, v2Directory: v2, exists: { _ in true }) == .v1(directory: v1))
        #expect(CgroupFreezer.choose(v1Directory: v1, v2Directory: v2, exists: { $0.hasSuffix("cgroup.freeze") }) == .v2(directory: v2))
        #expect(CgroupFreezer.choose(v1Directory: nil, v2Directory: v2, exists: { _ in true }) == .v2(directory: v2))
        #expect(CgroupFreezer.choose(v1Directory: v1, v2Directory: v2, exists: { _ in false }) == nil)
    }

    @Test func aFreezeIsCompleteOnlyWhenTheKernelSaysFrozen() {
        let v1 = CgroupFreezer.v1(directory: "/x"), v2 = CgroupFreezer.v2(directory: "/x")
        #expect(v1.isFrozen(status: "FROZEN\n"))
        #expect(!v1.isFrozen(status: "FREEZING\n"))
        #expect(!v1.isFrozen(status: "THAWED\n"))
        #expect(v2.isFrozen(status: "populated 1\nfrozen 1\n"))
        #expect(!v2.isFrozen(status: "populated 1\nfrozen 0\n"))
        #expect(!v2.isFrozen(status: ""))
    }
}
