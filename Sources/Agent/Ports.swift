import APITypes
import Cluster
import ClusterDB
import Gateway
import InstanceConfig
import Instances
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

    /// Every other member when this one has CRIU. Members do not report their CRIU features to
    /// each other yet, so the target's side is assumed to match (every member runs the same
    /// build on the same distribution); a target without it fails the live move, which then
    /// falls back as `moveNow` rules.
    func liveMigrationTargets() async throws -> Set<String> {
        guard instances.lifecycle.canCheckpoint else { return [] }
        let rows = try await db.transaction { tx in try tx.members() }
        return Set(rows.map(\.name).filter { $0 != instances.lifecycle.memberName })
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
