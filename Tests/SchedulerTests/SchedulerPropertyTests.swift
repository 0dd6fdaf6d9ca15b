import Testing
@testable import Scheduler

// Property tests: many random clusters and requests from a seeded generator, so a failure is
// reproducible from the printed case number. The oracle functions below restate the rules
// independently of the scheduler's Filter, so the two must agree.

private let MiB: Int64 = 1024 * 1024
private let GiB: Int64 = 1024 * MiB
private let cases = 400

private struct RandomCluster {
    var rng: SplitMix64

    init(seed: UInt64) { rng = SplitMix64(seed: seed) }

    mutating func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &rng) }
    mutating func chance(_ probability: Double) -> Bool { Double.random(in: 0..<1, using: &rng) < probability }

    mutating func members() -> [MemberSnapshot] {
        let count = int(1...24)
        return (0..<count).map { index in
            let cpu = Double(int(1...16))
            let memory = Int64(int(1...64)) * GiB
            let disk: Int64? = chance(0.5) ? Int64(int(10...500)) * GiB : nil
            let processes: Int64? = chance(0.3) ? Int64(int(500...5000)) : nil
            // Allocations at or below capacity (cpu below cores × 4, the default ratio).
            let allocated = Resources(
                cpu: Double(int(0...Int(cpu * 4 * 10))) / 10,
                memory: Int64(Double(memory) * Double(int(0...100)) / 100),
                disk: disk.map { Int64(Double($0) * Double(int(0...100)) / 100) } ?? Int64(int(0...100)) * GiB,
                processes: processes.map { Int64(int(0...Int($0))) } ?? 0)
            var placementGroups: [String: [String]] = [:]
            for group in ["web", "db"] where chance(0.3) {
                placementGroups[group] = (0..<int(1...2)).map { "\(group)-\(index)-\($0)" }
            }
            return MemberSnapshot(
                id: Int64(index * 7 + 3), name: "m\(index)", online: !chance(0.1), evacuated: chance(0.05),
                instanceMode: chance(0.8) ? .all : (chance(0.5) ? .manual : .group),
                groups: chance(0.4) ? ["default", "gpu"] : ["default"],
                failureDomain: "rack\(int(0...3))",
                capacity: MemberCapacity(cpu: cpu, memory: memory, disk: disk, processes: processes),
                allocated: allocated, instanceCount: int(0...40), placementGroupInstances: placementGroups)
        }
    }

    mutating func request(members: [MemberSnapshot], name: String) -> PlacementRequest {
        let limits = ResourceLimits(
            cpu: chance(0.7) ? Double(int(1...40)) / 10 : nil,
            memory: chance(0.8) ? Int64(int(16...4096)) * MiB : nil,
            disk: chance(0.5) ? Int64(int(1...50)) * GiB : nil,
            processes: chance(0.3) ? Int64(int(10...1000)) : nil)
        let target: PlacementTarget
        switch int(0...9) {
        case 0: target = .member(members[int(0...members.count - 1)].name)
        case 1: target = .group("gpu")
        default: target = .anyMember
        }
        let rule: PlacementGroupRule? = chance(0.4) ? PlacementGroupRule(
            name: chance(0.5) ? "web" : "db", kind: chance(0.5) ? .antiAffinity : .affinity,
            rigor: chance(0.6) ? .strict : .permissive, scope: chance(0.6) ? .member : .failureDomain) : nil
        var force = chance(0.05)  // ignored unless the target is a member
        if case .member = target { force = chance(0.4) }
        return PlacementRequest(name: name, limits: limits, target: target, force: force,
                                placementGroup: rule, policy: SchedulerPolicy.allCases[int(0...2)])
    }
}

/// Instances of the rule's group in the member's scope, counted from scratch.
private func scopeCount(_ rule: PlacementGroupRule, _ member: MemberSnapshot, _ members: [MemberSnapshot]) -> Int {
    switch rule.scope {
    case .member: return member.count(inPlacementGroup: rule.name)
    case .failureDomain:
        return members.filter { $0.failureDomain == member.failureDomain }.reduce(0) { $0 + $1.count(inPlacementGroup: rule.name) }
    }
}

/// Whether the rules allow `member` to take `request` (the oracle).
private func admissible(_ request: PlacementRequest, _ member: MemberSnapshot, _ members: [MemberSnapshot],
                        _ settings: SchedulerSettings) -> Bool {
    guard member.online, !member.evacuated else { return false }
    switch request.target {
    case .member(let name): if member.name != name { return false }
    case .group(let group): if !member.groups.contains(group) || member.instanceMode == .manual { return false }
    case .anyMember: if member.instanceMode != .all { return false }
    }
    if request.force, case .member = request.target { return true }
    let need = request.limits.footprint(defaults: settings.defaultFootprint)
    let after = member.allocated + need
    if after.cpu > member.capacity.cpu * settings.cpuOvercommitRatio + 1e-9 { return false }
    if after.memory > member.capacity.memory { return false }
    if let disk = member.capacity.disk, after.disk > disk { return false }
    if let processes = member.capacity.processes, after.processes > processes { return false }
    if let rule = request.placementGroup, rule.rigor == .strict {
        let here = scopeCount(rule, member, members)
        let anywhere = members.reduce(0) { $0 + $1.count(inPlacementGroup: rule.name) }
        if rule.kind == .antiAffinity && here > 0 { return false }
        if rule.kind == .affinity && anywhere > 0 && here == 0 { return false }
    }
    return true
}

@Suite struct SchedulerProperties {
    @Test func placementsAreAdmissibleAndRefusalsAreJustified() {
        var placed = 0, refused = 0, forced = 0, withRule = 0
        for number in 0..<cases {
            var random = RandomCluster(seed: UInt64(number))
            let members = random.members()
            let settings = SchedulerSettings(cpuOvercommitRatio: [1, 2, 4][random.int(0...2)])
            for attempt in 0..<10 {
                let request = random.request(members: members, name: "c\(attempt)")
                switch Scheduler.place(request, members: members, settings: settings, seed: UInt64(attempt)) {
                case .success(let placement):
                    placed += 1
                    if placement.forced { forced += 1 }
                    if request.placementGroup != nil { withRule += 1 }
                    let chosen = members[placement.memberIndex]
                    #expect(chosen.id == placement.memberID, "case \(number)")
                    #expect(admissible(request, chosen, members, settings), "case \(number): \(request) on \(chosen)")
                case .failure(let refusal):
                    if case .noSuchGroup = refusal.problem {
                        #expect(!members.contains { $0.groups.contains("gpu") }, "case \(number)")
                        continue
                    }
                    refused += 1
                    #expect(refusal.problem == .noMemberFits, "case \(number): \(refusal)")
                    #expect(!members.contains { admissible(request, $0, members, settings) }, "case \(number): \(refusal)")
                    // Every member named, in order, with a non-empty reason, and in the message.
                    #expect(refusal.members.map(\.memberID) == members.map(\.id), "case \(number)")
                    let text = refusal.description
                    for entry in refusal.members {
                        #expect(!entry.reason.description.isEmpty && text.contains(entry.memberName), "case \(number)")
                    }
                }
            }
        }
        // The generator must exercise both outcomes, or the properties above hold vacuously.
        print("scheduler properties: \(placed) placed (\(forced) forced, \(withRule) with a placement group), \(refused) refused")
        #expect(placed > 1000 && refused > 300 && forced > 20 && withRule > 500)
    }

    @Test func policyChoosesTheBestScoringAdmissibleMember() {
        for number in 0..<cases {
            var random = RandomCluster(seed: 10_000 + UInt64(number))
            let members = random.members()
            let settings = SchedulerSettings()
            var request = random.request(members: members, name: "c")
            request.placementGroup = nil
            request.force = false
            guard case .success(let placement) = Scheduler.place(request, members: members, settings: settings, seed: 5) else { continue }
            let need = request.limits.footprint(defaults: settings.defaultFootprint)
            func fraction(_ member: MemberSnapshot) -> Double {
                (member.allocated.cpu + need.cpu) / (member.capacity.cpu * 4)
                    + Double(member.allocated.memory + need.memory) / Double(member.capacity.memory)
            }
            let candidates = members.filter { admissible(request, $0, members, settings) }
            let chosen = members[placement.memberIndex]
            switch placement.policy {
            case .fewest: #expect(chosen.instanceCount == candidates.map(\.instanceCount).min(), "case \(number)")
            case .spread: #expect(fraction(chosen) == candidates.map(fraction).min(), "case \(number)")
            case .binpack: #expect(fraction(chosen) == candidates.map(fraction).max(), "case \(number)")
            }
        }
    }

    @Test func batchesNeverExceedCapacityNorBreakStrictAntiAffinity() {
        var totalPlaced = 0, antiAffinityChecked = 0
        for number in 0..<cases {
            var random = RandomCluster(seed: 20_000 + UInt64(number))
            let initial = random.members()
            let ratio = [1.0, 4.0][random.int(0...1)]
            let settings = SchedulerSettings(policy: SchedulerPolicy.allCases[random.int(0...2)], cpuOvercommitRatio: ratio)
            // Place one by one until the first refusal, checking each step against the state before it.
            var members = initial
            var placedCount = 0
            defer { totalPlaced += placedCount }
            for step in 0..<random.int(1...150) {
                var request = random.request(members: members, name: "b\(step)")
                request.force = false
                guard case .success(let placement) = Scheduler.place(request, members: members, settings: settings,
                                                                      seed: UInt64(step)) else { break }
                let before = members[placement.memberIndex]
                if let rule = request.placementGroup, rule.rigor == .strict, rule.kind == .antiAffinity {
                    antiAffinityChecked += 1
                    #expect(scopeCount(rule, before, members) == 0, "case \(number) step \(step): anti-affinity broken")
                }
                members[placement.memberIndex].record(placement, of: request)
                placedCount += 1
            }
            for (start, end) in zip(initial, members) {
                let added = end.instanceCount - start.instanceCount
                guard added > 0 else { continue }
                #expect(end.allocated.memory <= end.capacity.memory, "case \(number): memory over on \(end.name)")
                #expect(end.allocated.cpu <= end.capacity.cpu * ratio + 1e-6, "case \(number): cpu over on \(end.name)")
                if let disk = end.capacity.disk { #expect(end.allocated.disk <= disk, "case \(number)") }
                if let processes = end.capacity.processes { #expect(end.allocated.processes <= processes, "case \(number)") }
            }
            #expect(members.reduce(0) { $0 + $1.instanceCount } - initial.reduce(0) { $0 + $1.instanceCount } == placedCount)
        }
        print("scheduler properties: \(totalPlaced) sequential placements, \(antiAffinityChecked) under strict anti-affinity")
        #expect(totalPlaced > 1000 && antiAffinityChecked > 100)
    }

    @Test func batchPlacementEqualsSequentialSinglePlacements() {
        for number in 0..<cases {
            var random = RandomCluster(seed: 30_000 + UInt64(number))
            let initial = random.members()
            let requests = (0..<random.int(1...60)).map { random.request(members: initial, name: "s\($0)") }
            let seed = random.rng.next()
            let batch = Scheduler.placeMany(requests, members: initial, seed: seed)

            var members = initial
            var sequential: [Placement] = []
            var firstRefusal: (Int, Refusal)?
            for (index, request) in requests.enumerated() {
                switch Scheduler.place(request, members: members, seed: Scheduler.itemSeed(seed, index: index)) {
                case .success(let placement):
                    members[placement.memberIndex].record(placement, of: request)
                    sequential.append(placement)
                case .failure(let refusal):
                    firstRefusal = (index, refusal)
                }
                if firstRefusal != nil { break }
            }
            switch batch {
            case .success(let result):
                #expect(firstRefusal == nil, "case \(number)")
                #expect(result.placements == sequential, "case \(number)")
                #expect(result.members == members, "case \(number)")
            case .failure(let refusal):
                #expect(refusal.index == firstRefusal?.0 && refusal.refusal == firstRefusal?.1, "case \(number)")
                #expect(refusal.placedBefore == sequential.count, "case \(number)")
            }
        }
    }

    @Test func sameSeedSameAnswerAndSnapshotOrderDoesNotMatter() {
        for number in 0..<cases {
            var random = RandomCluster(seed: 40_000 + UInt64(number))
            let members = random.members()
            let requests = (0..<20).map { random.request(members: members, name: "d\($0)") }
            let seed = random.rng.next()
            let first = Scheduler.placeMany(requests, members: members, seed: seed)
            let second = Scheduler.placeMany(requests, members: members, seed: seed)
            #expect(first == second, "case \(number)")
            // Shuffled snapshots (unique ids here) pick the same members for single placements.
            var shuffleRNG = SplitMix64(seed: seed)
            let shuffled = members.shuffled(using: &shuffleRNG)
            for request in requests {
                let a = try? Scheduler.place(request, members: members, seed: seed).get()
                let b = try? Scheduler.place(request, members: shuffled, seed: seed).get()
                #expect(a?.memberID == b?.memberID, "case \(number)")
            }
        }
    }

    @Test func fewestBalancesWithinOneInstanceOnEqualMembers() {
        for number in 0..<100 {
            var random = RandomCluster(seed: 50_000 + UInt64(number))
            let size = random.int(1...50)
            let members = (0..<size).map {
                MemberSnapshot(id: Int64($0), name: "m\($0)", capacity: MemberCapacity(cpu: 64, memory: 1024 * GiB))
            }
            let count = random.int(1...600)
            guard case .success(let batch) = Scheduler.placeMany(
                count: count, of: PlacementRequest(limits: ResourceLimits(cpu: 0.1, memory: 64 * MiB)),
                members: members, seed: random.rng.next())
            else {
                Issue.record("case \(number): \(count) small instances must fit on \(size) large members")
                continue
            }
            let counts = batch.members.map(\.instanceCount)
            #expect(counts.max()! - counts.min()! <= 1, "case \(number): \(counts)")
            #expect(counts.reduce(0, +) == count)
        }
    }

    @Test func spreadKeepsEqualMembersEvenAndBinpackFillsFirst() {
        let members = (0..<10).map {
            MemberSnapshot(id: Int64($0), name: "m\($0)", capacity: MemberCapacity(cpu: 8, memory: 16 * GiB))
        }
        let template = PlacementRequest(limits: ResourceLimits(cpu: 1, memory: GiB))
        let spread = try? Scheduler.placeMany(count: 55, of: template, members: members,
                                              settings: SchedulerSettings(policy: .spread), seed: 1).get()
        let spreadCounts = spread?.members.map(\.instanceCount) ?? []
        #expect(spreadCounts.max()! - spreadCounts.min()! <= 1, "\(spreadCounts)")
        let binpack = try? Scheduler.placeMany(count: 55, of: template, members: members,
                                               settings: SchedulerSettings(policy: .binpack), seed: 1).get()
        #expect(binpack?.members.map(\.instanceCount).sorted(by: >) == [16, 16, 16, 7, 0, 0, 0, 0, 0, 0])
    }
}
