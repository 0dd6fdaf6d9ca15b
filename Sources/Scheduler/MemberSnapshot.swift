/// `scheduler.instance` on a member, with LXD's meaning.
public enum InstanceSchedulingMode: String, Sendable, Hashable, CaseIterable {
    /// Any launch may land here.
    case all
    /// Only launches that name this member (`--target m1`).
    case manual
    /// Launches that name this member or one of its cluster groups (`--target @gpu`).
    case group
}

/// What the scheduler knows about one member, read in the same ClusterDB transaction that will
/// insert the placed instances (allocations are SUMs over instance rows, never cached counters).
public struct MemberSnapshot: Sendable, Hashable {
    public var id: Int64
    public var name: String
    public var online: Bool
    public var evacuated: Bool
    public var instanceMode: InstanceSchedulingMode
    /// Cluster groups the member belongs to (LXD puts every member in `default`).
    public var groups: Set<String>
    /// Members sharing a failure domain (rack, power feed, host) fail together.
    public var failureDomain: String
    /// Effective capacity: reported, or overridden by config (``MemberCapacity/overridden(by:)``).
    public var capacity: MemberCapacity
    /// Sum of the footprints of the instances located here.
    public var allocated: Resources
    public var instanceCount: Int
    /// Names of this member's instances per placement group; only groups with at least one
    /// instance here need an entry.
    public var placementGroupInstances: [String: [String]]

    public init(
        id: Int64, name: String, online: Bool = true, evacuated: Bool = false,
        instanceMode: InstanceSchedulingMode = .all, groups: Set<String> = ["default"],
        failureDomain: String = "default", capacity: MemberCapacity,
        allocated: Resources = .zero, instanceCount: Int = 0,
        placementGroupInstances: [String: [String]] = [:]
    ) {
        self.id = id
        self.name = name
        self.online = online
        self.evacuated = evacuated
        self.instanceMode = instanceMode
        self.groups = groups
        self.failureDomain = failureDomain
        self.capacity = capacity
        self.allocated = allocated
        self.instanceCount = instanceCount
        self.placementGroupInstances = placementGroupInstances
    }

    /// Instances of `placementGroup` on this member.
    public func count(inPlacementGroup placementGroup: String) -> Int {
        placementGroupInstances[placementGroup]?.count ?? 0
    }

    /// Accounts for an instance placed here, as the inserted row will once committed. Batch
    /// placement calls this between placements; callers replaying placements one by one must too.
    public mutating func record(_ placement: Placement, of request: PlacementRequest) {
        allocated += placement.footprint
        instanceCount += 1
        if let rule = request.placementGroup {
            placementGroupInstances[rule.name, default: []].append(request.name ?? "(unnamed)")
        }
    }
}
