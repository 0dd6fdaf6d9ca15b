import APITypes
import ClusterDB
import Foundation
import InstanceConfig
import Instances
import Logging
import Operations
import Scheduler

/// What an evacuation needs from this member's instance use cases (Instances' lifecycle and
/// placement services, conformed by the agent; tests pass a fake).
public protocol InstanceEvacuating: Sendable {
    /// The member's instances, every member's snapshot and the scheduler settings.
    func evacuationInput(member: String) async throws -> EvacuationInput
    /// The instances whose `volatile.evacuate.origin` is `member`.
    func restoreInput(member: String) async throws -> [RestoringInstance]
    /// Members a running instance of this member can move to live (CRIU on both ends).
    func liveMigrationTargets() async throws -> Set<String>
    func setEvacuationOrigin(_ instance: InstanceRef, _ origin: String?) async throws
    /// Moves an instance of this member and returns when it is done (`live`: as `moveNow`).
    func move(_ instance: InstanceRef, to target: String, live: Bool?) async throws -> MoveReport
    func stop(_ instance: InstanceRef) async throws
    func start(_ instance: InstanceRef) async throws
}

/// Moves an instance that lives on another member (restore brings instances back from wherever
/// the evacuation put them; the owner does the move). `MemberClient` implements it.
public protocol RemoteInstanceMoving: Sendable {
    /// Returns how it moved ("live", "stateless", "cold"), when the owner says.
    func move(_ instance: InstanceRef, on owner: String, to target: String, live: Bool?) async throws -> String?
}

/// `POST /1.0/cluster/members/NAME/state`: evacuate a member (mark it EVACUATED, then move,
/// stop or leave each of its instances as ``EvacuationPlanner`` decides) or restore it (mark it
/// ONLINE, move back what left, start what was stopped). Runs on the member itself, as an
/// operation whose metadata lists each instance's outcome as it is done ("instances") and what
/// is being done now ("progress").
public struct MemberEvacuation: Sendable {
    let db: ClusterDB
    let localMember: String
    let instances: any InstanceEvacuating
    let remote: (any RemoteInstanceMoving)?
    let operations: OperationRegistry
    let logger: Logger

    public init(db: ClusterDB, localMember: String, instances: any InstanceEvacuating, remote: (any RemoteInstanceMoving)?,
                operations: OperationRegistry, logger: Logger) {
        self.db = db
        self.localMember = localMember
        self.instances = instances
        self.remote = remote
        self.operations = operations
        self.logger = logger
    }

    public enum Action: Sendable, Equatable {
        case evacuate(EvacuationMode?)
        case restore
    }

    /// Checks the request against the member's state (any member can, before forwarding it to
    /// the member concerned): 404 for an unknown member, 400 for a wrong action or mode, an
    /// evacuation of a member that is EVACUATED or OFFLINE, a restore of one that is not EVACUATED
    /// (unless instances an earlier restore could not bring back still name it as their origin).
    public func check(member name: String, _ post: ClusterMemberStatePost) async throws -> Action {
        let action: Action
        switch post.action {
        case "evacuate":
            let mode = post.mode.flatMap { $0.isEmpty ? nil : $0 }
            if let mode, EvacuationMode(rawValue: mode) == nil || mode == "auto" {
                throw ClusterUseCaseError.invalid("Unknown evacuation mode \"\(mode)\": use stop, migrate or live-migrate, or none to follow each instance's cluster.evacuate")
            }
            action = .evacuate(mode.flatMap(EvacuationMode.init(rawValue:)))
        case "restore":
            if let mode = post.mode, !mode.isEmpty {
                throw ClusterUseCaseError.invalid("Restore takes no mode (got \"\(mode)\")")
            }
            action = .restore
        default:
            throw ClusterUseCaseError.invalid("Unknown action \"\(post.action)\": use evacuate or restore")
        }
        guard let row = try await db.transaction({ tx in try tx.member(name: name) }) else {
            throw ClusterUseCaseError.notFound("Cluster member \"\(name)\" not found: see lxdctl cluster list")
        }
        switch (action, row.state) {
        case (.evacuate, .evacuated):
            throw ClusterUseCaseError.invalid("Member \(name) is already evacuated: restore it first with lxdctl cluster restore \(name)")
        case (.evacuate, .offline):
            throw ClusterUseCaseError.invalid("Member \(name) is OFFLINE: evacuation moves instances of reachable members only; its instances are left alone until it is back")
        case (.restore, let state) where state != .evacuated:
            // A restore that could not bring every instance back may be run again.
            if try await instances.restoreInput(member: name).isEmpty {
                throw ClusterUseCaseError.invalid("Member \(name) is not evacuated (it is \(state)): nothing to restore")
            }
            return action
        default:
            return action
        }
    }

    /// Starts the evacuation or restore of this member as an operation (after ``check``).
    public func change(member name: String, _ post: ClusterMemberStatePost) async throws -> APIOperation {
        guard name == localMember else {
            throw ClusterUseCaseError.unavailable("The state of member \(name) is changed on \(name) itself, not on \(localMember): retry (the request is forwarded there)")
        }
        let action = try await check(member: name, post)
        // The state is written before the operation starts, and re-checked in the same
        // transaction: of two evacuations sent together, one is refused; and nothing is placed
        // here from the moment the request is accepted.
        try await transition(action)
        let description = action == .restore ? "Restoring cluster member" : "Evacuating cluster member"
        return await operations.start(description: description, resources: ["cluster": ["/1.0/cluster/members/\(name)"]]) { context in
            let outcomes: [EvacuationOutcome]
            switch action {
            case .evacuate(let mode): outcomes = try await evacuate(mode: mode, report: context)
            case .restore: outcomes = try await restore(report: context)
            }
            return ["instances": Self.json(outcomes)]
        }
    }

    /// Carries out the evacuation plan (the member is EVACUATED already: nothing new lands on it).
    func evacuate(mode: EvacuationMode?, report: OperationContext?) async throws -> [EvacuationOutcome] {
        logger.notice("evacuating member", metadata: ["member": "\(localMember)", "mode": "\(mode?.rawValue ?? "per instance")"])
        let input = try await instances.evacuationInput(member: localMember)
        let live = try await instances.liveMigrationTargets()
        let plan = EvacuationPlanner.plan(evacuating: localMember, instances: input.instances, members: input.members,
                                          liveTargets: live, mode: mode, settings: input.settings,
                                          seed: Self.seed(localMember))
        var outcomes: [EvacuationOutcome] = []
        for (index, step) in plan.steps.enumerated() {
            let ref = InstanceRef(project: step.project, name: step.name)
            await report?.setMetadata("progress", .string("\(index + 1)/\(plan.steps.count): \(Self.verb(step.action)) \(step.name)"))
            let outcome = await carryOut(step, ref)
            logger.info("evacuation step", metadata: ["instance": "\(step.name)", "outcome": "\(outcome.outcome)",
                                                     "target": "\(outcome.target)", "reason": "\(outcome.reason)"])
            outcomes.append(outcome)
            await report?.setMetadata("instances", Self.json(outcomes))
        }
        return outcomes
    }

    private func carryOut(_ step: EvacuationStep, _ ref: InstanceRef) async -> EvacuationOutcome {
        switch step.action {
        case .move(let member, _, let live):
            do {
                // Recorded first: a move that completes is never without its way back.
                try await instances.setEvacuationOrigin(ref, localMember)
                // A live plan in auto mode lets the move fall back to stateless when live fails
                // early (nil asks for that); live-migrate insists on live.
                let report = try await instances.move(ref, to: member, live: live ? (step.mode == .liveMigrate ? true : nil) : false)
                let how = report.method == "live" ? "moved-live" : "moved"
                return EvacuationOutcome(project: step.project, name: step.name, outcome: how, target: member)
            } catch {
                try? await instances.setEvacuationOrigin(ref, nil)
                return EvacuationOutcome(project: step.project, name: step.name, outcome: "failed", target: member,
                                         reason: "move to \(member) failed: \(error)")
            }
        case .stop(let reason):
            do {
                try await instances.setEvacuationOrigin(ref, localMember)
                try await instances.stop(ref)
                return EvacuationOutcome(project: step.project, name: step.name, outcome: "stopped", reason: reason)
            } catch {
                try? await instances.setEvacuationOrigin(ref, nil)
                return EvacuationOutcome(project: step.project, name: step.name, outcome: "failed", reason: "stop failed: \(error) (it was to be stopped: \(reason))")
            }
        case .leave(let reason):
            return EvacuationOutcome(project: step.project, name: step.name, outcome: "left", reason: reason)
        }
    }

    /// Moves back what the evacuation moved and starts what it stopped (the member is ONLINE
    /// already: moves back need a target that is not EVACUATED).
    func restore(report: OperationContext?) async throws -> [EvacuationOutcome] {
        logger.notice("restoring member", metadata: ["member": "\(localMember)"])
        let back = try await instances.restoreInput(member: localMember)
        let live = try await instances.liveMigrationTargets()
        let steps = RestorePlanner.plan(restoring: localMember, instances: back, liveSources: live)
        var outcomes: [EvacuationOutcome] = []
        for (index, step) in steps.enumerated() {
            let ref = InstanceRef(project: step.project, name: step.name)
            await report?.setMetadata("progress", .string("\(index + 1)/\(steps.count): restoring \(step.name)"))
            var outcome: EvacuationOutcome
            do {
                switch step.action {
                case .moveBack(let from, let live):
                    guard let remote else { throw ClusterUseCaseError.unavailable("this member cannot reach member \(from)") }
                    let method = try await remote.move(ref, on: from, to: localMember, live: live ? nil : false)
                    outcome = EvacuationOutcome(project: step.project, name: step.name, outcome: method == "live" ? "moved-live" : "moved",
                                                target: localMember)
                case .start:
                    try await instances.start(ref)
                    outcome = EvacuationOutcome(project: step.project, name: step.name, outcome: "started")
                case .nothing:
                    outcome = EvacuationOutcome(project: step.project, name: step.name, outcome: "unchanged")
                }
                try await instances.setEvacuationOrigin(ref, nil)
            } catch {
                // The origin stays: a later restore tries again.
                outcome = EvacuationOutcome(project: step.project, name: step.name, outcome: "failed", reason: "\(error)")
            }
            outcomes.append(outcome)
            await report?.setMetadata("instances", Self.json(outcomes))
        }
        return outcomes
    }

    /// EVACUATED for an evacuation, ONLINE for a restore, written only if the state still
    /// allows it (another request may have changed it since ``check``).
    private func transition(_ action: Action) async throws {
        let name = localMember
        try await db.transaction { tx in
            guard let row = try tx.member(name: name) else { throw ClusterUseCaseError.notFound("Cluster member \"\(name)\" not found") }
            switch action {
            case .evacuate:
                guard row.state != .evacuated, row.state != .offline else {
                    throw ClusterUseCaseError.invalid("Member \(name) is \(row.state) now (another request changed it): not evacuated again")
                }
                try tx.updateMemberState(id: row.id, state: .evacuated)
            case .restore:
                try tx.updateMemberState(id: row.id, state: .online)
            }
        }
    }

    /// A seed that is the same on every run for the same member (Swift's `hashValue` is not).
    static func seed(_ name: String) -> UInt64 {
        name.utf8.reduce(0xcbf2_9ce4_8422_2325 as UInt64) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 }
    }

    static func verb(_ action: EvacuationAction) -> String {
        switch action {
        case .move(let member, _, let live): "moving \(live ? "live " : "")to \(member):"
        case .stop: "stopping"
        case .leave: "leaving"
        }
    }

    static func json(_ outcomes: [EvacuationOutcome]) -> JSONValue {
        .array(outcomes.map { o in
            .object(["project": .string(o.project), "name": .string(o.name), "outcome": .string(o.outcome),
                     "target": .string(o.target), "reason": .string(o.reason)])
        })
    }
}

extension MemberClient: RemoteInstanceMoving {
    /// Asks `owner` to move the instance (`POST /1.0/instances/NAME?target=`, LXD's move) and
    /// waits for its operation to end.
    public func move(_ instance: InstanceRef, on owner: String, to target: String, live: Bool?) async throws -> String? {
        let body = try JSONEncoder().encode(InstancePost(migration: true, live: live))
        var query = "target=\(target)"
        if instance.project != InstanceRef.defaultProject { query += "&project=\(instance.project)" }
        let answer = try await send(
            ForwardedRequest(method: "POST", target: "/1.0/instances/\(instance.name)?\(query)",
                             headers: [("Content-Type", "application/json"), (ForwardedRequest.markerHeader, localMemberName)],
                             body: Array(body)),
            to: .name(owner), timeout: Self.acceptTimeout)
        var op = try Self.operation(from: answer, member: owner)
        // Long moves: wait in slices so a lost connection is noticed between them.
        while op.knownStatus.map({ !$0.isFinal }) ?? false {
            let waited = try await send(
                ForwardedRequest(method: "GET", target: "/1.0/operations/\(op.id)/wait?timeout=30",
                                 headers: [(ForwardedRequest.markerHeader, localMemberName)], body: []),
                to: .name(owner), timeout: .seconds(40))
            op = try Self.operation(from: waited, member: owner)
        }
        guard op.knownStatus == .success else {
            throw ClusterUseCaseError.conflict("Moving \(instance.name) from \(owner) to \(target) failed: \(op.err)")
        }
        return op.metadata?["method"]?.stringValue
    }
}
