/// `cluster.evacuate` on an instance, with LXD's values, or the `mode` of an evacuate request
/// overriding it for every instance of the member.
public enum EvacuationMode: String, Sendable, Hashable, CaseIterable {
    /// Live when the instance runs and a member that can take it live exists, else stopped,
    /// moved and started there; when no member can take it, a running instance is stopped and
    /// left (the member is about to go down for maintenance: a clean stop beats a cut).
    case auto
    /// Running instances move live or not at all (left running, reported); stopped ones move cold.
    case liveMigrate = "live-migrate"
    /// Moved without their memory (running: stopped, moved, started there); left as they are,
    /// and reported, when no member can take them.
    case migrate
    /// Stopped and left on the member; never moved.
    case stop
}

/// An instance on the member being evacuated, as the planner needs it.
public struct EvacuatingInstance: Sendable, Hashable {
    public var project: String
    public var name: String
    public var running: Bool
    /// Its `cluster.evacuate` (``EvacuationMode/auto`` when unset).
    public var mode: EvacuationMode
    public var limits: ResourceLimits
    /// The rule of its `placement.group`, if any.
    public var placementGroup: PlacementGroupRule?

    public init(project: String = "default", name: String, running: Bool, mode: EvacuationMode = .auto,
                limits: ResourceLimits = ResourceLimits(), placementGroup: PlacementGroupRule? = nil) {
        self.project = project
        self.name = name
        self.running = running
        self.mode = mode
        self.limits = limits
        self.placementGroup = placementGroup
    }
}

/// What happens to one instance.
public enum EvacuationAction: Sendable, Hashable {
    /// Moved to `member`: `live` keeps it running through the move; otherwise a running instance
    /// is stopped, moved and started there, a stopped one is moved and stays stopped.
    case move(member: String, memberID: Int64, live: Bool)
    /// Stopped and left on the evacuated member (`reason` says why it did not move).
    case stop(reason: String)
    /// Left as it is on the evacuated member (`reason` says why).
    case leave(reason: String)
}

public struct EvacuationStep: Sendable, Hashable {
    public var project: String
    public var name: String
    public var running: Bool
    /// The mode it was planned with (the request's override, else its `cluster.evacuate`):
    /// `live-migrate` moves must not fall back to a move without memory.
    public var mode: EvacuationMode
    public var action: EvacuationAction

    public init(project: String, name: String, running: Bool, mode: EvacuationMode = .auto, action: EvacuationAction) {
        self.project = project
        self.name = name
        self.running = running
        self.mode = mode
        self.action = action
    }
}

/// Where each instance of an evacuated member goes, in the order the moves are to be done.
public struct EvacuationPlan: Sendable, Hashable {
    public var steps: [EvacuationStep]
    /// The snapshots with every planned move recorded.
    public var members: [MemberSnapshot]
}

/// Evacuation planning: a pure function of (the member, its instances, the other members'
/// snapshots, where live migration works, settings, seed). Rules:
///
/// - Each instance's mode is the request's override, else its `cluster.evacuate`.
/// - `stop`: a running instance is stopped and left, a stopped one left; nothing moves.
/// - Otherwise its target is chosen by ``Scheduler/place(_:members:settings:seed:)`` among the
///   other members (the evacuated one is never a candidate), so capacity, `scheduler.instance`,
///   OFFLINE and EVACUATED members, and strict placement-group rules hold exactly as for a launch.
///   A running instance in `auto` or `live-migrate` mode is first placed among the members that
///   `liveTargets` names only, and moves live if one takes it; `auto` then falls back to every
///   member (a move without memory), `live-migrate` leaves it running. Stopped instances move cold.
/// - Nothing fits: `auto` stops a running instance and leaves it; otherwise it is left as it is.
///   Either way the step carries every member's reason.
/// - Each planned move is recorded in the snapshots before the next instance is placed, so the
///   plan never oversubscribes a member nor breaks an anti-affinity rule with itself.
/// - Order: running instances first (room that runs out goes to what runs), then by project and
///   name; the instance at position `i` is placed with `Scheduler.itemSeed(seed, index: i)`.
/// - The evacuated member's own placement-group counts are dropped: its instances are leaving,
///   and a strict affinity group held only there must be free to gather on another member (the
///   first instance placed anchors it, the others follow).
public enum EvacuationPlanner {
    public static func plan(
        evacuating source: String, instances: [EvacuatingInstance], members: [MemberSnapshot],
        liveTargets: Set<String>, mode override: EvacuationMode? = nil,
        settings: SchedulerSettings = SchedulerSettings(), seed: UInt64
    ) -> EvacuationPlan {
        var candidates = members.filter { $0.name != source }
        let ordered = instances.sorted {
            ($0.running ? 0 : 1, $0.project, $0.name) < ($1.running ? 0 : 1, $1.project, $1.name)
        }
        var steps: [EvacuationStep] = []
        for (index, instance) in ordered.enumerated() {
            let mode = override ?? instance.mode
            let action = decide(instance, mode: mode, candidates: &candidates, liveTargets: liveTargets,
                                settings: settings, seed: Scheduler.itemSeed(seed, index: index))
            steps.append(EvacuationStep(project: instance.project, name: instance.name, running: instance.running, mode: mode, action: action))
        }
        return EvacuationPlan(steps: steps, members: candidates)
    }

    static func decide(
        _ instance: EvacuatingInstance, mode: EvacuationMode, candidates: inout [MemberSnapshot],
        liveTargets: Set<String>, settings: SchedulerSettings, seed: UInt64
    ) -> EvacuationAction {
        if mode == .stop {
            return instance.running ? .stop(reason: "cluster.evacuate=stop") : .leave(reason: "stopped, and cluster.evacuate=stop does not move instances")
        }
        let request = PlacementRequest(name: instance.name, limits: instance.limits, placementGroup: instance.placementGroup)
        var liveRefusal: String?
        if instance.running && (mode == .auto || mode == .liveMigrate) {
            let live = candidates.filter { liveTargets.contains($0.name) }
            switch Scheduler.place(request, members: live, settings: settings, seed: seed) {
            case .success(let placement):
                return record(placement, request, in: &candidates, live: true)
            case .failure(let refusal):
                let without = candidates.filter { !liveTargets.contains($0.name) }.map(\.name)
                liveRefusal = reasons(refusal, extra: without.isEmpty ? [] : ["\(without.joined(separator: ", ")): no live migration from here"])
            }
            if mode == .liveMigrate {
                return .leave(reason: "cluster.evacuate=live-migrate and no member can take it live (\(liveRefusal!))")
            }
        }
        switch Scheduler.place(request, members: candidates, settings: settings, seed: seed) {
        case .success(let placement):
            return record(placement, request, in: &candidates, live: false)
        case .failure(let refusal):
            let why = "no member can take it (\(reasons(refusal, extra: [])))"
            if mode == .auto && instance.running { return .stop(reason: why) }
            return .leave(reason: why)
        }
    }

    private static func record(_ placement: Placement, _ request: PlacementRequest, in candidates: inout [MemberSnapshot], live: Bool) -> EvacuationAction {
        // The placement's index is into the list it was given, which may be the live subset.
        if let index = candidates.firstIndex(where: { $0.id == placement.memberID }) {
            candidates[index].record(placement, of: request)
        }
        return .move(member: placement.memberName, memberID: placement.memberID, live: live)
    }

    /// Every member's reason on one line, identical reasons grouped: "m2, m3: offline; m4: ...".
    static func reasons(_ refusal: Refusal, extra: [String]) -> String {
        guard case .noMemberFits = refusal.problem else {
            if case .noMembers = refusal.problem, !extra.isEmpty { return extra.joined(separator: "; ") }
            if case .noMembers = refusal.problem { return "no other member" }
            return "\(refusal)"
        }
        var order: [String] = []
        var names: [String: [String]] = [:]
        for member in refusal.members {
            let reason = member.reason.description
            if names[reason] == nil { order.append(reason) }
            names[reason, default: []].append(member.memberName)
        }
        return (order.map { "\(names[$0]!.joined(separator: ", ")): \($0)" } + extra).joined(separator: "; ")
    }
}

/// An instance that an evacuation moved away from, or stopped on, the member being restored.
public struct RestoringInstance: Sendable, Hashable {
    public var project: String
    public var name: String
    /// Where it is now.
    public var location: String
    public var running: Bool

    public init(project: String = "default", name: String, location: String, running: Bool) {
        self.project = project
        self.name = name
        self.location = location
        self.running = running
    }
}

public enum RestoreAction: Sendable, Hashable {
    /// Moved back from `from` (live when `live`; otherwise as `EvacuationAction.move`).
    case moveBack(from: String, live: Bool)
    /// Stopped on the member by the evacuation: started again.
    case start
    /// Already back and running (a restore that was interrupted and is run again).
    case nothing
}

public struct RestoreStep: Sendable, Hashable {
    public var project: String
    public var name: String
    public var action: RestoreAction
}

/// The restore of member `member`: every instance whose `volatile.evacuate.origin` names it.
/// Those elsewhere move back (live when running and `liveSources` names where it is now, else
/// without memory; stopped ones cold), whatever the capacity (they came from there); those on
/// the member (stopped by the evacuation) are started; ordered by project and name.
public enum RestorePlanner {
    public static func plan(restoring member: String, instances: [RestoringInstance], liveSources: Set<String>) -> [RestoreStep] {
        instances.sorted { ($0.project, $0.name) < ($1.project, $1.name) }.map { instance in
            let action: RestoreAction
            if instance.location != member {
                action = .moveBack(from: instance.location, live: instance.running && liveSources.contains(instance.location))
            } else {
                action = instance.running ? .nothing : .start
            }
            return RestoreStep(project: instance.project, name: instance.name, action: action)
        }
    }
}
