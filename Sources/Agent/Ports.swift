import APITypes
import Cluster
import ClusterDB
import Gateway
import InstanceConfig
import Instances
import Migration
import Scheduler

// Gateway declares the narrow ports its routes call; Cluster implements the use cases without
// knowing Gateway. The agent, which wires the two, says which implements which.

extension ClusterController: ClusterService {}
extension ClusterTrust: TrustService {}
extension MemberWebSocket: ForwardedWebSocket {}

extension MemberClient: MemberForwarder {
    public func openWebSocket(target: String, to member: MemberReference) async throws -> any ForwardedWebSocket {
        try await webSocket(target, on: member)
    }
}

extension MemberEvacuation: MemberStateService {
    public func checkStateChange(member: String, _ post: ClusterMemberStatePost) async throws {
        _ = try await check(member: member, post)
    }

    public func changeState(member: String, _ post: ClusterMemberStatePost) async throws -> APIOperation {
        try await change(member: member, post)
    }
}

/// Cluster's evacuation port over this member's instance services.
struct InstanceEvacuationPort: InstanceEvacuating {
    let instances: InstanceService
    let db: ClusterDB

    func evacuationInput(member: String) async throws -> EvacuationInput {
        try await instances.placement.evacuationInput(member: member)
    }

    func restoreInput(member: String) async throws -> [RestoringInstance] {
        try await instances.placement.restoreInput(member: member)
    }

    /// The other members a live move from here would be planned to (MoveModeRule with no mode
    /// asked for, from the capabilities each published). The rule is symmetric for the default
    /// mode (usable CRIU on both ends, the same release), so restore uses the same set for moves
    /// back to here. A member that published nothing counts as it did before members published
    /// (its CRIU is checked at the prepare, and a failed live move falls back as `moveNow` rules).
    func liveMigrationTargets() async throws -> Set<String> {
        guard instances.lifecycle.canCheckpoint else { return [] }
        let here = instances.lifecycle.memberName
        let rows = try await db.transaction { tx in try tx.members() }
        let mine = await instances.lifecycle.migrationCapabilities()
        return Set(rows.filter { row in
            guard row.name != here else { return false }
            let decision = MoveModeRule.decide(method: .live, requested: nil, source: mine, target: MemberMigrationView.capabilities(of: row),
                                               sourceName: here, targetName: row.name)
            if case .use = decision { return true }
            return false
        }.map(\.name))
    }

    func setEvacuationOrigin(_ instance: InstanceRef, _ origin: String?) async throws {
        try await instances.lifecycle.setEvacuationOrigin(instance, origin)
    }

    func move(_ instance: InstanceRef, to target: String, live: Bool?) async throws -> MoveReport {
        try await instances.lifecycle.moveNow(instance, to: target, live: live)
    }

    func stop(_ instance: InstanceRef) async throws {
        try await instances.lifecycle.changeStateNow(instance, action: "stop")
    }

    func start(_ instance: InstanceRef) async throws {
        try await instances.lifecycle.changeStateNow(instance, action: "start")
    }
}
