import Glibc
import Runtime

/// The checkpoint side of `ContainerRuntime`, from its public API.
/// The restore side (`RestoreDestination`) needs Runtime to mount the root, create cgroups and
/// adopt a restored init under its own bookkeeping; it is not provided here.
extension ContainerRuntime: CheckpointSource {
    public func checkpointTarget(name: String) async throws -> CheckpointTarget {
        guard let s = state(name: name), s.running, s.pid > 0 else { throw RuntimeError.notRunning(name) }
        // Runtime's cgroup naming (`lxd-swift/<member>/<instance>`, DESIGN.md "Names on the host").
        let freezer = cgroupLayout.directory(of: "freezer", relative: "lxd-swift/\(memberName)/\(name)")
        return CheckpointTarget(pid: s.pid, freezerCgroup: freezer.flatMap { access($0, F_OK) == 0 ? $0 : nil })
    }

    public func waitStopped(name: String, timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        // The runtime drops a container from its table only after unmounting and removing cgroups.
        while runningNames().contains(name) {
            guard ContinuousClock.now < deadline else {
                throw RuntimeError.invalid("container \(name) still registered as running \(timeout) after its checkpoint; check the runtime's cleanup")
            }
            try await Task.sleep(for: .milliseconds(5))
        }
    }
}
