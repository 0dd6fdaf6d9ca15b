import APITypes
@testable import Cluster
import ClusterDB
import Testing

/// PUT and PATCH of a member's settings (`ClusterController.memberSettings`, pure).
@Suite struct MemberSettingsTests {
    let stored = MemberRow(id: 2, name: "m2", address: "127.0.0.2:8443", schemaVersion: 1, apiExtensions: 1, heartbeat: nil,
                           failureDomain: "rack1", config: ["scheduler.instance": "all", "user.note": "old"], state: .online)

    @Test func aPatchMergesConfigKeysAndKeepsTheFailureDomain() throws {
        let next = try ClusterController.memberSettings(ClusterMemberPut(config: ["user.note": "new"]), over: stored)
        #expect(next.config == ["scheduler.instance": "all", "user.note": "new"])
        #expect(next.domain == "rack1")
    }

    @Test func aPutReplacesConfigAndAnEmptyFailureDomainIsTheDefault() throws {
        let next = try ClusterController.memberSettings(ClusterMemberPut(config: ["user.note": "new"], failureDomain: ""), over: nil)
        #expect(next.config == ["user.note": "new"])
        #expect(next.domain == "default")
    }

    @Test func anUnknownKeyIsRefusedAsInvalidInPutAndPatch() {
        for current in [nil, stored] {
            do {
                _ = try ClusterController.memberSettings(ClusterMemberPut(config: ["scheduler.bogus": "1"]), over: current)
                Issue.record("an unknown key was accepted")
            } catch let error as ClusterUseCaseError {
                #expect(error.kind == .invalid)
                #expect(error.message.contains("scheduler.bogus"))
            } catch {
                Issue.record("unexpected \(error)")
            }
        }
    }
}
