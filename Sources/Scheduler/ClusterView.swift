/// The member snapshots plus the derived, trivially-copyable data the scheduler's hot loop reads.
///
/// A 1,000-member scan that touched `MemberSnapshot` directly spent most of its time retaining
/// and releasing its strings, set and dictionary (measured: ~36,000 placements/s); the loop reads
/// `slots` instead, and per-group counts are cached and updated in place across a batch.
struct ClusterView {
    /// What the hot loop needs of one member; no reference-counted fields.
    struct Slot {
        var id: Int64
        var online: Bool
        var evacuated: Bool
        var mode: InstanceSchedulingMode
        var cpu: Double
        var memory: Int64
        var disk: Int64?
        var processes: Int64?
        var allocated: Resources
        var instanceCount: Int

        init(_ member: MemberSnapshot) {
            id = member.id
            online = member.online
            evacuated = member.evacuated
            mode = member.instanceMode
            cpu = member.capacity.cpu
            memory = member.capacity.memory
            disk = member.capacity.disk
            processes = member.capacity.processes
            allocated = member.allocated
            instanceCount = member.instanceCount
        }
    }

    private(set) var members: [MemberSnapshot]
    private(set) var slots: [Slot]
    /// Failure domain of each member, as an index into `domains`.
    let domainOf: [Int]
    let domainCount: Int
    private var nameIndex: [String: Int]
    /// Per placement group: instances on each member (by member index).
    private var groupCounts: [String: [Int]] = [:]
    /// Per cluster group: whether each member is in it.
    private var groupMembership: [String: [Bool]] = [:]

    init(_ members: [MemberSnapshot]) {
        self.members = members
        slots = members.map(Slot.init)
        var domains: [String: Int] = [:]
        domainOf = members.map { member in
            if let index = domains[member.failureDomain] { return index }
            domains[member.failureDomain] = domains.count
            return domains.count - 1
        }
        domainCount = domains.count
        nameIndex = [:]
        nameIndex.reserveCapacity(members.count)
        for (index, member) in members.enumerated() where nameIndex[member.name] == nil {
            nameIndex[member.name] = index
        }
    }

    func index(ofMember name: String) -> Int? { nameIndex[name] }

    /// Instances of `placementGroup` per member, cached for the rest of the batch.
    mutating func counts(inPlacementGroup placementGroup: String) -> [Int] {
        if let cached = groupCounts[placementGroup] { return cached }
        let counts = members.map { $0.count(inPlacementGroup: placementGroup) }
        groupCounts[placementGroup] = counts
        return counts
    }

    /// Whether each member is in cluster group `group`, cached (membership does not change).
    mutating func membership(inGroup group: String) -> [Bool] {
        if let cached = groupMembership[group] { return cached }
        let membership = members.map { $0.groups.contains(group) }
        groupMembership[group] = membership
        return membership
    }

    mutating func record(_ placement: Placement, of request: PlacementRequest) {
        let index = placement.memberIndex
        members[index].record(placement, of: request)
        slots[index].allocated += placement.footprint
        slots[index].instanceCount += 1
        if let rule = request.placementGroup, groupCounts[rule.name] != nil {
            groupCounts[rule.name]![index] += 1
        }
    }
}
