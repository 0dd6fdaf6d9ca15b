import Testing
@testable import Migration

@Suite struct CRIUCommandTests {
    @Test func plainDumpUsesTheOptionsThatWorkOnIdmappedOverlays() {
        let r = DumpRequest(pid: 4242, imagesDirectory: "/var/lib/lxd/migrate/c1/1")
        #expect(CRIUCommand.dump(r) == ["dump", "-t", "4242", "-D", "/var/lib/lxd/migrate/c1/1", "-o", "dump.log",
                                        "--external", "mnt[]"])
    }

    @Test func checkpointThatKeepsRunningWithTCPAndFreezer() {
        var r = DumpRequest(pid: 7, imagesDirectory: "/img")
        r.tcpEstablished = true
        r.freezeCgroup = "/sys/fs/cgroup/freezer/lxd/m1/c1"
        r.leaveRunning = true
        r.networkLock = .nftables
        r.externals = ["mnt[/mnt]:vol"]
        #expect(CRIUCommand.dump(r) == [
            "dump", "-t", "7", "-D", "/img", "-o", "dump.log", "--external", "mnt[]",
            "--tcp-established", "--freeze-cgroup", "/sys/fs/cgroup/freezer/lxd/m1/c1",
            "--network-lock", "nftables", "--external", "mnt[/mnt]:vol", "--leave-running",
        ])
    }

    @Test func preCopyPassesTrackMemoryAndChain() {
        var r = DumpRequest(pid: 7, imagesDirectory: "/img/2")
        r.logFile = "pre-dump.log"
        r.previousImages = "../1"
        #expect(CRIUCommand.preDump(r) == ["pre-dump", "-t", "7", "-D", "/img/2", "-o", "pre-dump.log",
                                           "--external", "mnt[]", "--track-mem", "--prev-images-dir", "../1"])
        var last = DumpRequest(pid: 7, imagesDirectory: "/img/3")
        last.trackMemory = true
        last.previousImages = "../2"
        #expect(CRIUCommand.dump(last) == ["dump", "-t", "7", "-D", "/img/3", "-o", "dump.log", "--external", "mnt[]",
                                           "--track-mem", "--prev-images-dir", "../2"])
    }

    @Test func postCopyDumpServesPages() {
        var r = DumpRequest(pid: 7, imagesDirectory: "/img")
        r.lazyPagesServer = PageServerAddress(host: "127.0.0.1", port: 27_182)
        #expect(CRIUCommand.dump(r).suffix(5) == ["--lazy-pages", "--address", "127.0.0.1", "--port", "27182"])
        #expect(CRIUCommand.lazyPagesDaemon(imagesDirectory: "/img", source: r.lazyPagesServer!) == [
            "lazy-pages", "--page-server", "--address", "127.0.0.1", "--port", "27182", "-D", "/img", "-o", "lazy-pages.log",
        ])
    }

    @Test func restoreNeedsRootExternalMountsDetachAndPidFile() {
        let r = RestoreRequest(imagesDirectory: "/img", root: "/var/lib/lxd/containers/c1/rootfs", pidFile: "/img/restore.pid")
        #expect(CRIUCommand.restore(r) == ["restore", "-D", "/img", "-o", "restore.log",
                                           "--root", "/var/lib/lxd/containers/c1/rootfs", "--external", "mnt[]",
                                           "-d", "--pidfile", "/img/restore.pid"])
    }

    @Test func restoreWithNetworkAndCgroups() {
        var r = RestoreRequest(imagesDirectory: "/img", root: "/r", pidFile: "/p")
        r.tcpEstablished = true
        r.cgroupRoots = [CgroupRoot(controllers: ["cpu", "memory"], path: "/lxd/m2/c1"), CgroupRoot(path: "/all")]
        r.manageCgroups = .soft
        r.externals = ["netdev[eth0]:lxd1a2b3c"]
        r.lazyPages = true
        #expect(CRIUCommand.restore(r) == ["restore", "-D", "/img", "-o", "restore.log", "--root", "/r",
                                           "--external", "mnt[]", "-d", "--pidfile", "/p", "--tcp-established",
                                           "--cgroup-root", "cpu,memory:/lxd/m2/c1", "--cgroup-root", "/all", "--manage-cgroups=soft",
                                           "--external", "netdev[eth0]:lxd1a2b3c", "--lazy-pages"])
    }
}
