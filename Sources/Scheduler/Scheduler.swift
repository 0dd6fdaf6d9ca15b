/// Placement of instances on cluster members: a pure function of (request, member snapshots,
/// settings, seed). Filters decide who *can* take the instance, scores who *should*; ties go to a
/// seeded hash of the member id, then to the lower id. No I/O, no clock, no global state, so the
/// caller can run it inside the ClusterDB transaction that read the snapshots and inserts the rows,
/// and re-run it whole when that transaction is retried.
public enum Scheduler {
    /// Places one instance.
    ///
    /// Refuses with ``Refusal/Problem/noMemberFits`` and one reason per member (in snapshot order)
    /// when nothing can take it; with another problem when the request itself is wrong.
    public static func place(
        _ request: PlacementRequest, members: [MemberSnapshot],
        settings: SchedulerSettings = SchedulerSettings(), seed: UInt64
    ) -> Result<Placement, Refusal> {
        var view = ClusterView(members)
        return placeOne(request, in: &view, settings: settings, seed: seed)
    }

    /// Places a batch all-or-nothing, recording each placement in the snapshots before placing the
    /// next, so the batch never oversubscribes a member and spreads as a sequence of launches would.
    ///
    /// Equivalent to calling ``place(_:members:settings:seed:)`` for request `i` with
    /// `itemSeed(seed, index: i)` and ``MemberSnapshot/record(_:of:)`` after each success.
    public static func placeMany(
        _ requests: [PlacementRequest], members: [MemberSnapshot],
        settings: SchedulerSettings = SchedulerSettings(), seed: UInt64
    ) -> Result<BatchPlacement, BatchRefusal> {
        var view = ClusterView(members)
        var placements: [Placement] = []
        placements.reserveCapacity(requests.count)
        for (index, request) in requests.enumerated() {
            switch placeOne(request, in: &view, settings: settings, seed: itemSeed(seed, index: index)) {
            case .success(let placement):
                view.record(placement, of: request)
                placements.append(placement)
            case .failure(let refusal):
                return .failure(BatchRefusal(index: index, placedBefore: placements.count,
                                             total: requests.count, refusal: refusal))
            }
        }
        return .success(BatchPlacement(placements: placements, members: view.members))
    }

    /// `lxdctl launch --count N`: `count` copies of `template`, named `namePrefix1...namePrefixN`
    /// when a prefix is given (names matter for placement-group bookkeeping and messages).
    public static func placeMany(
        count: Int, of template: PlacementRequest, namePrefix: String? = nil, members: [MemberSnapshot],
        settings: SchedulerSettings = SchedulerSettings(), seed: UInt64
    ) -> Result<BatchPlacement, BatchRefusal> {
        let requests = (0..<max(count, 0)).map { index -> PlacementRequest in
            var request = template
            if let namePrefix { request.name = "\(namePrefix)\(index + 1)" }
            return request
        }
        return placeMany(requests, members: members, settings: settings, seed: seed)
    }

    /// The seed batch item `index` is placed with (`itemSeed(seed, index: 0) == seed`).
    public static func itemSeed(_ seed: UInt64, index: Int) -> UInt64 {
        seed &+ UInt64(truncatingIfNeeded: index) &* 0x9E37_79B9_7F4A_7C15
    }

    // MARK: - One placement

    static func placeOne(
        _ request: PlacementRequest, in view: inout ClusterView, settings: SchedulerSettings, seed: UInt64
    ) -> Result<Placement, Refusal> {
        if let problem = invalid(request, settings) {
            return .failure(Refusal(instance: request.name, problem: .invalidRequest(problem)))
        }
        if view.members.isEmpty { return .failure(Refusal(instance: request.name, problem: .noMembers)) }

        var targetIndex: Int?
        var inGroup: [Bool] = []
        var targetGroup: String?
        switch request.target {
        case .anyMember: break
        case .member(let name):
            targetIndex = view.index(ofMember: name)
            if targetIndex == nil { return .failure(Refusal(instance: request.name, problem: .noSuchMember(name))) }
        case .group(let group):
            inGroup = view.membership(inGroup: group)
            guard inGroup.contains(true) else {
                return .failure(Refusal(instance: request.name, problem: .noSuchGroup(group)))
            }
            targetGroup = group
        }
        let memberCounts = request.placementGroup.map { view.counts(inPlacementGroup: $0.name) } ?? []
        let filter = Filter(request: request, view: view, settings: settings, targetIndex: targetIndex,
                            targetGroup: targetGroup, inGroup: inGroup, memberCounts: memberCounts)
        let policy = request.policy ?? settings.policy

        // Best candidate so far; lower (groupRank, score, tiebreak, id) wins.
        var best = -1
        var bestRank = 0
        var bestScore = 0.0
        var bestTie: UInt64 = 0
        let slots = view.slots
        let range = targetIndex.map { $0..<($0 + 1) } ?? slots.indices
        for index in range {
            let slot = slots[index]
            guard filter.refusal(of: slot, at: index, explain: false) == nil else { continue }
            let rank = filter.groupRank(at: index)
            let score = filter.score(of: slot, policy: policy)
            if best >= 0 {
                if rank != bestRank { if rank > bestRank { continue } }
                else if score != bestScore { if score > bestScore { continue } }
                else {
                    let tie = tiebreak(seed, slot.id)
                    if tie > bestTie || (tie == bestTie && slot.id >= slots[best].id) { continue }
                    best = index
                    bestTie = tie
                    continue
                }
            }
            best = index
            bestRank = rank
            bestScore = score
            bestTie = tiebreak(seed, slot.id)
        }

        let members = view.members
        guard best >= 0 else {
            let reasons = members.indices.map { index in
                // The filter refused every member, so every member has a reason.
                MemberRefusal(memberID: members[index].id, memberName: members[index].name,
                              reason: filter.refusal(of: slots[index], at: index, explain: true)!)
            }
            return .failure(Refusal(instance: request.name, problem: .noMemberFits, members: reasons))
        }
        return .success(Placement(
            memberID: members[best].id, memberName: members[best].name, memberIndex: best,
            footprint: filter.footprint, policy: policy, forced: filter.forced, notes: filter.notes(at: best)))
    }

    @inline(__always)
    static func tiebreak(_ seed: UInt64, _ id: Int64) -> UInt64 {
        SplitMix64.finalize(seed ^ SplitMix64.finalize(UInt64(bitPattern: id) &+ 0x9E37_79B9_7F4A_7C15))
    }

    static func invalid(_ request: PlacementRequest, _ settings: SchedulerSettings) -> String? {
        let limits = request.limits
        if let cpu = limits.cpu, !(cpu.isFinite && cpu >= 0) { return "limits.cpu must be a number of cores >= 0, got \(cpu)" }
        if let memory = limits.memory, memory < 0 { return "limits.memory must be >= 0, got \(memory)" }
        if let disk = limits.disk, disk < 0 { return "root disk size must be >= 0, got \(disk)" }
        if let processes = limits.processes, processes < 0 { return "limits.processes must be >= 0, got \(processes)" }
        let ratio = settings.cpuOvercommitRatio
        if !(ratio.isFinite && ratio > 0) { return "scheduler cpu overcommit ratio must be > 0, got \(ratio); fix the cluster config" }
        return nil
    }
}

/// The per-request rules used to judge and rank members; built once per placement.
struct Filter {
    typealias Slot = ClusterView.Slot

    let members: [MemberSnapshot]
    let footprint: Resources
    let ratio: Double
    let targetIndex: Int?
    let targetGroup: String?
    /// Membership of `targetGroup`, by member index (empty without a group target).
    let inGroup: [Bool]
    /// Explicit member target with `force`: capacity and placement-group checks are skipped.
    let forced: Bool
    let rule: PlacementGroupRule?
    /// Instances of the rule's group by member index (empty without a rule).
    let memberCounts: [Int]
    let domainOf: [Int]
    /// Instances of the rule's group by failure-domain index (failure-domain scope only).
    let domainCounts: [Int]
    /// A member holding an instance of the rule's group, if any.
    let anchor: Int?

    init(request: PlacementRequest, view: ClusterView, settings: SchedulerSettings, targetIndex: Int?,
         targetGroup: String?, inGroup: [Bool], memberCounts: [Int]) {
        members = view.members
        footprint = request.limits.footprint(defaults: settings.defaultFootprint)
        ratio = settings.cpuOvercommitRatio
        self.targetIndex = targetIndex
        self.targetGroup = targetGroup
        self.inGroup = inGroup
        forced = request.force && targetIndex != nil
        rule = request.placementGroup
        self.memberCounts = memberCounts
        domainOf = view.domainOf
        var domainCounts: [Int] = []
        if let rule, rule.scope == .failureDomain {
            domainCounts = Array(repeating: 0, count: view.domainCount)
            for (index, count) in memberCounts.enumerated() where count > 0 {
                domainCounts[view.domainOf[index]] += count
            }
        }
        self.domainCounts = domainCounts
        anchor = memberCounts.firstIndex { $0 > 0 }
    }

    /// Instances of the rule's group in the member's scope (the member, or its failure domain).
    @inline(__always)
    func groupCount(at index: Int) -> Int {
        guard let rule else { return 0 }
        switch rule.scope {
        case .member: return memberCounts[index]
        case .failureDomain: return domainCounts[domainOf[index]]
        }
    }

    /// Why the member cannot take the instance, or nil. With `explain: false` the reason's details
    /// are not built (the hot path only needs yes or no).
    @inline(__always)
    func refusal(of slot: Slot, at index: Int, explain: Bool) -> MemberRefusalReason? {
        if let targetIndex, targetIndex != index {
            return .notTargeted(explain ? "--target \(members[targetIndex].name)" : "")
        }
        if !slot.online { return .offline }
        if slot.evacuated { return .evacuated }
        if let targetGroup {
            if !inGroup[index] { return .notInGroup(targetGroup) }
            if slot.mode == .manual { return .manualOnly }
        } else if targetIndex == nil {
            switch slot.mode {
            case .all: break
            case .manual: return .manualOnly
            case .group: return .groupTargetOnly
            }
        }
        if forced { return nil }
        if !fits(slot) { return .insufficient(explain ? shortfalls(slot) : []) }
        if let rule, rule.rigor == .strict {
            switch rule.kind {
            case .antiAffinity where groupCount(at: index) > 0:
                guard explain else { return .antiAffinity(group: "", instance: "", failureDomain: nil) }
                // An instance of the group in this member's scope, for the message.
                let holder = rule.scope == .member
                    ? index
                    : memberCounts.indices.first { memberCounts[$0] > 0 && domainOf[$0] == domainOf[index] } ?? index
                return .antiAffinity(group: rule.name, instance: example(on: holder, rule),
                                     failureDomain: rule.scope == .member ? nil : members[index].failureDomain)
            case .affinity where groupCount(at: index) == 0 && anchor != nil:
                guard explain, let anchor else { return .affinity(group: "", instance: "", location: "") }
                return .affinity(group: rule.name, instance: example(on: anchor, rule), location: location(of: anchor, rule))
            default: break
            }
        }
        return nil
    }

    private func example(on index: Int, _ rule: PlacementGroupRule) -> String {
        members[index].placementGroupInstances[rule.name]?.first ?? "?"
    }

    private func location(of index: Int, _ rule: PlacementGroupRule) -> String {
        rule.scope == .member ? members[index].name : "failure domain \(members[index].failureDomain)"
    }

    @inline(__always)
    func fits(_ slot: Slot) -> Bool {
        let allocated = slot.allocated
        // A hair of tolerance so 40 × 0.1 cores fits in 4 cores despite binary fractions.
        guard allocated.cpu + footprint.cpu <= slot.cpu * ratio + 1e-9 else { return false }
        // Written as "need <= free" so huge values cannot overflow.
        guard footprint.memory <= slot.memory - allocated.memory else { return false }
        if let disk = slot.disk, footprint.disk > disk - allocated.disk { return false }
        if let processes = slot.processes, footprint.processes > processes - allocated.processes { return false }
        return true
    }

    func shortfalls(_ slot: Slot) -> [Shortfall] {
        let allocated = slot.allocated
        var result: [Shortfall] = []
        if allocated.cpu + footprint.cpu > slot.cpu * ratio + 1e-9 {
            result.append(Shortfall(resource: .cpu, allocated: allocated.cpu, capacity: slot.cpu,
                                    ratio: ratio, needed: footprint.cpu))
        }
        if footprint.memory > slot.memory - allocated.memory {
            result.append(Shortfall(resource: .memory, allocated: Double(allocated.memory),
                                    capacity: Double(slot.memory), needed: Double(footprint.memory)))
        }
        if let disk = slot.disk, footprint.disk > disk - allocated.disk {
            result.append(Shortfall(resource: .disk, allocated: Double(allocated.disk),
                                    capacity: Double(disk), needed: Double(footprint.disk)))
        }
        if let processes = slot.processes, footprint.processes > processes - allocated.processes {
            result.append(Shortfall(resource: .processes, allocated: Double(allocated.processes),
                                    capacity: Double(processes), needed: Double(footprint.processes)))
        }
        return result
    }

    /// First ranking key: how well a permissive placement-group rule is followed (lower is better).
    /// Strict rules were already enforced by the filter, so they do not rank.
    @inline(__always)
    func groupRank(at index: Int) -> Int {
        guard let rule, rule.rigor == .permissive else { return 0 }
        let count = groupCount(at: index)
        switch rule.kind {
        case .antiAffinity: return count
        case .affinity: return -count
        }
    }

    /// Second ranking key: the policy's score (lower is better).
    @inline(__always)
    func score(of slot: Slot, policy: SchedulerPolicy) -> Double {
        switch policy {
        case .fewest: return Double(slot.instanceCount)
        case .spread: return usedFraction(slot)
        case .binpack: return -usedFraction(slot)
        }
    }

    /// cpu fraction of the allowance plus memory fraction, after placing the instance.
    @inline(__always)
    func usedFraction(_ slot: Slot) -> Double {
        let cpuLimit = slot.cpu * ratio
        let memoryLimit = Double(slot.memory)
        let cpu = cpuLimit > 0 ? (slot.allocated.cpu + footprint.cpu) / cpuLimit : 0
        let memory = memoryLimit > 0 ? Double(slot.allocated.memory + footprint.memory) / memoryLimit : 0
        return cpu + memory
    }

    /// Notes for a permissive rule the chosen member breaks.
    func notes(at index: Int) -> [String] {
        guard !forced, let rule, rule.rigor == .permissive else { return [] }
        let count = groupCount(at: index)
        switch rule.kind {
        case .antiAffinity where count > 0:
            return ["anti-affinity (permissive) not met: placement group \(rule.name) already has \(count) "
                    + "instance(s) on \(location(of: index, rule)); no candidate was free of it"]
        case .affinity where count == 0:
            guard let anchor else { return [] }
            return ["affinity (permissive) not met: placement group \(rule.name) is on \(location(of: anchor, rule)), "
                    + "which cannot take the instance"]
        default:
            return []
        }
    }
}
