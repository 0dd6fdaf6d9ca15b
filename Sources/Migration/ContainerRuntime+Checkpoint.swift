import Glibc
import Runtime

/// The checkpoint side of `ContainerRuntime`, from its public API.
extension ContainerRuntime: CheckpointSource {
    public func checkpointTarget(name: String) async throws -> CheckpointTarget {
        guard let s = state(name: name), s.running, s.pid > 0 else { throw RuntimeError.notRunning(name) }
        // Runtime's cgroup naming (`lxd-swift/<member>/<instance>`, DESIGN.md "Names on the host").
        let freezer = cgroupLayout.directory(of: "freezer", relative: "lxd-swift/\(memberName)/\(name)")
        return CheckpointTarget(pid: s.pid, freezerCgroup: freezer.flatMap { access($0, F_OK) == 0 ? $0 : nil })
    }

    public func waitStopped(name: String, timeout: Duration) async throws {
        // The runtime reports stopped only after reaping init, unmounting and removing cgroups.
        guard await awaitStopped(name: name, timeout: timeout) else {
            throw RuntimeError.invalid("container \(name) still registered as running \(timeout) after its checkpoint; check the runtime's cleanup")
        }
    }
}

/// The restore side on the same host: the runtime rebuilds the same root filesystem and the
/// container's own cgroups (same paths as at dump time, so no --cgroup-root is needed).
extension ContainerRuntime: RestoreDestination {
    public func prepareRestore(name: String) async throws -> RestoreTarget {
        let prep = try await mountForRestore(name: name)
        return RestoreTarget(rootfs: prep.rootfs, reapedAfter: prep.reapedAfter)
    }

    public func adoptRestored(name: String, pid: Int32, target: RestoreTarget) async throws {
        _ = try registerRestored(name: name, pid: pid, reapedAfter: target.reapedAfter)
    }

    public func abandonRestore(name: String) async {
        releaseRestore(name: name)
    }
}
