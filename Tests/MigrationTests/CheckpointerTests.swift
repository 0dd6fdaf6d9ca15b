import Foundation
import InstanceConfig
import Synchronization
import Testing
@testable import Migration

/// A CRIU stand-in: `dump` writes a synthetic (valid) image set into -D, `restore` writes a
/// pid file, or fails the way CRIU does (exit 1, error in its log).
final class FakeCRIU: CommandRunner {
    let restoreFails: Bool
    let restoredPid: Int32
    private let calls = Mutex<[[String]]>([])
    init(restoreFails: Bool = false, restoredPid: Int32 = 4_000_000) {
        self.restoreFails = restoreFails
        self.restoredPid = restoredPid
    }
    var invocations: [[String]] { calls.withLock { $0 } }

    func run(executable: String, arguments: [String], environment: [String: String]) async throws -> CommandOutput {
        calls.withLock { $0.append(arguments) }
        func value(_ flag: String) -> String? { arguments.firstIndex(of: flag).map { arguments[$0 + 1] } }
        let dir = value("-D")!
        switch arguments.first {
        case "dump":
            for (name, bytes) in syntheticCheckpoint() {
                _ = FileManager.default.createFile(atPath: dir + "/" + name, contents: Data(bytes))
            }
            _ = FileManager.default.createFile(atPath: dir + "/pages-1.img", contents: Data(count: 3 * 4096))
            return CommandOutput(exitStatus: 0, output: "")
        case "restore":
            if restoreFails {
                try "(00.1) Error (criu/cr-restore.c:1410): Can't fork for 12: File exists\n"
                    .write(toFile: dir + "/restore.log", atomically: true, encoding: .utf8)
                return CommandOutput(exitStatus: 1, output: "")
            }
            try "\(restoredPid)".write(toFile: value("--pidfile")!, atomically: true, encoding: .utf8)
            return CommandOutput(exitStatus: 0, output: "")
        default:
            return CommandOutput(exitStatus: 1, output: "unexpected")
        }
    }
}

actor FakeRuntime: CheckpointSource, RestoreDestination {
    var events: [String] = []
    let refuseAdoption: Bool
    let actionScript: String?
    let onlyLoopback: Bool
    init(refuseAdoption: Bool = false, actionScript: String? = nil, onlyLoopback: Bool = false) {
        self.refuseAdoption = refuseAdoption
        self.actionScript = actionScript
        self.onlyLoopback = onlyLoopback
    }

    func checkpointTarget(instance name: InstanceRef) async throws -> CheckpointTarget {
        events.append("target \(name)")
        return CheckpointTarget(pid: 777, freezerCgroup: "/sys/fs/cgroup/freezer/lxd-swift/m1/\(name)", onlyLoopback: onlyLoopback)
    }
    func waitStopped(instance name: InstanceRef, timeout: Duration) async throws { events.append("stopped \(name)") }
    func prepareRestore(instance name: InstanceRef) async throws -> RestoreTarget {
        events.append("prepare \(name)")
        var target = RestoreTarget(rootfs: "/var/lib/lxd/containers/\(name)/rootfs", cgroupRoots: [CgroupRoot(controllers: ["memory", "freezer"], path: "/lxd-swift/m2/\(name)")],
                                   externals: ["netdev[eth0]:veth1"], reapedAfter: 41)
        target.actionScript = actionScript
        return target
    }
    func adoptRestored(instance name: InstanceRef, pid: Int32, target: RestoreTarget) async throws {
        events.append("adopt \(name) \(pid) after \(target.reapedAfter)")
        if refuseAdoption { throw CRIUError.badPidFile("x", "refused by the fake") }
    }
    func abandonRestore(instance name: InstanceRef) async { events.append("abandon \(name)") }
}

@Suite struct CheckpointerTests {
    func tempDir() throws -> String {
        let dir = NSTemporaryDirectory() + "/lxd-checkpointer-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test func checkpointFreezesThroughTheCgroupAndWaitsForCleanup() async throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let criu = FakeCRIU()
        let runtime = FakeRuntime()
        let c = Checkpointer(driver: CRIUDriver(criu: CRIU(path: "/fake/criu"), runner: criu))
        let dumped = try await c.checkpoint(instance: "c1", source: runtime, into: dir + "/img", options: .init(freezeCgroup: true))
        #expect(dumped.image.dumpStats?.frozenTime == 19_849)
        #expect(criu.invocations == [["dump", "-t", "777", "-D", dir + "/img", "-o", "dump.log", "--external", "mnt[]",
                                      "--freeze-cgroup", "/sys/fs/cgroup/freezer/lxd-swift/m1/c1",
                                      "--network-lock", "nftables", "--irmap-scan-path", "/usr/share/dbus-1",
                                      "--irmap-scan-path", "/usr/share/zoneinfo"]])
        #expect(await runtime.events == ["target c1", "stopped c1"])
    }

    @Test func snapshotLeavesTheContainerRunning() async throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let criu = FakeCRIU()
        let runtime = FakeRuntime()
        let c = Checkpointer(driver: CRIUDriver(criu: CRIU(path: "/fake/criu"), runner: criu))
        _ = try await c.checkpoint(instance: "c1", source: runtime, into: dir, options: .init(leaveRunning: true, tcpEstablished: true))
        #expect(criu.invocations.first?.last == "--leave-running")
        #expect(criu.invocations.first?.contains("--freeze-cgroup") == false, "the freezer is opt-in")
        #expect(criu.invocations.first?.contains("--tcp-established") == true)
        #expect(await runtime.events == ["target c1"])
    }

    @Test func restoreUsesThePreparedRootAndAdoptsTheNewInit() async throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let criu = FakeCRIU(restoredPid: 4242)
        let runtime = FakeRuntime()
        let c = Checkpointer(driver: CRIUDriver(criu: CRIU(path: "/fake/criu"), runner: criu))
        _ = try await c.checkpoint(instance: "c1", source: runtime, into: dir)
        let restored = try await c.restore(instance: "c1", destination: runtime, from: dir, tcpEstablished: true)
        #expect(restored.pid == 4242)
        #expect(criu.invocations.last == ["restore", "-D", dir, "-o", "restore.log", "--root", "/var/lib/lxd/containers/c1/rootfs",
                                          "--external", "mnt[]", "-d", "--pidfile", dir + "/restore.pid", "--tcp-established",
                                          "--cgroup-root", "memory,freezer:/lxd-swift/m2/c1", "--external", "netdev[eth0]:veth1"])
        #expect(await runtime.events == ["target c1", "stopped c1", "prepare c1", "adopt c1 4242 after 41"])
    }

    @Test func imagesWithoutANetworkNamespaceRestoreABareOneWithTheActionScript() async throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let criu = FakeCRIU(restoredPid: 4242)
        let c = Checkpointer(driver: CRIUDriver(criu: CRIU(path: "/fake/criu"), runner: criu))
        _ = try await c.checkpoint(instance: "c1", source: FakeRuntime(onlyLoopback: true), into: dir)
        #expect(criu.invocations.first?.contains("--empty-ns") == true)
        #expect(criu.invocations.first?.contains("skip") == true, "nothing to lock in a namespace with lo alone")
        _ = try await c.restore(instance: "c1", destination: FakeRuntime(actionScript: "/usr/libexec/lxd-start"), from: dir)
        let args = try #require(criu.invocations.last)
        #expect(args.suffix(4) == ["--empty-ns", "net", "--action-script", "/usr/libexec/lxd-start"])
    }

    @Test func failedRestoreReleasesThePreparedRootAndReportsCRIUsError() async throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let criu = FakeCRIU(restoreFails: true)
        let runtime = FakeRuntime()
        let c = Checkpointer(driver: CRIUDriver(criu: CRIU(path: "/fake/criu"), runner: criu))
        _ = try await c.checkpoint(instance: "c1", source: runtime, into: dir)
        do {
            _ = try await c.restore(instance: "c1", destination: runtime, from: dir)
            Issue.record("restore reported success")
        } catch let CRIUError.failed(action, status, tail, log) {
            #expect(action == "restore" && status == 1 && log == dir + "/restore.log")
            #expect(tail.contains("File exists"))
        }
        #expect(await runtime.events.suffix(2) == ["prepare c1", "abandon c1"])
    }

    @Test func corruptImagesAreRefusedBeforeAnythingIsMounted() async throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let criu = FakeCRIU()
        let runtime = FakeRuntime()
        let c = Checkpointer(driver: CRIUDriver(criu: CRIU(path: "/fake/criu"), runner: criu))
        _ = try await c.checkpoint(instance: "c1", source: runtime, into: dir)
        #expect(truncate(dir + "/pages-1.img", 4096) == 0)
        await #expect(throws: CRIUError.invalidImages(.pagesMismatch(pagemap: "pagemap-1.img", pages: "pages-1.img",
                                                                      expectedBytes: 3 * 4096, actualBytes: 4096))) {
            _ = try await c.restore(instance: "c1", destination: runtime, from: dir)
        }
        #expect(await !runtime.events.contains("prepare c1"))
        #expect(criu.invocations.count == 1)
    }

    @Test func refusedAdoptionDoesNotLeaveThePreparedRoot() async throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // A pid that cannot exist (above pid_max), so the kill in the rollback hits nothing.
        let criu = FakeCRIU(restoredPid: 2_000_000_000)
        let runtime = FakeRuntime(refuseAdoption: true)
        let c = Checkpointer(driver: CRIUDriver(criu: CRIU(path: "/fake/criu"), runner: criu))
        _ = try await c.checkpoint(instance: "c1", source: runtime, into: dir)
        await #expect(throws: CRIUError.self) { _ = try await c.restore(instance: "c1", destination: runtime, from: dir) }
        #expect(await runtime.events.suffix(3) == ["prepare c1", "adopt c1 2000000000 after 41", "abandon c1"])
    }
}

/// A literal names an instance of the default project.
extension InstanceRef: ExpressibleByStringInterpolation {
    public init(stringLiteral name: String) { self.init(name: name) }
}
