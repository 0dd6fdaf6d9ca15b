import Testing
@testable import Scheduler

private let MiB: Int64 = 1024 * 1024
private let GiB: Int64 = 1024 * MiB

private func member(
    _ id: Int64, cpu: Double = 4, memory: Int64 = 8 * GiB, disk: Int64? = nil, processes: Int64? = nil,
    allocated: Resources = .zero, count: Int = 0, online: Bool = true, evacuated: Bool = false,
    mode: InstanceSchedulingMode = .all, groups: Set<String> = ["default"], domain: String = "default",
    placementGroups: [String: [String]] = [:]
) -> MemberSnapshot {
    MemberSnapshot(id: id, name: "m\(id)", online: online, evacuated: evacuated, instanceMode: mode,
                   groups: groups, failureDomain: domain,
                   capacity: MemberCapacity(cpu: cpu, memory: memory, disk: disk, processes: processes),
                   allocated: allocated, instanceCount: count, placementGroupInstances: placementGroups)
}

private func placed(_ result: Result<Placement, Refusal>) -> String? {
    if case .success(let placement) = result { return placement.memberName }
    return nil
}

private func refusalOf(_ result: Result<Placement, Refusal>) -> Refusal? {
    if case .failure(let refusal) = result { return refusal }
    return nil
}

@Suite struct PolicyTests {
    let small = ResourceLimits(cpu: 1, memory: 512 * MiB)

    @Test func fewestPicksTheMemberWithFewestInstances() {
        let members = [member(1, count: 5), member(2, count: 2), member(3, count: 3)]
        #expect(placed(Scheduler.place(PlacementRequest(limits: small), members: members, seed: 1)) == "m2")
    }

    @Test func spreadPicksTheLeastAllocatedByCpuAndMemory() {
        // m1 has fewer instances but the most memory taken; spread must look at allocation.
        let members = [
            member(1, allocated: Resources(cpu: 1, memory: 6 * GiB), count: 1),
            member(2, allocated: Resources(cpu: 2, memory: 1 * GiB), count: 4),
            member(3, allocated: Resources(cpu: 8, memory: 1 * GiB), count: 4),
        ]
        let request = PlacementRequest(limits: small, policy: .spread)
        #expect(placed(Scheduler.place(request, members: members, seed: 1)) == "m2")
        #expect(placed(Scheduler.place(PlacementRequest(limits: small), members: members, seed: 1)) == "m1")
    }

    @Test func binpackPicksTheMostAllocatedThatStillFits() {
        let members = [
            member(1, allocated: Resources(cpu: 1, memory: 2 * GiB), count: 1),
            member(2, allocated: Resources(cpu: 1, memory: 7900 * MiB), count: 1),  // too full for 512MiB
            member(3, allocated: Resources(cpu: 1, memory: 7 * GiB), count: 1),
        ]
        let settings = SchedulerSettings(policy: .binpack)
        #expect(placed(Scheduler.place(PlacementRequest(limits: small), members: members, settings: settings, seed: 1)) == "m3")
    }

    @Test func requestPolicyOverridesTheClusterPolicy() {
        let members = [member(1, allocated: Resources(cpu: 0, memory: 4 * GiB)), member(2)]
        let settings = SchedulerSettings(policy: .spread)
        let result = Scheduler.place(PlacementRequest(limits: small, policy: .binpack), members: members,
                                     settings: settings, seed: 1)
        #expect(placed(result) == "m1")
        if case .success(let placement) = result { #expect(placement.policy == .binpack) }
    }

    @Test func tiesAreBrokenBySeedNotByArrayOrder() {
        let members = (1...8).map { member($0) }
        var winners = Set<String>()
        for seed in 0..<64 as Range<UInt64> {
            let forward = placed(Scheduler.place(PlacementRequest(), members: members, seed: seed))
            let backward = placed(Scheduler.place(PlacementRequest(), members: members.reversed(), seed: seed))
            #expect(forward == backward)
            winners.insert(forward ?? "none")
        }
        // Different seeds must reach different members, or the seed would not matter.
        #expect(winners.count > 3)
    }
}

@Suite struct FilterTests {
    @Test func refusalNamesEveryMembersReason() throws {
        let members = [
            member(1, mode: .manual),
            member(2, allocated: Resources(cpu: 1, memory: 7800 * MiB)),
            member(3, online: false),
            member(4, placementGroups: ["web": ["web-1"]]),
            member(5, evacuated: true),
            member(6, mode: .group),
        ]
        let request = PlacementRequest(
            name: "web-2", limits: ResourceLimits(memory: 512 * MiB),
            placementGroup: PlacementGroupRule(name: "web", kind: .antiAffinity))
        let refusal = try #require(refusalOf(Scheduler.place(request, members: members, seed: 7)))
        #expect(refusal.problem == .noMemberFits)
        #expect(refusal.members.map(\.memberName) == ["m1", "m2", "m3", "m4", "m5", "m6"])
        #expect(refusal.description == """
            cannot place web-2: no member can take it
              m1: scheduler.instance=manual (only with --target <member>)
              m2: memory 95% allocated (7.6GiB of 8GiB), needs 512MiB
              m3: offline
              m4: anti-affinity with web-1 (placement group web)
              m5: evacuated
              m6: scheduler.instance=group (only with --target @<group>)
            """)
    }

    @Test func identicalReasonsAreGroupedButEveryMemberIsNamed() throws {
        let members = [member(1, online: false), member(2, online: false), member(3, mode: .manual)]
        let refusal = try #require(refusalOf(Scheduler.place(PlacementRequest(name: "c1"), members: members, seed: 0)))
        #expect(refusal.description == """
            cannot place c1: no member can take it
              m1, m2: offline
              m3: scheduler.instance=manual (only with --target <member>)
            """)
    }

    @Test func cpuIsAnAllowanceWithOvercommitAndMemoryIsHard() throws {
        let members = [member(1, cpu: 2, memory: 64 * GiB, allocated: Resources(cpu: 7.5, memory: 0))]
        let one = PlacementRequest(name: "c", limits: ResourceLimits(cpu: 0.5, memory: MiB))
        #expect(placed(Scheduler.place(one, members: members, seed: 0)) == "m1")  // 8 of 2 × 4
        let more = PlacementRequest(name: "c", limits: ResourceLimits(cpu: 1, memory: MiB))
        let refused = try #require(refusalOf(Scheduler.place(more, members: members, seed: 0)))
        #expect(refused.members.first?.description == "m1: cpu 93% allocated (7.5 of 8 cores with 4x overcommit of 2), needs 1")
        let hard = SchedulerSettings(cpuOvercommitRatio: 1)
        #expect(placed(Scheduler.place(one, members: [member(1, cpu: 2)], settings: hard, seed: 0)) == "m1")
        let tight = [member(1, cpu: 2, allocated: Resources(cpu: 1.75))]
        #expect(placed(Scheduler.place(one, members: tight, settings: hard, seed: 0)) == nil)
    }

    @Test func diskAndProcessesAreCheckedOnlyWhenReported() throws {
        let request = PlacementRequest(name: "c", limits: ResourceLimits(disk: 10 * GiB, processes: 500))
        #expect(placed(Scheduler.place(request, members: [member(1)], seed: 0)) == "m1")
        let full = member(1, disk: 20 * GiB, processes: 1000, allocated: Resources(disk: 15 * GiB, processes: 600))
        let refused = try #require(refusalOf(Scheduler.place(request, members: [full], seed: 0)))
        #expect(refused.members.first?.reason.description
            == "disk 75% allocated (15GiB of 20GiB), needs 10GiB; processes 60% allocated (600 of 1000), needs 500")
    }

    @Test func unsetLimitsCountAsTheDefaultFootprint() throws {
        let result = Scheduler.place(PlacementRequest(limits: ResourceLimits(cpu: 2)), members: [member(1)], seed: 0)
        let placement = try result.get()
        #expect(placement.footprint == Resources(cpu: 2, memory: 64 * MiB, disk: 256 * MiB, processes: 100))
        // A member with less than the default memory left refuses an unlimited instance.
        let almostFull = member(1, allocated: Resources(memory: 8 * GiB - 32 * MiB))
        #expect(placed(Scheduler.place(PlacementRequest(), members: [almostFull], seed: 0)) == nil)
    }

    @Test func invalidRequestsAreRefusedWithTheProblem() {
        let nan = Scheduler.place(PlacementRequest(limits: ResourceLimits(cpu: .nan)), members: [member(1)], seed: 0)
        #expect(refusalOf(nan)?.description.contains("limits.cpu must be a number of cores >= 0") == true)
        let negative = Scheduler.place(PlacementRequest(limits: ResourceLimits(memory: -1)), members: [member(1)], seed: 0)
        #expect(refusalOf(negative)?.description.contains("limits.memory must be >= 0") == true)
        let ratio = Scheduler.place(PlacementRequest(), members: [member(1)],
                                    settings: SchedulerSettings(cpuOvercommitRatio: 0), seed: 0)
        #expect(refusalOf(ratio)?.description.contains("overcommit ratio must be > 0") == true)
        #expect(refusalOf(Scheduler.place(PlacementRequest(), members: [], seed: 0))?.problem == .noMembers)
    }
}

@Suite struct TargetTests {
    @Test func explicitMemberIsHonouredEvenWhenManual() {
        let members = [member(1), member(2, count: 50, mode: .manual)]
        #expect(placed(Scheduler.place(PlacementRequest(target: .member("m2")), members: members, seed: 0)) == "m2")
    }

    @Test func explicitMemberIsStillCapacityCheckedUnlessForced() throws {
        let members = [member(1), member(2, allocated: Resources(memory: 8 * GiB))]
        let request = PlacementRequest(name: "c1", limits: ResourceLimits(memory: GiB), target: .member("m2"))
        let refused = try #require(refusalOf(Scheduler.place(request, members: members, seed: 0)))
        #expect(refused.description == """
            cannot place c1: no member can take it
              m1: not the target (--target m2)
              m2: memory 100% allocated (8GiB of 8GiB), needs 1GiB
            """)
        var forced = request
        forced.force = true
        let placement = try Scheduler.place(forced, members: members, seed: 0).get()
        #expect(placement.memberName == "m2" && placement.forced)
    }

    @Test func forceDoesNotPlaceOnAnOfflineMember() {
        let members = [member(1, online: false)]
        let request = PlacementRequest(target: .member("m1"), force: true)
        #expect(refusalOf(Scheduler.place(request, members: members, seed: 0))?.members.first?.reason == .offline)
    }

    @Test func unknownMemberAndGroupAreRequestProblems() {
        let members = [member(1)]
        #expect(refusalOf(Scheduler.place(PlacementRequest(target: .member("m9")), members: members, seed: 0))?.problem
            == .noSuchMember("m9"))
        #expect(refusalOf(Scheduler.place(PlacementRequest(target: .group("gpu")), members: members, seed: 0))?.problem
            == .noSuchGroup("gpu"))
    }

    @Test func groupTargetUsesOnlyGroupMembersThatAllowIt() throws {
        let members = [
            member(1, count: 0),  // not in gpu
            member(2, count: 9, mode: .manual, groups: ["gpu"]),
            member(3, count: 5, mode: .group, groups: ["gpu"]),
            member(4, count: 7, groups: ["gpu", "default"]),
        ]
        #expect(placed(Scheduler.place(PlacementRequest(target: .group("gpu")), members: members, seed: 0)) == "m3")
        var full = members
        full[2].online = false
        full[3].evacuated = true
        let refused = try #require(refusalOf(Scheduler.place(PlacementRequest(name: "g", target: .group("gpu")),
                                                           members: full, seed: 0)))
        #expect(refused.members.map(\.reason) == [MemberRefusalReason.notInGroup("gpu"), .manualOnly, .offline, .evacuated])
    }
}

@Suite struct PlacementGroupTests {
    @Test func strictAntiAffinityAtFailureDomainScope() throws {
        let members = [
            member(1, domain: "rack1", placementGroups: ["db": ["db-1"]]),
            member(2, domain: "rack1"),
            member(3, domain: "rack2"),
        ]
        let rule = PlacementGroupRule(name: "db", kind: .antiAffinity, scope: .failureDomain)
        let request = PlacementRequest(name: "db-2", placementGroup: rule)
        #expect(placed(Scheduler.place(request, members: members, seed: 0)) == "m3")
        var rack2Taken = members
        rack2Taken[2].placementGroupInstances["db"] = ["db-3"]
        let refused = try #require(refusalOf(Scheduler.place(request, members: rack2Taken, seed: 0)))
        #expect(refused.members.map(\.reason.description) == [
            "anti-affinity with db-1 in failure domain rack1 (placement group db)",
            "anti-affinity with db-1 in failure domain rack1 (placement group db)",
            "anti-affinity with db-3 in failure domain rack2 (placement group db)",
        ])
    }

    @Test func strictAffinityFollowsTheGroupAndRefusesElsewhere() throws {
        let members = [member(1), member(2, count: 10, placementGroups: ["app": ["app-1"]]), member(3)]
        let rule = PlacementGroupRule(name: "app", kind: .affinity)
        #expect(placed(Scheduler.place(PlacementRequest(placementGroup: rule), members: members, seed: 0)) == "m2")
        var full = members
        full[1].allocated.memory = 8 * GiB
        let refused = try #require(refusalOf(Scheduler.place(PlacementRequest(name: "app-2", placementGroup: rule),
                                                           members: full, seed: 0)))
        #expect(refused.members[0].reason.description == "affinity with app-1 on m2 (placement group app)")
        #expect(refused.members[1].reason.description.hasPrefix("memory 100% allocated"))
        // The first instance of a group may go anywhere.
        let fresh = PlacementRequest(placementGroup: PlacementGroupRule(name: "new", kind: .affinity))
        #expect(placed(Scheduler.place(fresh, members: members, seed: 0)) == "m1" || placed(Scheduler.place(fresh, members: members, seed: 0)) == "m3")
    }

    @Test func permissiveAntiAffinityPrefersFreeMembersThenPlacesWithANote() throws {
        let rule = PlacementGroupRule(name: "web", kind: .antiAffinity, rigor: .permissive)
        let members = [member(1, count: 0, placementGroups: ["web": ["web-1"]]), member(2, count: 30)]
        // The policy alone would choose m1; the rule outranks it.
        #expect(placed(Scheduler.place(PlacementRequest(placementGroup: rule), members: members, seed: 0)) == "m2")
        var both = members
        both[1].placementGroupInstances["web"] = ["web-2", "web-3"]
        let placement = try Scheduler.place(PlacementRequest(placementGroup: rule), members: both, seed: 0).get()
        #expect(placement.memberName == "m1")
        #expect(placement.notes == ["anti-affinity (permissive) not met: placement group web already has 1 instance(s) on m1; no candidate was free of it"])
    }

    @Test func permissiveAffinityPrefersTheGroupButFallsBack() throws {
        let rule = PlacementGroupRule(name: "app", kind: .affinity, rigor: .permissive)
        let members = [member(1), member(2, count: 10, placementGroups: ["app": ["app-1"]])]
        #expect(placed(Scheduler.place(PlacementRequest(placementGroup: rule), members: members, seed: 0)) == "m2")
        var full = members
        full[1].online = false
        let placement = try Scheduler.place(PlacementRequest(placementGroup: rule), members: full, seed: 0).get()
        #expect(placement.memberName == "m1" && placement.notes.count == 1)
    }
}

@Suite struct BatchTests {
    @Test func batchIsAllOrNothingAndSaysWhichInstanceFailed() throws {
        let members = (1...3).map { member($0) }
        let rule = PlacementGroupRule(name: "web", kind: .antiAffinity)
        let ok = try Scheduler.placeMany(count: 3, of: PlacementRequest(placementGroup: rule), namePrefix: "web-",
                                         members: members, seed: 3).get()
        #expect(Set(ok.placements.map(\.memberName)) == ["m1", "m2", "m3"])
        #expect(ok.members.map { $0.count(inPlacementGroup: "web") } == [1, 1, 1])
        let result = Scheduler.placeMany(count: 4, of: PlacementRequest(placementGroup: rule), namePrefix: "web-",
                                         members: members, seed: 3)
        guard case .failure(let refusal) = result else {
            Issue.record("a fourth strict anti-affinity instance on three members must be refused")
            return
        }
        #expect(refusal.index == 3 && refusal.placedBefore == 3 && refusal.total == 4)
        #expect(refusal.refusal.instance == "web-4")
        #expect(refusal.description.hasPrefix("cannot place 4 instances (none created): instance 4 of 4 does not fit after 3 placed"))
    }

    @Test func batchNeverOversubscribes() throws {
        // 10 members × 16GiB, 300 instances of 512MiB: 300 × 0.5 = 150GiB of 160GiB.
        let members = (1...10).map { member($0, cpu: 8, memory: 16 * GiB) }
        let batch = try Scheduler.placeMany(count: 300, of: PlacementRequest(limits: ResourceLimits(cpu: 0.5, memory: 512 * MiB)),
                                            members: members, settings: SchedulerSettings(policy: .binpack), seed: 9).get()
        for snapshot in batch.members { #expect(snapshot.allocated.memory <= 16 * GiB) }
        // Binpack fills members one after another: 32 per member until the last.
        #expect(batch.members.map(\.instanceCount).sorted(by: >) == [32, 32, 32, 32, 32, 32, 32, 32, 32, 12])
        let refused = Scheduler.placeMany(count: 321, of: PlacementRequest(limits: ResourceLimits(memory: 512 * MiB)),
                                          members: members, seed: 9)
        if case .failure(let refusal) = refused { #expect(refusal.placedBefore == 320) } else {
            Issue.record("321 × 512MiB cannot fit in 10 × 16GiB")
        }
    }
}

@Suite struct FormattingTests {
    @Test func byteSizes() {
        #expect(ByteSize.format(0) == "0B")
        #expect(ByteSize.format(1023) == "1023B")
        #expect(ByteSize.format(512 * MiB) == "512MiB")
        #expect(ByteSize.format(3 * GiB / 2) == "1.5GiB")
        #expect(ByteSize.format(Int64(7.63 * Double(GiB))) == "7.6GiB")
        #expect(ByteSize.format(1024 * GiB) == "1TiB")
        #expect(ByteSize.format(GiB - 1) == "1024MiB")  // rounds up to the next tenth
    }

    @Test func capacityOverrideReplacesOnlyGivenFields() {
        let reported = MemberCapacity(cpu: 2, memory: 23 * GiB, disk: 100 * GiB)
        let effective = reported.overridden(by: CapacityOverride(memory: 4 * GiB))
        #expect(effective == MemberCapacity(cpu: 2, memory: 4 * GiB, disk: 100 * GiB))
    }
}
