import APITypes
import ClusterDB
@testable import Instances
import Testing

/// Placement groups, the server config and the capacity figures, over a real database.
@Suite struct PlacementUseCaseTests {
    @Test func placementGroupKeysAndValuesAreChecked() async throws {
        try await withHarness { h in
            #expect(await kind { try await h.placement.createPlacementGroup(PlacementGroup(name: "g", config: ["colour": "red", "policy": "affinity"])) } == .invalid)
            #expect(await kind { try await h.placement.createPlacementGroup(PlacementGroup(name: "g", config: ["policy": "near"])) } == .invalid)
            #expect(await kind { try await h.placement.createPlacementGroup(PlacementGroup(name: "g", config: ["rigor": "strict"])) } == .invalid)
            #expect(await kind { try await h.placement.createPlacementGroup(PlacementGroup(name: "bad name", config: ["policy": "affinity"])) } == .invalid)
            #expect(try await h.placement.placementGroups().count == 0)
            try await h.placement.createPlacementGroup(PlacementGroup(name: "g", config: ["policy": "anti-affinity"]))
            // Defaults fill what was not given.
            #expect(try await h.placement.placementGroup("g").config == ["policy": "anti-affinity", "rigor": "strict", "scope": "member"])
            #expect(await kind { try await h.placement.createPlacementGroup(PlacementGroup(name: "g", config: ["policy": "affinity"])) } == .conflict)
            #expect(await kind { _ = try await h.placement.placementGroup("other") } == .notFound)
        }
    }

    @Test func aGroupInUseCannotBeDeleted() async throws {
        try await withHarness { h in
            try await h.db.transaction { tx in try tx.setReportedCapacity(memberID: h.member.id, ReportedCapacity(cpu: 4, memory: 8 << 30)) }
            try await h.placement.createPlacementGroup(PlacementGroup(name: "g", config: ["policy": "affinity"]))
            try await h.launch("c1", config: ["placement.group": "g"])
            #expect(try await h.placement.placementGroup("g").usedBy == ["/1.0/instances/c1"])
            #expect(await kind { try await h.placement.deletePlacementGroup("g") } == .conflict)
            _ = try await h.finish(try await h.lifecycle.delete("c1"))
            try await h.placement.deletePlacementGroup("g")
            #expect(await kind { try await h.placement.deletePlacementGroup("g") } == .notFound)
        }
    }

    @Test func strictAntiAffinityOnOneMemberRefusesTheSecondInstance() async throws {
        try await withHarness { h in
            try await h.db.transaction { tx in try tx.setReportedCapacity(memberID: h.member.id, ReportedCapacity(cpu: 4, memory: 8 << 30)) }
            try await h.placement.createPlacementGroup(PlacementGroup(name: "apart", config: ["policy": "anti-affinity"]))
            try await h.launch("a1", config: ["placement.group": "apart"])
            #expect(await kind { _ = try await h.lifecycle.create(Harness.post("a2", config: ["placement.group": "apart"])) } == .conflict)
            #expect(try await h.rows().map(\.name) == ["a1"])
            // A group that does not exist is named as such.
            #expect(await kind { _ = try await h.lifecycle.create(Harness.post("a3", config: ["placement.group": "nope"])) } == .notFound)
        }
    }

    @Test func serverConfigAcceptsOnlyKnownKeysAndValues() async throws {
        try await withHarness { h in
            #expect(await kind { try await h.placement.updateServerConfig(["scheduler.policy": "random"], replace: false) } == .invalid)
            #expect(await kind { try await h.placement.updateServerConfig(["scheduler.cpu_overcommit": "0"], replace: false) } == .invalid)
            #expect(await kind { try await h.placement.updateServerConfig(["core.https_address": ":8443"], replace: false) } == .invalid)
            // One bad key refuses the whole update.
            #expect(await kind { try await h.placement.updateServerConfig(["scheduler.policy": "spread", "x": "1"], replace: false) } == .invalid)
            #expect(try await h.placement.serverConfig().count == 0)
            try await h.placement.updateServerConfig(["scheduler.policy": "spread", "scheduler.cpu_overcommit": "2"], replace: false)
            #expect(try await h.placement.serverConfig() == ["scheduler.policy": "spread", "scheduler.cpu_overcommit": "2"])
            // PUT replaces: keys not given are unset; PATCH with "" unsets one.
            try await h.placement.updateServerConfig(["scheduler.policy": "binpack"], replace: true)
            #expect(try await h.placement.serverConfig() == ["scheduler.policy": "binpack"])
            try await h.placement.updateServerConfig(["scheduler.policy": ""], replace: false)
            #expect(try await h.placement.serverConfig().count == 0)
        }
    }

    @Test func launchPolicyMustBeKnown() async throws {
        try await withHarness { h in
            #expect(await kind { _ = try await h.lifecycle.create(Harness.post("c1"), options: CreateOptions(policy: "random")) } == .invalid)
            let rows = try await h.rows()
            #expect(rows.isEmpty)
        }
    }

    @Test func memberResourcesShowCapacityAllocationAndOwnIdmap() async throws {
        try await withHarness { h in
            try await h.placement.reportCapacity(ReportedCapacity(cpu: 4, memory: 8 << 30))
            try await h.launch("c1", config: ["limits.cpu": "2", "limits.memory": "1GiB"])
            let resources = try await h.placement.memberResources()
            let m1 = try #require(resources.first { $0.serverName == "m1" })
            #expect(m1.capacity.cpu == 4)
            #expect(m1.allocated.cpu == 2 && m1.allocated.memory == 1 << 30)
            #expect(m1.instances == 1)
            #expect(m1.idmap?.start == h.idmaps.start)
        }
    }
}
