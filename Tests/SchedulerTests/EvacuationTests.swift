import Testing
@testable import Scheduler

private let MiB: Int64 = 1024 * 1024
private let GiB: Int64 = 1024 * MiB

private func node(_ id: Int64, memory: Int64 = 8 * GiB, online: Bool = true, evacuated: Bool = false,
                  count: Int = 0, placementGroups: [String: [String]] = [:]) -> MemberSnapshot {
    MemberSnapshot(id: id, name: "m\(id)", online: online, evacuated: evacuated,
                   capacity: MemberCapacity(cpu: 64, memory: memory), instanceCount: count,
                   placementGroupInstances: placementGroups)
}

private let three = [node(1), node(2), node(3)]
private let strictApart = PlacementGroupRule(name: "apart", kind: .antiAffinity, rigor: .strict)

private func actions(_ plan: EvacuationPlan) -> [String: EvacuationAction] {
    Dictionary(uniqueKeysWithValues: plan.steps.map { ($0.name, $0.action) })
}

private func target(_ action: EvacuationAction?) -> String? {
    if case .move(let member, _, _) = action { return member }
    return nil
}

@Suite struct EvacuationPlannerTests {
    @Test func runningMovesLiveWhereLivePossibleStoppedMovesCold() {
        let plan = EvacuationPlanner.plan(
            evacuating: "m1", instances: [EvacuatingInstance(name: "a", running: true), EvacuatingInstance(name: "b", running: false)],
            members: three, liveTargets: ["m2", "m3"], seed: 1)
        let a = actions(plan)
        guard case .move(let to, _, let live) = a["a"] else { Issue.record("a not moved: \(String(describing: a["a"]))"); return }
        #expect(live && to != "m1")
        guard case .move(let toB, _, let liveB) = a["b"] else { Issue.record("b not moved"); return }
        #expect(!liveB && toB != "m1")
        // Running instances are placed first.
        #expect(plan.steps.map(\.name) == ["a", "b"])
    }

    @Test func autoPrefersALiveTargetThenFallsBackToAMoveWithoutMemory() {
        // m2 has no room; m3 cannot take it live: auto moves it to m3 without its memory.
        let members = [node(1), node(2, memory: 0), node(3)]
        let plan = EvacuationPlanner.plan(evacuating: "m1", instances: [EvacuatingInstance(name: "a", running: true)],
                                          members: members, liveTargets: ["m2"], seed: 7)
        #expect(actions(plan)["a"] == .move(member: "m3", memberID: 3, live: false))
    }

    @Test func liveMigrateLeavesARunningInstanceWhenNoLiveTargetCanTakeIt() {
        let plan = EvacuationPlanner.plan(
            evacuating: "m1", instances: [EvacuatingInstance(name: "a", running: true, mode: .liveMigrate),
                                          EvacuatingInstance(name: "b", running: false, mode: .liveMigrate)],
            members: three, liveTargets: [], seed: 7)
        guard case .leave(let reason) = actions(plan)["a"] else { Issue.record("a should be left"); return }
        #expect(reason.contains("live-migrate") && reason.contains("m2, m3: no live migration from here"))
        // A stopped instance has no memory to keep: it moves cold.
        #expect(target(actions(plan)["b"]) != nil)
    }

    @Test func stopModeStopsRunningInstancesAndMovesNothing() {
        let plan = EvacuationPlanner.plan(
            evacuating: "m1", instances: [EvacuatingInstance(name: "a", running: true, mode: .stop),
                                          EvacuatingInstance(name: "b", running: false, mode: .stop)],
            members: three, liveTargets: ["m2", "m3"], seed: 7)
        #expect(actions(plan)["a"] == .stop(reason: "cluster.evacuate=stop"))
        guard case .leave = actions(plan)["b"] else { Issue.record("b should be left"); return }
        #expect(plan.members.allSatisfy { $0.instanceCount == 0 })
    }

    @Test func theRequestModeOverridesTheInstanceKey() {
        let plan = EvacuationPlanner.plan(
            evacuating: "m1", instances: [EvacuatingInstance(name: "a", running: true, mode: .migrate)],
            members: three, liveTargets: ["m2", "m3"], mode: .stop, seed: 7)
        #expect(actions(plan)["a"] == .stop(reason: "cluster.evacuate=stop"))
    }

    @Test func thirtyInStrictAntiAffinityOnThreeMembersOnlyTwoCanMove() {
        let instances = (1...30).map { i in
            EvacuatingInstance(name: "web-\(i < 10 ? "0" : "")\(i)", running: i % 2 == 0,
                               mode: i % 3 == 0 ? .migrate : .auto, placementGroup: strictApart)
        }
        let source = node(1, count: 30, placementGroups: ["apart": instances.map(\.name)])
        let plan = EvacuationPlanner.plan(evacuating: "m1", instances: instances, members: [source, node(2), node(3)],
                                          liveTargets: ["m2", "m3"], seed: 42)
        let moved = plan.steps.filter { target($0.action) != nil }
        // At most one per other member: exactly two move, onto distinct members, both running ones.
        #expect(moved.count == 2)
        #expect(Set(moved.compactMap { target($0.action) }) == ["m2", "m3"])
        #expect(moved.allSatisfy { $0.running })
        for step in plan.steps where target(step.action) == nil {
            let mode: EvacuationMode = Int(step.name.dropFirst(4))! % 3 == 0 ? .migrate : .auto
            switch step.action {
            case .stop(let reason):
                #expect(step.running && mode == .auto, "\(step.name): only running auto instances are stopped")
                #expect(reason.contains("anti-affinity"))
            case .leave(let reason):
                #expect(!step.running || mode == .migrate, "\(step.name): a running auto instance must be stopped, not left")
                #expect(reason.contains("anti-affinity"))
            case .move: break
            }
        }
        #expect(plan.steps.count == 30)
    }

    @Test func capacityRunningOutMidPlanLeavesTheRest() {
        // m2 holds exactly two default footprints (64 MiB each), m3 is OFFLINE.
        let members = [node(1), node(2, memory: 128 * MiB), node(3, online: false)]
        let instances = ["a", "b", "c", "d"].map { EvacuatingInstance(name: $0, running: false) }
        let plan = EvacuationPlanner.plan(evacuating: "m1", instances: instances, members: members, liveTargets: [], seed: 3)
        #expect(plan.steps.map { target($0.action) } == ["m2", "m2", nil, nil])
        guard case .leave(let reason) = plan.steps[2].action else { Issue.record("c should be left"); return }
        #expect(reason.contains("m2: memory") && reason.contains("m3: offline"))
        #expect(plan.members.first { $0.name == "m2" }?.instanceCount == 2)
    }

    @Test func neverOntoTheEvacuatedMemberOrAnotherEvacuatedOne() {
        let members = [node(1), node(2, evacuated: true), node(3)]
        let instances = (1...6).map { EvacuatingInstance(name: "i\($0)", running: $0 % 2 == 0) }
        let plan = EvacuationPlanner.plan(evacuating: "m1", instances: instances, members: members, liveTargets: ["m2", "m3"], seed: 9)
        #expect(plan.steps.allSatisfy { target($0.action) == "m3" })
    }

    @Test func strictAffinityHeldOnlyByTheEvacuatedMemberGathersElsewhere() {
        let together = PlacementGroupRule(name: "together", kind: .affinity, rigor: .strict)
        let instances = ["a", "b", "c"].map { EvacuatingInstance(name: $0, running: false, placementGroup: together) }
        let source = node(1, placementGroups: ["together": ["a", "b", "c"]])
        let plan = EvacuationPlanner.plan(evacuating: "m1", instances: instances, members: [source, node(2), node(3)],
                                          liveTargets: [], seed: 5)
        let targets = Set(plan.steps.compactMap { target($0.action) })
        #expect(targets.count == 1 && !targets.contains("m1"))
        #expect(plan.steps.count == 3)
    }

    @Test func inputOrderDoesNotChangeThePlan() {
        var rng = SplitMix64Generator(seed: 11)
        let instances = (0..<20).map { EvacuatingInstance(name: "i\($0)", running: $0 % 3 != 0, placementGroup: $0 % 4 == 0 ? strictApart : nil) }
        let members = (1...5).map { node($0, memory: 1 * GiB) }
        let reference = EvacuationPlanner.plan(evacuating: "m1", instances: instances, members: members, liveTargets: ["m2", "m4"], seed: 3)
        for _ in 0..<10 {
            let plan = EvacuationPlanner.plan(evacuating: "m1", instances: instances.shuffled(using: &rng), members: members,
                                              liveTargets: ["m2", "m4"], seed: 3)
            #expect(plan.steps == reference.steps)
        }
    }
}

@Suite struct RestorePlannerTests {
    @Test func movesBackWhatLeftAndStartsWhatWasStopped() {
        let steps = RestorePlanner.plan(restoring: "m1", instances: [
            RestoringInstance(name: "d", location: "m1", running: true),
            RestoringInstance(name: "c", location: "m1", running: false),
            RestoringInstance(name: "b", location: "m3", running: false),
            RestoringInstance(name: "a", location: "m2", running: true),
            RestoringInstance(name: "e", location: "m3", running: true),
        ], liveSources: ["m2"])
        #expect(steps.map(\.action) == [
            .moveBack(from: "m2", live: true), .moveBack(from: "m3", live: false), .start, .nothing, .moveBack(from: "m3", live: false),
        ])
        #expect(steps.map(\.name) == ["a", "b", "c", "d", "e"])
    }
}

/// A seeded generator for shuffles (deterministic across runs).
private struct SplitMix64Generator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
