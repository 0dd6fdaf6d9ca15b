import Foundation
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

    @Test func irmapHintsFollowTheExternals() {
        var r = DumpRequest(pid: 7, imagesDirectory: "/img")
        r.externals = ["tty[8800:2e]"]
        r.irmapScanPaths = ["/usr/share/dbus-1"]
        #expect(CRIUCommand.dump(r).suffix(4) == ["--external", "tty[8800:2e]", "--irmap-scan-path", "/usr/share/dbus-1"])
    }

    @Test func restoreHandsTheConsoleInAfterStdio() {
        var r = RestoreRequest(imagesDirectory: "/img", root: "/r", pidFile: "/img/pid")
        r.externals = ["mnt[console]:/dev/pts/7"]
        r.inherited = [InheritedFile(key: "tty[8800:2e]", fd: 41)]
        let args = CRIUCommand.restore(r)
        #expect(Array(args.suffix(4)) == ["--external", "mnt[console]:/dev/pts/7", "--inherit-fd", "fd[3]:tty[8800:2e]"])
        #expect(CRIUCommand.inheritedFDs(r) == [3])
    }

    @Test func consoleKeysAreCRIUsTtyIDs() {
        // 136:0 (/dev/pts/0) on a devpts whose st_dev is 0:46.
        let console = ExternalConsole(rdev: 0x8800, dev: 46)
        #expect(console.ttyKey == "tty[8800:2e]")
        #expect(console.dumpExternals == ["mnt[/dev/console]:console", "tty[8800:2e]"])
    }

    @Test func aConsoleKeyBesideTheImagesIsChecked() throws {
        let dir = try RealCRIUTests.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(Checkpointer.consoleKey(in: dir) == nil)
        for (text, valid) in [("tty[8800:2e]", true), ("tty[8800:2e];rm", false), ("fd[3]", false), ("tty[:2e]", false),
                              ("tty[88000000000000000:1]", false)] {
            try text.write(toFile: dir + "/console-tty", atomically: true, encoding: .utf8)
            #expect((Checkpointer.consoleKey(in: dir) != nil) == valid, "\(text)")
        }
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

    @Test func stopAndCopyDumpSendsPagesToThePageServerSocket() {
        var r = DumpRequest(pid: 7, imagesDirectory: "/img")
        r.memory = .pageServer(socket: 41)
        #expect(CRIUCommand.dump(r).suffix(3) == ["--page-server", "--ps-socket", "3"])
        #expect(CRIUCommand.dumpInherited(r) == [3: 41])
        #expect(CRIUCommand.pageServer(imagesDirectory: "/in") == ["page-server", "-D", "/in", "-o", "page-server.log", "--ps-socket", "3"])
        #expect(CRIUCommand.dumpInherited(DumpRequest(pid: 7, imagesDirectory: "/img")).isEmpty)
    }

    @Test func postCopyDumpServesPagesOverTheSocket() {
        var r = DumpRequest(pid: 7, imagesDirectory: "/img")
        r.memory = .lazy(socket: 41, status: 42)
        #expect(CRIUCommand.dump(r).suffix(5) == ["--lazy-pages", "--ps-socket", "3", "--status-fd", "4"])
        #expect(CRIUCommand.dumpInherited(r) == [3: 41, 4: 42])
        #expect(CRIUCommand.lazyPagesDaemon(imagesDirectory: "/img") == [
            "lazy-pages", "--page-server", "--ps-socket", "3", "--status-fd", "4", "-D", "/img", "-o", "lazy-pages.log",
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
