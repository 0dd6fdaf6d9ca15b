/// Where an instance goes.
public struct Placement: Sendable, Hashable {
    public var memberID: Int64
    public var memberName: String
    /// Index of the member in the snapshot array the scheduler was given.
    public var memberIndex: Int
    /// What the instance counts for on the member (its limits, defaults filled in).
    public var footprint: Resources
    public var policy: SchedulerPolicy
    /// The request was forced onto its target: capacity and placement-group checks were skipped.
    public var forced: Bool
    /// A permissive placement-group rule that could not be followed, e.g.
    /// "anti-affinity (permissive) with web-1 on m2: every candidate holds the group".
    public var notes: [String]

    public init(memberID: Int64, memberName: String, memberIndex: Int, footprint: Resources,
                policy: SchedulerPolicy, forced: Bool = false, notes: [String] = []) {
        self.memberID = memberID
        self.memberName = memberName
        self.memberIndex = memberIndex
        self.footprint = footprint
        self.policy = policy
        self.forced = forced
        self.notes = notes
    }
}

/// A resource that did not fit on a member.
public struct Shortfall: Sendable, Hashable, CustomStringConvertible {
    public enum Resource: String, Sendable, Hashable { case cpu, memory, disk, processes }

    public var resource: Resource
    /// Already allocated on the member.
    public var allocated: Double
    /// Reported (or overridden) capacity.
    public var capacity: Double
    /// Multiplier on capacity (the cpu overcommit ratio; 1 for the hard resources).
    public var ratio: Double
    /// What the instance needs.
    public var needed: Double

    public init(resource: Resource, allocated: Double, capacity: Double, ratio: Double = 1, needed: Double) {
        self.resource = resource
        self.allocated = allocated
        self.capacity = capacity
        self.ratio = ratio
        self.needed = needed
    }

    /// e.g. "memory 95% allocated (7.6GiB of 8GiB), needs 512MiB".
    public var description: String {
        let limit = capacity * ratio
        // Int() truncates, which is rounding down for these non-negative figures (and needs no libm).
        let percent = limit > 0 ? Int(max(0, min(allocated / limit * 100, 1e9))) : 100
        switch resource {
        case .memory, .disk:
            return "\(resource.rawValue) \(percent)% allocated (\(ByteSize.format(Int64(allocated))) of "
                + "\(ByteSize.format(Int64(capacity)))), needs \(ByteSize.format(Int64(needed)))"
        case .cpu:
            let over = ratio == 1 ? "" : " with \(formatCores(ratio))x overcommit of \(formatCores(capacity))"
            return "cpu \(percent)% allocated (\(formatCores(allocated)) of \(formatCores(limit)) cores\(over)), "
                + "needs \(formatCores(needed))"
        case .processes:
            return "processes \(percent)% allocated (\(Int64(allocated)) of \(Int64(capacity))), needs \(Int64(needed))"
        }
    }
}

/// Why one member cannot take the instance.
public enum MemberRefusalReason: Sendable, Hashable, CustomStringConvertible {
    case offline
    case evacuated
    /// `scheduler.instance=manual` and the launch did not name the member.
    case manualOnly
    /// `scheduler.instance=group` and the launch named no cluster group.
    case groupTargetOnly
    /// The launch targeted a cluster group this member is not in.
    case notInGroup(String)
    /// The launch targeted another member.
    case notTargeted(String)
    case insufficient([Shortfall])
    /// Strict anti-affinity: `instance` of the group is already here (or in this failure domain).
    case antiAffinity(group: String, instance: String, failureDomain: String?)
    /// Strict affinity: the group's instances are elsewhere (e.g. `instance` on `location`).
    case affinity(group: String, instance: String, location: String)

    public var description: String {
        switch self {
        case .offline: return "offline"
        case .evacuated: return "evacuated"
        case .manualOnly: return "scheduler.instance=manual (only with --target <member>)"
        case .groupTargetOnly: return "scheduler.instance=group (only with --target @<group>)"
        case .notInGroup(let group): return "not in cluster group @\(group)"
        case .notTargeted(let target): return "not the target (\(target))"
        case .insufficient(let shortfalls): return shortfalls.map(\.description).joined(separator: "; ")
        case .antiAffinity(let group, let instance, let domain):
            let place = domain.map { " in failure domain \($0)" } ?? ""
            return "anti-affinity with \(instance)\(place) (placement group \(group))"
        case .affinity(let group, let instance, let location):
            return "affinity with \(instance) on \(location) (placement group \(group))"
        }
    }
}

/// One member's verdict in a refusal.
public struct MemberRefusal: Sendable, Hashable, CustomStringConvertible {
    public var memberID: Int64
    public var memberName: String
    public var reason: MemberRefusalReason

    public init(memberID: Int64, memberName: String, reason: MemberRefusalReason) {
        self.memberID = memberID
        self.memberName = memberName
        self.reason = reason
    }

    public var description: String { "\(memberName): \(reason)" }
}

/// Why an instance cannot be placed: a problem with the request itself, or every member's reason.
public struct Refusal: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Problem: Sendable, Hashable {
        /// Every member was considered; see ``Refusal/members``.
        case noMemberFits
        case noMembers
        case noSuchMember(String)
        case noSuchGroup(String)
        case invalidRequest(String)
    }

    public var instance: String?
    public var problem: Problem
    /// One entry per member, in snapshot order, when ``problem`` is ``Problem/noMemberFits``.
    public var members: [MemberRefusal]

    public init(instance: String?, problem: Problem, members: [MemberRefusal] = []) {
        self.instance = instance
        self.problem = problem
        self.members = members
    }

    /// One line for the request, then one line per distinct reason naming its members:
    /// "cannot place web-3: no member can take it\n  m1, m4: offline\n  m2: memory 95% ...".
    public var description: String {
        let what = instance.map { "cannot place \($0)" } ?? "cannot place instance"
        switch problem {
        case .noMembers: return "\(what): the cluster has no members"
        case .noSuchMember(let name): return "\(what): no cluster member named \(name); see `lxdctl cluster list`"
        case .noSuchGroup(let name): return "\(what): no member is in cluster group @\(name)"
        case .invalidRequest(let why): return "\(what): \(why)"
        case .noMemberFits:
            // Group identical reasons so a 1,000-member refusal stays readable yet names everyone.
            var order: [String] = []
            var names: [String: [String]] = [:]
            for member in members {
                let reason = member.reason.description
                if names[reason] == nil { order.append(reason) }
                names[reason, default: []].append(member.memberName)
            }
            let lines = order.map { "  \(names[$0]!.joined(separator: ", ")): \($0)" }
            return ([ "\(what): no member can take it" ] + lines).joined(separator: "\n")
        }
    }
}

/// A batch that could not be placed whole; nothing of it should be created.
public struct BatchRefusal: Error, Sendable, Hashable, CustomStringConvertible {
    /// Index in the batch of the request that did not fit.
    public var index: Int
    /// How many requests were placed before it (and must now be dropped).
    public var placedBefore: Int
    public var total: Int
    public var refusal: Refusal

    public init(index: Int, placedBefore: Int, total: Int, refusal: Refusal) {
        self.index = index
        self.placedBefore = placedBefore
        self.total = total
        self.refusal = refusal
    }

    public var description: String {
        "cannot place \(total) instances (none created): instance \(index + 1) of \(total) does not fit "
            + "after \(placedBefore) placed\n\(refusal)"
    }
}

/// A whole batch placed: one placement per request, and the snapshots with every one recorded.
public struct BatchPlacement: Sendable, Hashable {
    public var placements: [Placement]
    public var members: [MemberSnapshot]

    public init(placements: [Placement], members: [MemberSnapshot]) {
        self.placements = placements
        self.members = members
    }
}
