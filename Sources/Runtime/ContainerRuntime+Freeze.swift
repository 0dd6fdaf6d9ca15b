import Foundation
import InstanceConfig
import Logging

/// The cgroup freezer of one container: every task stops where it is (no signal the container
/// could see), so its files can be read in a consistent state, then continues. The v1 freezer
/// (`freezer.state`, the one CRIU uses on hybrid hosts) is preferred; cgroup2's `cgroup.freeze`
/// serves when there is none. Both freeze the whole subtree.
public enum CgroupFreezer: Sendable, Equatable {
    case v1(directory: String)
    case v2(directory: String)

    /// Picks the freezer from what exists: the v1 freezer group, else a cgroup2 group with
    /// `cgroup.freeze` (kernel 5.2 and later). `exists` answers for a path (a test passes a set).
    public static func choose(v1Directory: String?, v2Directory: String?, exists: (String) -> Bool) -> CgroupFreezer? {
        if let d = v1Directory, exists(d + "/freezer.state") { return .v1(directory: d) }
        if let d = v2Directory, exists(d + "/cgroup.freeze") { return .v2(directory: d) }
        return nil
    }

    /// The file written to freeze or thaw, and what is written.
    var control: (path: String, freeze: String, thaw: String) {
        switch self {
        case .v1(let d): return (d + "/freezer.state", "FROZEN", "THAWED")
        case .v2(let d): return (d + "/cgroup.freeze", "1", "0")
        }
    }

    /// The file that says whether the freeze is complete.
    var statusPath: String {
        switch self {
        case .v1(let d): return d + "/freezer.state"
        case .v2(let d): return d + "/cgroup.events"
        }
    }

    /// Whether the status file's text says every task is frozen (v1: "FROZEN", not "FREEZING";
    /// v2: a "frozen 1" line of cgroup.events).
    public func isFrozen(status: String) -> Bool {
        switch self {
        case .v1: return status.trimmingCharacters(in: .whitespacesAndNewlines) == "FROZEN"
        case .v2: return status.split(separator: "\n").contains { $0.trimmingCharacters(in: .whitespaces) == "frozen 1" }
        }
    }
}

extension ContainerRuntime {
    /// The container's freezer, or why there is none.
    public func freezer(of instance: InstanceRef) throws(RuntimeError) -> CgroupFreezer {
        let relative = cgroups.relative(hostName(instance))
        let v1 = cgroupLayout.usesV2 ? nil : cgroupLayout.directory(of: "freezer", relative: relative)
        let v2 = cgroupLayout.delegatedDirectory(relative: relative)
        guard let freezer = CgroupFreezer.choose(v1Directory: v1, v2Directory: v2, exists: { FileManager.default.fileExists(atPath: $0) }) else {
            throw .unsupported("no cgroup freezer for container \(hostName(instance)): neither a v1 freezer group nor cgroup2's cgroup.freeze (kernel 5.2 or later) exists")
        }
        return freezer
    }

    /// Why the container cannot be frozen; nil when it can.
    public func freezeProblem(instance: InstanceRef) -> String? {
        do { _ = try freezer(of: instance); return nil } catch { return error.description }
    }

    /// How long a freeze may take before it is given up (a task stuck in the kernel).
    public static let freezeTimeout: Duration = .seconds(10)

    /// Freezes the running container and waits until every task is frozen; thaws it again and
    /// throws when that takes longer than `freezeTimeout`.
    public func freeze(instance: InstanceRef) async throws(RuntimeError) {
        let timeout = Self.freezeTimeout
        guard state(instance: instance)?.running == true else { throw .notRunning("\(instance)") }
        let freezer = try self.freezer(of: instance)
        let deadline = ContinuousClock.now + timeout
        while true {
            // v1: a write while FREEZING goes on retries the tasks that were not frozen yet.
            try writeString(freezer.control.path, freezer.control.freeze)
            if freezer.isFrozen(status: (try? readString(freezer.statusPath)) ?? "") { break }
            if ContinuousClock.now >= deadline {
                try? writeString(freezer.control.path, freezer.control.thaw)
                throw .system("freeze (not complete after \(timeout))", on: freezer.control.path, EBUSY)
            }
            try? await Task.sleep(for: .milliseconds(5))
        }
        logger.info("container frozen", metadata: ["instance": "\(instance)"])
    }

    /// Thaws a container frozen by `freeze`; nothing happens to one that is not frozen or gone.
    public func thaw(instance: InstanceRef) throws(RuntimeError) {
        guard let freezer = try? self.freezer(of: instance) else { return }
        try writeString(freezer.control.path, freezer.control.thaw)
        logger.info("container thawed", metadata: ["instance": "\(instance)"])
    }
}
