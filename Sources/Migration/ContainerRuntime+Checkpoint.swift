import Glibc
import InstanceConfig
import Runtime

/// The checkpoint side of `ContainerRuntime`, from its public API.
extension ContainerRuntime: CheckpointSource {
    public func checkpointTarget(instance: InstanceRef) async throws -> CheckpointTarget {
        guard let s = state(instance: instance), s.running, s.pid > 0 else { throw RuntimeError.notRunning("\(instance)") }
        let freezer = cgroupDirectory("freezer", of: instance)
        var target = CheckpointTarget(pid: s.pid, freezerCgroup: freezer.flatMap { access($0, F_OK) == 0 ? $0 : nil },
                                      console: Self.externalConsole(initPid: s.pid), onlyLoopback: Self.onlyLoopback(initPid: s.pid))
        target.cgroupTree = cgroupSubtree(of: instance)
        return target
    }

    /// Whether init's network namespace has no device but lo (/proc/PID/net/dev: two header
    /// lines, then one line per device).
    static func onlyLoopback(initPid: Int32) -> Bool {
        guard let text = try? String(contentsOfFile: "/proc/\(initPid)/net/dev", encoding: .utf8) else { return false }
        let devices = text.split(separator: "\n").dropFirst(2).compactMap { $0.split(separator: ":").first?.trimmingCharacters(in: .whitespaces) }
        return devices == ["lo"]
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
        // Always this member's paths: the same as the dump's after a stateful stop here, another
        // member's after a move.
        let roots = prep.cgroupControllerGroups.map { CgroupRoot(controllers: $0, path: "/" + prep.cgroupPath) }
        var target = RestoreTarget(rootfs: prep.rootfs, cgroupRoots: roots, reapedAfter: prep.reapedAfter,
                             console: RestoredConsole(slavePath: prep.consoleSlavePath, slaveFD: prep.consoleSlaveFD))
        target.actionScript = helperPath
        return target
    }

    public func adoptRestored(instance: InstanceRef, pid: Int32, target: RestoreTarget) async throws {
        _ = try registerRestored(instance: instance, pid: pid, reapedAfter: target.reapedAfter)
    }

    public func abandonRestore(instance: InstanceRef) async {
        releaseRestore(instance: instance)
    }
}
