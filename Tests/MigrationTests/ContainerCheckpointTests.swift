import Foundation
import Glibc
import InstanceConfig
import Logging
import Runtime
import Testing
@testable import Migration

/// A real unprivileged container (busybox, user namespace, idmapped overlay root) started by
/// Runtime, checkpointed through `Checkpointer`, and restored by CRIU onto the same root.
/// Restore goes through `Checkpointer.restore` with a stand-in for the Runtime side it does not
/// provide yet (`RestoreDestination`): `mountRootfs`, cgroups made by the test, adoption recorded.
/// Skipped with its reason where it cannot run, never under `make test` (CRIUHost).
@Suite(.serialized, .enabled(if: CRIUHost.runs(if: CRIUHost.containersMissing == nil),
                             Comment(rawValue: CRIUHost.containersMissing ?? "")))
struct ContainerCheckpointTests {
    /// Creates `relative` in every v1 controller the runtime manages, initialising cpuset
    /// levels from their parent (a new cpuset group has no cpus). Returns the controllers.
    static func makeCgroups(_ layout: CgroupLayout, relative: String) throws -> [String] {
        var made: [String] = []
        for controller in CgroupLayout.v1Controllers {
            guard let mount = layout.v1[controller] else { continue }
            var path = mount
            for part in relative.split(separator: "/") {
                let parent = path
                path += "/" + part
                if mkdir(path, 0o755) != 0 && errno != EEXIST { throw RuntimeError.system("mkdir", on: path, errno) }
                if controller == "cpuset" {
                    for file in ["cpuset.cpus", "cpuset.mems"] {
                        let value = try String(contentsOfFile: parent + "/" + file, encoding: .utf8)
                        let current = try String(contentsOfFile: path + "/" + file, encoding: .utf8)
                        if current.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
                            try value.write(toFile: path + "/" + file, atomically: false, encoding: .utf8)
                        }
                    }
                }
            }
            made.append(controller)
        }
        return made
    }

    /// controller -> path from /proc/PID/cgroup.
    static func cgroups(of pid: Int32) -> [String: String] {
        let text = (try? String(contentsOfFile: "/proc/\(pid)/cgroup", encoding: .utf8)) ?? ""
        var out: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let f = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard f.count == 3 else { continue }
            for c in f[1].split(separator: ",") { out[String(c)] = String(f[2]) }
        }
        return out
    }

    static let useFreezer = ProcessInfo.processInfo.environment["LXD_TEST_FREEZER"] == "1"

    @Test func unprivilegedContainerCheckpointAndRestoreOnTheSameRoot() async throws {
        try CRIUHost.require(CRIUHost.containersMissing)
        let criu = try await CRIUHost.usableCRIU()
        let helperPath = try #require(CRIUHost.helperPath)

        let root = try RealCRIUTests.tempDir()
        chmod(root, 0o711)
        let layer = root + "/layer"
        let fm = FileManager.default
        for d in ["bin", "sbin", "tmp", "proc", "sys", "dev", "root"] {
            try fm.createDirectory(atPath: layer + "/" + d, withIntermediateDirectories: true)
        }
        chmod(layer + "/tmp", 0o1777)
        try fm.copyItem(atPath: "/bin/busybox", toPath: layer + "/bin/busybox")
        for a in ["sh", "sleep", "echo", "cat", "mv"] { try fm.createSymbolicLink(atPath: layer + "/bin/" + a, withDestinationPath: "busybox") }
        try """
        #!/bin/sh
        i=0
        while true; do i=$((i+1)); echo $i > /tmp/counter.new; mv /tmp/counter.new /tmp/counter; sleep 0.1; done

        """.write(toFile: layer + "/sbin/init", atomically: true, encoding: .utf8)
        chmod(layer + "/sbin/init", 0o755)
        let dataDir = root + "/lxd"
        try fm.createDirectory(atPath: dataDir, withIntermediateDirectories: true)
        chmod(dataDir, 0o711)
        var logger = Logger(label: "migration-tests")
        logger.logLevel = .warning
        let member = "mig\(getpid())"
        let runtime = try ContainerRuntime(dataDir: dataDir, memberName: member, helperPath: helperPath, logger: logger)
        let name = InstanceRef(name: "c1")
        let idmap = IDMap(hostBase: 1_300_000)
        let containerDir = dataDir + "/containers/" + name.hostName
        // Images under a 0700 parent: the restored tasks must reach them through CRIU's
        // directory fd alone (CRIUDriver.restore).
        let imagesParent = try RealCRIUTests.tempDir()
        let images = imagesParent + "/images"
        var restoredPid: Int32?
        // Whatever happens, nothing of this test may stay running, mounted or in a cgroup.
        defer {
            var pids = [restoredPid, runtime.state(instance: name)?.pid].compactMap { $0 }.filter { $0 > 0 }
            for pid in pids { kill(pid, SIGKILL) }
            for _ in 0..<300 where !pids.isEmpty {
                usleep(10_000)
                pids.removeAll { !RealCRIUTests.alive($0) }
            }
            umount2(containerDir + "/rootfs", Int32(MNT_DETACH))
            for dir in runtime.cgroupLayout.directories(relative: "lxd-swift/\(member)/\(name.hostName)") { rmdir(dir) }
            for dir in runtime.cgroupLayout.directories(relative: "lxd-swift/\(member)") { rmdir(dir) }
            for dir in runtime.cgroupLayout.directories(relative: "lxd-swift/\(member)-b/\(name.hostName)") { rmdir(dir) }
            for dir in runtime.cgroupLayout.directories(relative: "lxd-swift/\(member)-b") { rmdir(dir) }
            try? runtime.delete(instance: name)
            try? fm.removeItem(atPath: imagesParent)
            if !((try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8))?.contains(root) ?? true) {
                try? fm.removeItem(atPath: root)
            }
        }

        _ = try await runtime.start(ContainerSpec(instance: name, layerRootfs: layer, idmap: idmap, initCommand: ["/sbin/init"]))
        try await RealCRIUTests.waitFor("the container's counter to reach 10") { (RealCRIUTests.read(containerDir + "/upper/tmp") ?? 0) >= 10 }

        let checkpointer = Checkpointer(driver: CRIUDriver(criu: criu, runner: SpawnerCommandRunner(), logger: logger))
        let target = try await runtime.checkpointTarget(instance: name)
        #expect(target.freezerCgroup != nil, "runtime containers have a v1 freezer cgroup here")
        // Measured both ways: the freezer costs CRIU's 100 ms polling step (see Options).
        let dumped = try await checkpointer.checkpoint(instance: name, source: runtime, into: images,
                                                       options: .init(freezeCgroup: Self.useFreezer))
        let atDump = try #require(RealCRIUTests.read(containerDir + "/upper/tmp"))
        #expect(runtime.state(instance: name)?.running == false)
        #expect(!runtime.runningInstances().contains(name))
        let stats = try #require(dumped.image.dumpStats)
        print("container checkpoint (freezer \(Self.useFreezer)): \(dumped.elapsed), frozen \(stats.frozenTime) µs (freezing \(stats.freezingTime) µs), "
              + "\(dumped.image.processes.count) processes, \(dumped.image.storedMemoryBytes / 1024) KiB of pages")
        #expect(dumped.image.processes.first?.pid == 1)

        // The target side: the same root filesystem again, then CRIU. As on another member: Runtime's part (root mounted, cgroups made under another
        // member name) is played by `StandInDestination` until Runtime provides it.
        let moved = "lxd-swift/\(member)-b/\(name.hostName)"
        let destination = StandInDestination(runtime: runtime, relativeCgroup: moved, consoleOwner: idmap.hostBase)
        let restored = try await checkpointer.restore(instance: name, destination: destination, from: images)
        let restoredAt = ContinuousClock.now
        let controllers = CgroupLayout.v1Controllers.filter { runtime.cgroupLayout.v1[$0] != nil }
        #expect(await destination.adopted == restored.pid)
        restoredPid = restored.pid
        try await RealCRIUTests.waitFor("the restored counter to move") { (RealCRIUTests.read(containerDir + "/upper/tmp") ?? atDump) != atDump }
        let next = try #require(RealCRIUTests.read(containerDir + "/upper/tmp"))
        // It continues from the dumped value (a fresh start would count from 1) and did not run
        // on while frozen: at most one tick per 100 ms since the restore, plus two.
        let ticksSinceRestore = Int((ContinuousClock.now - restoredAt) / .milliseconds(100))
        #expect(next > atDump && next <= atDump + 2 + ticksSinceRestore, "counter went from \(atDump) to \(next)")
        let uidMap = try String(contentsOfFile: "/proc/\(restored.pid)/uid_map", encoding: .utf8)
        #expect(uidMap.split(whereSeparator: \.isWhitespace) == ["0", "1300000", "65536"], "restored id map: \(uidMap)")
        #expect(RealCRIUTests.nspid(restored.pid).last == 1)
        let cgroups = Self.cgroups(of: restored.pid)
        for c in controllers { #expect(cgroups[c] == "/" + moved, "\(c) cgroup of the restored init: \(cgroups[c] ?? "none")") }
        #expect(cgroups["blkio"] == "/", "controllers the runtime does not manage stay where they were")
        print("container restore: \(restored.elapsed), pid \(restored.pid), counter \(atDump) -> \(next)")

        // The restored init is our child (we are a subreaper): it must be reaped after a kill.
        kill(restored.pid, SIGKILL)
        try await RealCRIUTests.waitFor("the restored init to be reaped") { !RealCRIUTests.alive(restored.pid) }
        restoredPid = nil
    }
}

/// The destination side Runtime does not offer yet, from its public API plus direct cgroup
/// writes: what `ContainerRuntime.prepareRestore/adoptRestored/abandonRestore` must do.
actor StandInDestination: RestoreDestination {
    let runtime: ContainerRuntime
    let relativeCgroup: String
    let consoleOwner: UInt32
    var adopted: Int32?
    /// The restored tree's console (the runtime's monitor would hold the master).
    var console: (master: Int32, slave: Int32)?

    init(runtime: ContainerRuntime, relativeCgroup: String, consoleOwner: UInt32) {
        self.runtime = runtime
        self.relativeCgroup = relativeCgroup
        self.consoleOwner = consoleOwner
    }

    deinit { if let console { close(console.master); close(console.slave) } }

    /// A pty of the host's devpts, owned by the container's root, as the runtime makes one.
    func makeConsole() throws -> RestoredConsole {
        let pty = try PseudoTerminal.open()
        console = (pty.master, pty.slave)
        let path = try pty.slavePath()
        guard fchown(pty.slave, consoleOwner, consoleOwner + 5) == 0 else { throw RuntimeError.system("chown", on: path, errno) }
        return RestoredConsole(slavePath: path, slaveFD: pty.slave)
    }

    func prepareRestore(instance name: InstanceRef) async throws -> RestoreTarget {
        try await runtime.mountRootfs(instance: name)
        let controllers = try ContainerCheckpointTests.makeCgroups(runtime.cgroupLayout, relative: relativeCgroup)
        return RestoreTarget(rootfs: runtime.directory(of: name) + "/rootfs",
                             cgroupRoots: [CgroupRoot(controllers: controllers, path: "/" + relativeCgroup)],
                             reapedAfter: Reaper.shared.sequence, console: try makeConsole())
    }

    func adoptRestored(instance name: InstanceRef, pid: Int32, target: RestoreTarget) async throws { adopted = pid }

    func abandonRestore(instance name: InstanceRef) async {
        try? runtime.unmountRootfs(instance: name)
        for dir in runtime.cgroupLayout.directories(relative: relativeCgroup) { rmdir(dir) }
    }
}
