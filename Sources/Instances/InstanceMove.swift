import APITypes
import InstanceConfig

/// How a move went: what was done and what it cost.
public struct MoveReport: Sendable, Hashable, Codable {
    /// "live" (checkpoint, transfer, restore), "stateless" (stopped, copied, started there) or
    /// "cold" (a stopped instance copied).
    public var method: String
    public var from: String
    public var to: String
    /// How long the instance did not run (live and stateless moves).
    public var downtimeMilliseconds: Double?
    public var totalMilliseconds: Double

    public init(method: String, from: String, to: String, downtimeMilliseconds: Double?, totalMilliseconds: Double) {
        self.method = method
        self.from = from
        self.to = to
        self.downtimeMilliseconds = downtimeMilliseconds
        self.totalMilliseconds = totalMilliseconds
    }
}

extension InstanceLifecycle {
    /// Moves an instance of this member to member `target`, as an operation.
    public func move(_ name: String, to target: String, live: Bool?) async throws -> APIOperation {
        throw InstancesError.unsupported("Moving instances is not built yet")
    }

    /// Moves `instance` (on this member) to member `target` and returns when it is done, for
    /// callers that run their own operation (cluster evacuation). `live`: nil = live when
    /// running and possible, else stateless; false = stateless.
    public func moveNow(_ instance: InstanceRef, to target: String, live: Bool?) async throws -> MoveReport {
        throw InstancesError.unsupported("Moving instances is not built yet")
    }
}
