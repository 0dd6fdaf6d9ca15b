import Glibc
import InstanceConfig

/// A container's id map: container ids 0..<size are host ids hostBase..<hostBase+size, for
/// users and groups alike. Allocated cluster-wide by the caller (DESIGN.md, "Id maps").
public struct IDMap: Sendable, Codable, Equatable {
    public let hostBase: UInt32
    public let size: UInt32

    public init(hostBase: UInt32, size: UInt32 = 65536) {
        self.hostBase = hostBase
        self.size = size
    }

    /// The host id for a container id (nil when outside the map).
    public func hostID(_ containerID: UInt32) -> UInt32? {
        containerID < size ? hostBase + containerID : nil
    }

    /// The container's view of a host id: mapped ids translate; others (files of the
    /// image layer seen through a non-idmapped mount) are already container ids.
    public func containerID(_ hostID: UInt32) -> UInt32 {
        hostID >= hostBase && hostID - hostBase < size ? hostID - hostBase : hostID
    }
}

/// Resource limits; nil = unlimited.
public struct Limits: Sendable, Codable, Equatable {
    public var memoryBytes: Int64?
    /// Cores of cpu time per wall second (fractions allowed: 0.5 = half a core).
    public var cpuCores: Double?
    public var processes: Int64?

    public init(memoryBytes: Int64? = nil, cpuCores: Double? = nil, processes: Int64? = nil) {
        self.memoryBytes = memoryBytes
        self.cpuCores = cpuCores
        self.processes = processes
    }
}

/// Everything needed to create and start one container.
public struct ContainerSpec: Sendable {
    /// Whose container: its host paths and cgroups come from `instance.hostName`.
    public var instance: InstanceRef
    /// The hostname inside the container: the instance name, without its project.
    public var name: String { instance.name }
    /// The unpacked image root filesystem; used read-only as the overlay's lower layer.
    public var layerRootfs: String
    /// nil = privileged (no user namespace, `security.privileged=true`).
    public var idmap: IDMap?
    public var limits: Limits
    public var environment: [String: String]
    public var initCommand: [String]
    /// Files `start` writes into the root filesystem before init runs (rendered image templates).
    public var files: [File]

    /// A file written at start: created 0644 and owned by the container's root (with missing
    /// parent directories, 0755), or replaced in place keeping its mode and owner.
    public struct File: Sendable, Equatable {
        /// Absolute path inside the container; symlinks on the way resolve inside its root.
        public var path: String
        public var content: [UInt8]
        /// Leave an existing file alone (an image template's `create_only`).
        public var createOnly: Bool

        public init(path: String, content: [UInt8], createOnly: Bool = false) {
            self.path = path
            self.content = content
            self.createOnly = createOnly
        }
    }

    public init(instance: InstanceRef, layerRootfs: String, idmap: IDMap?, limits: Limits = Limits(),
                environment: [String: String] = [:], initCommand: [String] = ["/sbin/init"], files: [File] = []) {
        self.instance = instance
        self.layerRootfs = layerRootfs
        self.idmap = idmap
        self.limits = limits
        self.environment = environment
        self.initCommand = initCommand
        self.files = files
    }

    /// Instance names become host paths, cgroup names and the hostname: keep them to a
    /// hostname's alphabet. Project names become host paths and cgroup names too.
    public static func validate(name: String) throws(RuntimeError) {
        let ok = !name.isEmpty && name.count <= 63 && name.first != "-"
            && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }
        if !ok {
            throw .invalid("invalid container name '\(name)': use 1-63 letters, digits and '-', not starting with '-'")
        }
    }

    public static func validate(_ instance: InstanceRef) throws(RuntimeError) {
        try validate(name: instance.name)
        do throws(ProjectName.NameError) { try ProjectName.validate(instance.project) } catch {
            throw .invalid("container \(instance.name): \(error)")
        }
    }
}

/// A started container: its init's host pid and start time (from /proc/PID/stat, in clock
/// ticks since boot), which together identify it across agent restarts.
public struct RunningContainer: Sendable, Equatable {
    public let instance: InstanceRef
    public let pid: pid_t
    public let pidStartTime: UInt64

    public init(instance: InstanceRef, pid: pid_t, pidStartTime: UInt64) {
        self.instance = instance
        self.pid = pid
        self.pidStartTime = pidStartTime
    }
}

/// Live figures for one container, read from its cgroups.
/// Figures the kernel does not offer read as 0; a stopped container has all zeros.
public struct ContainerState: Sendable, Equatable {
    public var running: Bool
    public var pid: pid_t
    public var processes: Int64
    public var memoryUsage: Int64
    public var memoryPeak: Int64
    public var cpuUsageNanoseconds: Int64

    public init(running: Bool, pid: pid_t, processes: Int64, memoryUsage: Int64, memoryPeak: Int64, cpuUsageNanoseconds: Int64) {
        self.running = running
        self.pid = pid
        self.processes = processes
        self.memoryUsage = memoryUsage
        self.memoryPeak = memoryPeak
        self.cpuUsageNanoseconds = cpuUsageNanoseconds
    }

    public static let stopped = ContainerState(running: false, pid: 0, processes: 0, memoryUsage: 0, memoryPeak: 0, cpuUsageNanoseconds: 0)
}

/// The standard streams of an exec'd command: three fds, or one terminal (a pty slave,
/// which also becomes the controlling terminal). The caller keeps and closes its copies.
public enum ExecStdio: Sendable {
    case pipes(stdin: Int32, stdout: Int32, stderr: Int32)
    case terminal(Int32)
}

/// A command running in a container. `pid` is the host pid of the helper that waits for it
/// (its exit code is the command's); `commandPid` is the command itself (host pid), for signals.
public struct ExecProcess: Sendable {
    public let pid: pid_t
    public let commandPid: pid_t?
    /// Why the command did not start (e.g. "command not found: foo"); then the exit code
    /// is 127 (not found) or 126 (not executable).
    public let failure: String?
    let exit: ExitFuture

    /// Waits for the command and returns its exit code (128+signal when killed).
    public func wait() async -> Int32 { await exit.wait().shellCode }

    /// Sends a signal to the command.
    public func signal(_ sig: Int32) {
        if let commandPid, exit.status == nil { kill(commandPid, sig) }
    }
}
