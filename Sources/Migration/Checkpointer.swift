import Foundation
import InstanceConfig
import Logging
import Runtime
import Synchronization

/// What CRIU needs to know about a running container to checkpoint it.
public struct CheckpointTarget: Sendable, Equatable {
    /// Init's host pid.
    public var pid: Int32
    /// The v1 freezer cgroup directory (e.g. /sys/fs/cgroup/freezer/lxd-swift/m1/default_c1), nil on v2.
    public var freezerCgroup: String?
    /// The container's console terminal, whose master lives outside the tree (in the runtime's
    /// console monitor): dumped as external, given back at restore.
    public var console: ExternalConsole?
    /// The container's network namespace holds lo alone: nothing of it needs dumping.
    public var onlyLoopback: Bool
    /// The container's own cgroup2 subgroups (relative, parents first): kept beside the images
    /// (`CgroupTree.fileName`) so the restore makes the empty ones too.
    public var cgroupTree: [String] = []

    public init(pid: Int32, freezerCgroup: String?, console: ExternalConsole? = nil, onlyLoopback: Bool = false) {
        self.pid = pid
        self.freezerCgroup = freezerCgroup
        self.console = console
        self.onlyLoopback = onlyLoopback
    }
}

/// A console terminal outside the dumped tree: CRIU's key for the terminal (`tty[rdev:dev]`,
/// both in hex) and the mount point of its bind (/dev/console), dumped as the external mount
/// `console`. The key is kept beside the images (`console-tty`), since a restore must name it.
public struct ExternalConsole: Sendable, Equatable {
    public var ttyKey: String
    public var mountPoint: String

    public init(rdev: UInt64, dev: UInt64, mountPoint: String = "/dev/console") {
        self.ttyKey = "tty[\(String(rdev, radix: 16)):\(String(dev, radix: 16))]"
        self.mountPoint = mountPoint
    }

    public static let mountKey = "console"
    static let keyFile = "console-tty"

    var dumpExternals: [String] { ["mnt[\(mountPoint)]:\(Self.mountKey)", ttyKey] }
}

/// The terminal a restored container gets as its console: a pty slave made by the runtime
/// (path for the /dev/console bind, fd for the tree's open copies).
public struct RestoredConsole: Sendable, Equatable {
    public var slavePath: String
    public var slaveFD: Int32
    public init(slavePath: String, slaveFD: Int32) {
        self.slavePath = slavePath
        self.slaveFD = slaveFD
    }
}

/// A destination prepared for a restore: the container's root filesystem mounted again (same
/// image layer, same id map, the container's upper layer) and its cgroups created.
public struct RestoreTarget: Sendable, Equatable {
    /// Mount point of the container root (`<containerDir>/rootfs`).
    public var rootfs: String
    /// The cgroups `prepareRestore` created, when their paths differ from the dumped ones
    /// (another member name); empty to restore into the dumped paths.
    public var cgroupRoots: [CgroupRoot]
    /// Extra `--external` specs (volumes, `netdev[eth0]:<veth made by the runtime>`).
    public var externals: [String]
    /// The reaper sequence before the restore: the restored init becomes the agent's child
    /// (it is a subreaper) once criu exits, and its exit must be matched after this point.
    public var reapedAfter: UInt64
    /// The new console, for images dumped with an external console.
    public var console: RestoredConsole?
    /// Run by CRIU at each restore stage (see `RestoreRequest.actionScript`).
    public var actionScript: String?

    public init(rootfs: String, cgroupRoots: [CgroupRoot] = [], externals: [String] = [], reapedAfter: UInt64 = 0,
                console: RestoredConsole? = nil) {
        self.rootfs = rootfs
        self.cgroupRoots = cgroupRoots
        self.externals = externals
        self.reapedAfter = reapedAfter
        self.console = console
    }
}

/// The runtime side of a checkpoint: find the container's init and freezer, and learn when the
/// runtime has finished cleaning up after a dump killed the tree.
public protocol CheckpointSource: Sendable {
    func checkpointTarget(instance: InstanceRef) async throws -> CheckpointTarget
    /// Returns once the runtime saw init exit and released its mounts and cgroups (so a restore
    /// on this host cannot be undone by a late cleanup).
    func waitStopped(instance: InstanceRef, timeout: Duration) async throws
}

/// The runtime side of a restore.
public protocol RestoreDestination: Sendable {
    /// Mounts the root filesystem and creates the cgroups of a stopped container `instance`, and
    /// keeps it reserved (no start) until `adoptRestored` or `abandonRestore`.
    func prepareRestore(instance: InstanceRef) async throws -> RestoreTarget
    /// Records `pid` as the running init of `instance` (watched, signalled, cleaned up on exit
    /// like a started container).
    func adoptRestored(instance: InstanceRef, pid: Int32, target: RestoreTarget) async throws
    /// Undoes `prepareRestore` after a failed restore (unmount, remove cgroups, release).
    func abandonRestore(instance: InstanceRef) async
}

struct RestoreConsoleMissing: Error, CustomStringConvertible {
    let instance: String
    var description: String { "the images of \(instance) hold an external console, but the destination made none" }
}

/// Checkpoint and restore of one container on this host: the runtime glue around `CRIUDriver`.
/// A failed restore leaves nothing mounted or reserved, and the images untouched (they can be
/// retried here or on another member).
public struct Checkpointer: Sendable {
    public struct Options: Sendable, Hashable {
        /// Keep the container running after the checkpoint (snapshot), else it stops.
        public var leaveRunning = false
        public var tcpEstablished = false
        /// Containers have their own network namespace, which CRIU locks during the dump.
        /// Its default (iptables) needs iptables-restore, absent here, and leaves empty tables.
        public var networkLock: NetworkLock? = .nftables
        /// Freeze through the container's freezer cgroup instead of seizing task by task.
        /// Off by default: CRIU polls the v1 freezer in 100 ms steps, so a small container's
        /// freeze took ~100.8 ms with it and ~0.2 ms without (measured here). Worth it for trees
        /// that fork fast or have many tasks, where seizing one by one can chase new children.
        public var freezeCgroup = false
        /// Keep the tree stopped after the dump (a move's source until the target takes over).
        public var leaveStopped = false
        /// Where the memory goes: the images directory, or another member's page server.
        public var memory: DumpMemory = .images
        public init(leaveRunning: Bool = false, tcpEstablished: Bool = false, networkLock: NetworkLock? = .nftables,
                    freezeCgroup: Bool = false, leaveStopped: Bool = false, memory: DumpMemory = .images) {
            self.memory = memory
            self.leaveRunning = leaveRunning
            self.leaveStopped = leaveStopped
            self.tcpEstablished = tcpEstablished
            self.networkLock = networkLock
            self.freezeCgroup = freezeCgroup
        }
    }

    public let driver: CRIUDriver
    let logger: Logger
    private let probed = ProbeCache()

    /// What CRIU on this host can do, probed once (a few hundred ms) and kept.
    public func features() async throws -> CRIUFeatures {
        if let known = probed.value.withLock({ $0 }) { return known }
        let found = try await driver.criu.probe(runner: driver.runner)
        probed.value.withLock { $0 = found }
        return found
    }

    private final class ProbeCache: Sendable {
        let value = Mutex<CRIUFeatures?>(nil)
    }

    /// Where watched directories are that CRIU's own hints (/etc, the root, a few others) miss:
    /// dbus-daemon watches /usr/share/dbus-1/system.d, and without this hint a Debian 12
    /// container's dump fails with "Can't dump that handle" (overlayfs has no file handles).
    /// systemd-logind, once restarted, watches the timezone file (/etc/localtime's target).
    static let irmapScanPaths = ["/usr/share/dbus-1", "/usr/share/zoneinfo"]

    public init(driver: CRIUDriver, logger: Logger = Logger(label: "lxd.migration.checkpoint")) {
        self.driver = driver
        self.logger = logger
    }

    /// Dumps container `name` into `directory`. Without `leaveRunning` the container is stopped
    /// afterwards (and the runtime has cleaned up) when this returns.
    public func checkpoint(instance name: InstanceRef, source: some CheckpointSource, into directory: String,
                           options: Options = Options()) async throws -> CRIUDriver.Dumped {
        let target = try await source.checkpointTarget(instance: name)
        if let found = CheckpointPreflight.scan(initPid: target.pid) {
            let problems = CheckpointPreflight.problems(initProcess: found.initProcess, processes: found.processes)
            if !problems.isEmpty { throw CheckpointRefused(reasons: problems) }
        }
        var request = DumpRequest(pid: target.pid, imagesDirectory: directory)
        request.freezeCgroup = options.freezeCgroup ? target.freezerCgroup : nil
        request.leaveRunning = options.leaveRunning
        request.leaveStopped = options.leaveStopped
        request.memory = options.memory
        request.tcpEstablished = options.tcpEstablished
        request.networkLock = options.networkLock
        if target.onlyLoopback {
            request.emptyNetwork = true
            request.networkLock = .skip
        }
        request.irmapScanPaths = Self.irmapScanPaths
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        if let console = target.console {
            request.externals += console.dumpExternals
            try Data(console.ttyKey.utf8).write(to: URL(fileURLWithPath: directory + "/" + ExternalConsole.keyFile))
        }
        if request.emptyNetwork {
            try Data().write(to: URL(fileURLWithPath: directory + "/" + Self.emptyNetworkMarker))
        }
        if !target.cgroupTree.isEmpty {
            try Data(CgroupTree.encode(target.cgroupTree).utf8).write(to: URL(fileURLWithPath: directory + "/" + CgroupTree.fileName))
        }
        let dumped = try await driver.dump(request)
        if !options.leaveRunning && !options.leaveStopped {
            try await source.waitStopped(instance: name, timeout: .seconds(10))
        }
        logger.info("container checkpointed", metadata: [
            "instance": "\(name)", "downtime_us": "\(dumped.image.dumpStats?.frozenTime ?? 0)",
            "leave_running": "\(options.leaveRunning)", "leave_stopped": "\(options.leaveStopped)",
        ])
        return dumped
    }

    /// Restores container `name` from `directory` onto the same root filesystem; returns the new
    /// init. The images are validated before anything is mounted.
    /// `lazyPages`: post-copy, the memory comes from a lazy-pages daemon already running on `directory`.
    public func restore(instance name: InstanceRef, destination: some RestoreDestination, from directory: String,
                        tcpEstablished: Bool = false, lazyPages: Bool = false) async throws -> CRIUDriver.Restored {
        do { _ = try CheckpointImage.read(directory: directory) } catch { throw CRIUError.invalidImages(error) }
        let target = try await destination.prepareRestore(instance: name)
        var request = RestoreRequest(imagesDirectory: directory, root: target.rootfs, pidFile: directory + "/restore.pid")
        request.tcpEstablished = tcpEstablished
        request.lazyPages = lazyPages
        request.cgroupRoots = target.cgroupRoots
        request.externals = target.externals
        // Dumped with --empty-ns net: a bare namespace whose lo the action script brings up.
        if FileManager.default.fileExists(atPath: directory + "/" + Self.emptyNetworkMarker) {
            request.emptyNetwork = true
            request.actionScript = target.actionScript
        }
        if let key = Self.consoleKey(in: directory) {
            guard let console = target.console else {
                await destination.abandonRestore(instance: name)
                throw RestoreConsoleMissing(instance: "\(name)")
            }
            request.externals.append("mnt[\(ExternalConsole.mountKey)]:\(console.slavePath)")
            request.inherited.append(InheritedFile(key: key, fd: console.slaveFD))
        }
        let restored: CRIUDriver.Restored
        do {
            if lazyPages {
                restored = try await PostCopyHost.withUnprivilegedUserfaultfd(logger: logger) { try await driver.restore(request) }
            } else {
                restored = try await driver.restore(request)
            }
        } catch {
            logger.error("restore failed; releasing the prepared root", metadata: ["instance": "\(name)", "error": "\(error)"])
            await destination.abandonRestore(instance: name)
            throw error
        }
        do {
            try await destination.adoptRestored(instance: name, pid: restored.pid, target: target)
        } catch {
            // The tree runs but the runtime would not own it: kill it rather than leave an
            // untracked instance; the images still allow a retry.
            logger.error("runtime refused the restored init; killing it", metadata: ["instance": "\(name)", "pid": "\(restored.pid)"])
            kill(restored.pid, SIGKILL)
            await destination.abandonRestore(instance: name)
            throw error
        }
        logger.info("container restored", metadata: ["instance": "\(name)", "pid": "\(restored.pid)", "elapsed": "\(restored.elapsed)"])
        return restored
    }

    /// Beside images dumped with `--empty-ns net`: the restore must make a bare namespace.
    static let emptyNetworkMarker = "empty-netns"

    /// The console key a dump left beside its images; nil for images without an external console.
    /// Checked like any image content: a key that is not `tty[hex:hex]` is refused.
    static func consoleKey(in directory: String) -> String? {
        guard let data = FileManager.default.contents(atPath: directory + "/" + ExternalConsole.keyFile), data.count <= 64,
              let key = String(data: data, encoding: .utf8) else { return nil }
        let body = key.dropFirst(4).dropLast()
        let parts = body.split(separator: ":", omittingEmptySubsequences: false)
        guard key.hasPrefix("tty["), key.hasSuffix("]"), parts.count == 2,
              parts.allSatisfy({ !$0.isEmpty && $0.count <= 16 && $0.allSatisfy(\.isHexDigit) }) else { return nil }
        return key
    }
}
