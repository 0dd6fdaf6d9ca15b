/// An instance on the member being evacuated.
public struct EvacuatingInstance: Sendable, Hashable {
    public var name: String
    public var running: Bool

    public init(name: String, running: Bool) {
        self.name = name
        self.running = running
    }
}

/// A member that could receive instances.
public struct EvacuationCandidate: Sendable, Hashable {
    public var id: MemberID
    public var online: Bool
    /// Instances it holds now (running or not).
    public var instanceCount: Int
    /// Whether live migration works from the evacuated member to this one (both hosts' CRIU
    /// probes agree; decided by the caller).
    public var liveMigration: Bool

    public init(id: MemberID, online: Bool, instanceCount: Int, liveMigration: Bool) {
        self.id = id
        self.online = online
        self.instanceCount = instanceCount
        self.liveMigration = liveMigration
    }
}

public enum MoveMethod: Sendable, Hashable {
    /// Checkpoint, transfer, restore: the instance keeps running.
    case live
    /// Stop, copy the root filesystem, start on the target.
    case stopCopyStart
    /// The instance is stopped: copy it and leave it stopped.
    case copy
}

public struct InstanceMove: Sendable, Hashable {
    public var instance: String
    public var target: MemberID
    public var method: MoveMethod

    public init(instance: String, target: MemberID, method: MoveMethod) {
        self.instance = instance
        self.target = target
        self.method = method
    }
}

public struct EvacuationPlan: Sendable, Hashable {
    public var moves: [InstanceMove]
    /// Instances with nowhere to go (no online candidate); they stay where they are.
    public var unplaced: [String]
}

/// Where each instance of an evacuated member goes, and how. Placeholder policy until the
/// scheduler's capacity model is used here: the online candidate with the fewest instances
/// (counting moves already planned), lowest id on ties; instances in name order.
public enum EvacuationPlanner {
    public static func plan(
        evacuating source: MemberID, instances: [EvacuatingInstance], candidates: [EvacuationCandidate]
    ) -> EvacuationPlan {
        var targets = candidates.filter { $0.online && $0.id != source }
        var moves: [InstanceMove] = []
        var unplaced: [String] = []
        for instance in instances.sorted(by: { $0.name < $1.name }) {
            guard let best = targets.indices.min(by: {
                (targets[$0].instanceCount, targets[$0].id) < (targets[$1].instanceCount, targets[$1].id)
            }) else {
                unplaced.append(instance.name)
                continue
            }
            let method: MoveMethod = !instance.running ? .copy : (targets[best].liveMigration ? .live : .stopCopyStart)
            moves.append(InstanceMove(instance: instance.name, target: targets[best].id, method: method))
            targets[best].instanceCount += 1
        }
        return EvacuationPlan(moves: moves, unplaced: unplaced)
    }
}
