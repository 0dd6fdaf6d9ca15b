/// How the scheduler ranks members that can take an instance.
public enum SchedulerPolicy: String, Sendable, Hashable, CaseIterable {
    /// LXD's rule: the member with the fewest instances.
    case fewest
    /// Least allocated afterwards, by cpu fraction + memory fraction: keeps headroom everywhere.
    case spread
    /// Most allocated afterwards that still fits: keeps whole members free for big instances.
    case binpack
}

/// Where the user asked the instance to go.
public enum PlacementTarget: Sendable, Hashable {
    /// No `--target`: the scheduler chooses among members with `scheduler.instance=all`.
    case anyMember
    /// `--target m1`: honoured even with `scheduler.instance=manual`/`group`, but still capacity
    /// and placement-group checked unless the request is forced.
    case member(String)
    /// `--target @group`: members of that cluster group with `scheduler.instance` `all` or `group`.
    case group(String)
}

/// A placement group rule, like LXD 6's placement groups.
public struct PlacementGroupRule: Sendable, Hashable {
    public enum Kind: String, Sendable, Hashable {
        /// Together: on a member (or failure domain) already holding the group's instances.
        case affinity
        /// Apart: on a member (or failure domain) holding none of the group's instances.
        case antiAffinity = "anti-affinity"
    }

    public enum Rigor: String, Sendable, Hashable {
        /// Refuse rather than break the rule.
        case strict
        /// Follow the rule where possible, otherwise place anyway (the placement carries a note).
        case permissive
    }

    public enum Scope: String, Sendable, Hashable {
        case member
        case failureDomain = "failure-domain"
    }

    public var name: String
    public var kind: Kind
    public var rigor: Rigor
    public var scope: Scope

    public init(name: String, kind: Kind, rigor: Rigor = .strict, scope: Scope = .member) {
        self.name = name
        self.kind = kind
        self.rigor = rigor
        self.scope = scope
    }
}

/// One instance to place.
public struct PlacementRequest: Sendable, Hashable {
    /// Instance name, for messages and for placement-group bookkeeping within a batch.
    public var name: String?
    public var limits: ResourceLimits
    public var target: PlacementTarget
    /// With an explicit member target: skip the capacity and placement-group checks (the member
    /// must still be online and not evacuated). Ignored otherwise.
    public var force: Bool
    public var placementGroup: PlacementGroupRule?
    /// Overrides the cluster's ``SchedulerSettings/policy`` for this launch.
    public var policy: SchedulerPolicy?

    public init(
        name: String? = nil, limits: ResourceLimits = ResourceLimits(), target: PlacementTarget = .anyMember,
        force: Bool = false, placementGroup: PlacementGroupRule? = nil, policy: SchedulerPolicy? = nil
    ) {
        self.name = name
        self.limits = limits
        self.target = target
        self.force = force
        self.placementGroup = placementGroup
        self.policy = policy
    }
}

/// Cluster-wide scheduler configuration.
public struct SchedulerSettings: Sendable, Hashable {
    /// The footprint of an instance without limits: 0.1 core, 64MiB memory, 256MiB disk,
    /// 100 processes. Small on purpose (busybox-sized) so unlimited test instances pack densely,
    /// but not zero, so hundreds of them still spread and cannot pile up unaccounted.
    public static let defaultFootprint = Resources(
        cpu: 0.1, memory: 64 * 1024 * 1024, disk: 256 * 1024 * 1024, processes: 100)

    /// `scheduler.policy`; LXD's behaviour by default.
    public var policy: SchedulerPolicy
    /// cpu limits may add up to `cores × ratio` per member: containers mostly idle, and cpu
    /// contention slows them down rather than killing them. Memory and disk are never overcommitted
    /// (running out kills or breaks instances). 4.0 is the default; 1.0 makes cpu hard too.
    public var cpuOvercommitRatio: Double
    /// Footprint for limits that are not set (see ``defaultFootprint``).
    public var defaultFootprint: Resources

    public init(
        policy: SchedulerPolicy = .fewest, cpuOvercommitRatio: Double = 4.0,
        defaultFootprint: Resources = SchedulerSettings.defaultFootprint
    ) {
        self.policy = policy
        self.cpuOvercommitRatio = cpuOvercommitRatio
        self.defaultFootprint = defaultFootprint
    }
}
