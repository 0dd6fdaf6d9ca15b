import APITypes
@testable import Cluster
import ClusterDB
import DatabaseTestSupport
import Foundation
import InstanceConfig
import Instances
import Logging
import Operations
import Scheduler
import Synchronization
import Testing

/// The instance side of an evacuation, recorded: what was moved where, stopped, started, and
/// each instance's `volatile.evacuate.origin`.
final class FakeInstanceEvacuating: InstanceEvacuating, RemoteInstanceMoving, Sendable {
    struct State {
        var input: EvacuationInput
        var restoring: [RestoringInstance] = []
        var origins: [String: String] = [:]
        var calls: [String] = []
        /// Instances whose move fails.
        var failing: Set<String> = []
    }
    let state: Mutex<State>

    init(input: EvacuationInput) { state = Mutex(State(input: input)) }

    func evacuationInput(member: String) async throws -> EvacuationInput { state.withLock { $0.input } }
    func restoreInput(member: String) async throws -> [RestoringInstance] { state.withLock { $0.restoring } }
    func liveMigrationTargets() async throws -> Set<String> { ["m2"] }
    func setEvacuationOrigin(_ instance: InstanceRef, _ origin: String?) async throws {
        state.withLock { $0.origins[instance.name] = origin }
    }
    func move(_ instance: InstanceRef, to target: String, live: Bool?) async throws -> MoveReport {
        try state.withLock { s in
            s.calls.append("move \(instance.name) \(target) live=\(live.map(String.init) ?? "auto")")
            if s.failing.contains(instance.name) { throw InstancesError.conflict("target refused") }
        }
        return MoveReport(method: live == false ? "stateless" : "live", from: "m1", to: target, downtimeMilliseconds: 1, totalMilliseconds: 2)
    }
    func move(_ instance: InstanceRef, on owner: String, to target: String, live: Bool?) async throws -> String? {
        state.withLock { $0.calls.append("move-back \(instance.name) \(owner)->\(target) live=\(live.map(String.init) ?? "auto")") }
        return live == false ? "cold" : "live"
    }
    func stop(_ instance: InstanceRef) async throws { state.withLock { $0.calls.append("stop \(instance.name)") } }
    func start(_ instance: InstanceRef) async throws { state.withLock { $0.calls.append("start \(instance.name)") } }
}

/// m1 (this member, being evacuated), m2 and m3 ONLINE, m4 OFFLINE, each with room for plenty.
final class EvacuationHarness: Sendable {
    let database: InProcessDatabase
    let fake: FakeInstanceEvacuating
    let evacuation: MemberEvacuation
    let operations: OperationRegistry

    init(instances: [EvacuatingInstance]) async throws {
        database = try await InProcessDatabase(label: "evacuation")
        try await database.db.transaction { tx in
            for i in 1...4 { _ = try tx.ensureMember(name: "m\(i)", address: "127.0.0.\(i):8443") }
            try tx.updateMemberState(id: try tx.member(name: "m4")!.id, state: .offline)
        }
        let members = try await database.db.transaction { tx in try tx.members() }.map { row in
            MemberSnapshot(id: row.id, name: row.name, online: row.state != .offline,
                           capacity: MemberCapacity(cpu: 8, memory: 8 << 30), instanceCount: row.name == "m1" ? instances.count : 0)
        }
        fake = FakeInstanceEvacuating(input: EvacuationInput(members: members, settings: SchedulerSettings(), instances: instances))
        operations = OperationRegistry(location: "m1", logger: Logger(label: "test"))
        evacuation = MemberEvacuation(db: database.db, localMember: "m1", instances: fake, remote: fake, operations: operations,
                                      logger: Logger(label: "test.evacuation"))
    }

    func state(_ name: String) async throws -> MemberStatus? {
        try await database.db.transaction { tx in try tx.member(name: name)?.state }
    }

    /// Runs the change as the route would, waits for its operation and returns it.
    func run(_ member: String, _ post: ClusterMemberStatePost) async throws -> APIOperation {
        let op = try await evacuation.change(member: member, post)
        return try #require(await operations.wait(op.id, timeout: nil))
    }

    static func with(_ instances: [EvacuatingInstance], _ body: (EvacuationHarness) async throws -> Void) async throws {
        let h = try await EvacuationHarness(instances: instances)
        do { try await body(h) } catch { await h.database.close(); throw error }
        await h.database.close()
    }
}

private func outcomes(_ op: APIOperation) throws -> [EvacuationOutcome] {
    let data = try JSONEncoder().encode(op.metadata?["instances"] ?? .null)
    return try JSONDecoder().decode([EvacuationOutcome].self, from: data)
}

@Suite struct MemberEvacuationTests {
    @Test func evacuateMarksTheMemberThenMovesStopsOrLeavesEachInstanceAndReportsIt() async throws {
        let apart = PlacementGroupRule(name: "apart", kind: .antiAffinity)
        try await EvacuationHarness.with([
            EvacuatingInstance(name: "live1", running: true),
            EvacuatingInstance(name: "web1", running: true, placementGroup: apart),
            EvacuatingInstance(name: "web2", running: true, placementGroup: apart),
            EvacuatingInstance(name: "web3", running: true, placementGroup: apart),
            EvacuatingInstance(name: "quiet", running: true, mode: .stop),
            EvacuatingInstance(name: "cold", running: false),
        ]) { h in
            let op = try await h.run("m1", ClusterMemberStatePost(action: "evacuate"))
            #expect(op.knownStatus == .success)
            #expect(try await h.state("m1") == .evacuated)
            let byName = Dictionary(uniqueKeysWithValues: try outcomes(op).map { ($0.name, $0) })
            #expect(byName.count == 6)
            #expect(byName["quiet"]?.outcome == "stopped")
            #expect(byName["cold"]?.outcome == "moved")
            // Three of a strict anti-affinity group, two other online members: one is stopped (auto).
            let web = ["web1", "web2", "web3"].compactMap { byName[$0] }
            #expect(web.filter { $0.outcome.hasPrefix("moved") }.count == 2)
            let stopped = try #require(web.first { $0.outcome == "stopped" })
            #expect(stopped.reason.contains("anti-affinity") && stopped.reason.contains("m4: offline"))
            #expect(Set(web.filter { $0.outcome.hasPrefix("moved") }.map(\.target)) == ["m2", "m3"])
            let calls = h.fake.state.withLock { $0.calls }
            #expect(calls.contains("stop quiet") && calls.contains("stop \(stopped.name)"))
            #expect(!calls.contains { $0.contains(" m4 ") || $0.contains(" m1 ") })
            // Every instance that left or was stopped remembers where it came from; left ones do not.
            let origins = h.fake.state.withLock { $0.origins }
            #expect(origins.count == 6 && origins.values.allSatisfy { $0 == "m1" })
        }
    }

    @Test func liveMigrateInsistsOnLiveAutoLetsTheMoveFallBackMigrateMovesWithoutMemory() async throws {
        try await EvacuationHarness.with([
            EvacuatingInstance(name: "a", running: true, mode: .auto),
            EvacuatingInstance(name: "b", running: true, mode: .liveMigrate),
            EvacuatingInstance(name: "c", running: true, mode: .migrate),
        ]) { h in
            let op = try await h.run("m1", ClusterMemberStatePost(action: "evacuate"))
            #expect(try outcomes(op).map(\.outcome) == ["moved-live", "moved-live", "moved"])
            // The fake says live moves are possible to m2 only.
            #expect(h.fake.state.withLock { $0.calls }.sorted() == ["move a m2 live=auto", "move b m2 live=true", "move c m3 live=false"])
        }
    }

    @Test func aFailedMoveIsReportedAndLeavesNoOrigin() async throws {
        try await EvacuationHarness.with([EvacuatingInstance(name: "a", running: false), EvacuatingInstance(name: "b", running: false)]) { h in
            h.fake.state.withLock { $0.failing = ["a"] }
            let op = try await h.run("m1", ClusterMemberStatePost(action: "evacuate", mode: "migrate"))
            let all = try outcomes(op)
            #expect(all.first { $0.name == "a" }?.outcome == "failed")
            #expect(all.first { $0.name == "a" }?.reason.contains("target refused") == true)
            #expect(all.first { $0.name == "b" }?.outcome == "moved")
            #expect(h.fake.state.withLock { $0.origins } == ["b": "m1"])
        }
    }

    @Test func refusals() async throws {
        try await EvacuationHarness.with([]) { h in
            #expect(await kind { _ = try await h.evacuation.check(member: "m4", ClusterMemberStatePost(action: "evacuate")) } == .invalid)
            #expect(await kind { _ = try await h.evacuation.check(member: "m2", ClusterMemberStatePost(action: "restore")) } == .invalid)
            #expect(await kind { _ = try await h.evacuation.check(member: "m9", ClusterMemberStatePost(action: "evacuate")) } == .notFound)
            #expect(await kind { _ = try await h.evacuation.check(member: "m2", ClusterMemberStatePost(action: "evacuate", mode: "auto")) } == .invalid)
            #expect(await kind { _ = try await h.evacuation.check(member: "m2", ClusterMemberStatePost(action: "drain")) } == .invalid)
            // Another member's change runs there, not here.
            #expect(await kind { _ = try await h.evacuation.change(member: "m2", ClusterMemberStatePost(action: "evacuate")) } == .unavailable)
            _ = try await h.run("m1", ClusterMemberStatePost(action: "evacuate"))
            #expect(await kind { _ = try await h.evacuation.check(member: "m1", ClusterMemberStatePost(action: "evacuate")) } == .invalid)
        }
    }

    @Test func restoreMarksOnlineMovesBackAndStartsWhatWasStopped() async throws {
        try await EvacuationHarness.with([]) { h in
            _ = try await h.run("m1", ClusterMemberStatePost(action: "evacuate"))
            h.fake.state.withLock {
                $0.restoring = [RestoringInstance(name: "a", location: "m2", running: true),
                                RestoringInstance(name: "b", location: "m3", running: false),
                                RestoringInstance(name: "c", location: "m1", running: false)]
                $0.origins = ["a": "m1", "b": "m1", "c": "m1"]
            }
            let op = try await h.run("m1", ClusterMemberStatePost(action: "restore"))
            #expect(op.knownStatus == .success)
            #expect(try await h.state("m1") == .online)
            #expect(try outcomes(op).map(\.outcome) == ["moved-live", "moved", "started"])
            #expect(h.fake.state.withLock { $0.calls } == ["move-back a m2->m1 live=auto", "move-back b m3->m1 live=false", "start c"])
            #expect(h.fake.state.withLock { $0.origins }.isEmpty)
        }
    }

    @Test func ofTwoEvacuationsSentTogetherOneIsRefusedAndTheMemberIsEvacuatedBeforeTheAnswer() async throws {
        try await EvacuationHarness.with([EvacuatingInstance(name: "a", running: true, mode: .stop)]) { h in
            async let first = kind { _ = try await h.evacuation.change(member: "m1", ClusterMemberStatePost(action: "evacuate")) }
            async let second = kind { _ = try await h.evacuation.change(member: "m1", ClusterMemberStatePost(action: "evacuate")) }
            let kinds = await [first, second]
            #expect(kinds.filter { $0 == nil }.count == 1 && kinds.contains(.invalid), "\(kinds)")
            let state = try await h.state("m1")
            #expect(state == .evacuated)
        }
    }

    @Test func aRestoreThatLeftInstancesBehindMayBeRunAgain() async throws {
        try await EvacuationHarness.with([]) { h in
            #expect(await kind { _ = try await h.evacuation.check(member: "m1", ClusterMemberStatePost(action: "restore")) } == .invalid)
            h.fake.state.withLock { $0.restoring = [RestoringInstance(name: "a", location: "m2", running: false)] }
            let action = try await h.evacuation.check(member: "m1", ClusterMemberStatePost(action: "restore"))
            #expect(action == .restore)
        }
    }
}
