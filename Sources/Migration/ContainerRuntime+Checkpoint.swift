import Glibc
import InstanceConfig
import Runtime

/// The checkpoint side of `ContainerRuntime`, from its public API.
extension ContainerRuntime: CheckpointSource {
    public func checkpointTarget(instance: InstanceRef) async throws -> CheckpointTarget {
        guard let s = state(instance: instance), s.running, s.pid > 0 else { throw RuntimeError.notRunning("\(instance)") }
        let freezer = cgroupDirectory("freezer", of: instance)
        return CheckpointTarget(pid: s.pid, freezerCgroup: freezer.flatMap { access($0, F_OK) == 0 ? $0 : nil },
                                console: Self.externalConsole(initPid: s.pid))
    }

    /// The container's console is a pty whose master the runtime's monitor holds, outside the
    /// dumped tree. Read from init's view of /dev/console; nil when that is not a pty (Unix98
    /// pty slaves have majors 136-143).
    static func externalConsole(initPid: Int32) -> ExternalConsole? {
        var st = stat()
        guard stat("/proc/\(initPid)/root/dev/console", &st) == 0, st.st_mode & S_IFMT == S_IFCHR,
              (136...143).contains(Self.major(UInt64(st.st_rdev))) else { return nil }
        return ExternalConsole(rdev: UInt64(st.st_rdev), dev: UInt64(st.st_dev))
    }

    /// glibc's major() (a macro Swift cannot import).
    static func major(_ dev: UInt64) -> UInt64 { ((dev >> 8) & 0xfff) | ((dev >> 32) & ~0xfff) }

    public func waitStopped(instance: InstanceRef, timeout: Duration) async throws {
        // The runtime reports stopped only after reaping init, unmounting and removing cgroups.
        guard await awaitStopped(instance: instance, timeout: timeout) else {
            throw RuntimeError.invalid("container \(instance) still registered as running \(timeout) after its checkpoint; check the runtime's cleanup")
        }
    }
}

/// The restore side on the same host: the runtime rebuilds the same root filesystem and the
/// container's own cgroups (same paths as at dump time, so no --cgroup-root is needed).
extension ContainerRuntime: RestoreDestination {
    public func prepareRestore(instance: InstanceRef) async throws -> RestoreTarget {
        let prep = try await mountForRestore(instance: instance)
        return RestoreTarget(rootfs: prep.rootfs, reapedAfter: prep.reapedAfter,
                             console: RestoredConsole(slavePath: prep.consoleSlavePath, slaveFD: prep.consoleSlaveFD))
    }

    public func adoptRestored(instance: InstanceRef, pid: Int32, target: RestoreTarget) async throws {
        _ = try registerRestored(instance: instance, pid: pid, reapedAfter: target.reapedAfter)
    }

    public func abandonRestore(instance: InstanceRef) async {
        releaseRestore(instance: instance)
    }
}
