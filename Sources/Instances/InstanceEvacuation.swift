import APITypes
import ClusterDB
import InstanceConfig
import Scheduler

/// What the evacuation of a member reads, in one transaction.
public struct EvacuationInput: Sendable {
    public var members: [MemberSnapshot]
    public var settings: SchedulerSettings
    public var instances: [EvacuatingInstance]

    public init(members: [MemberSnapshot], settings: SchedulerSettings, instances: [EvacuatingInstance]) {
        self.members = members
        self.settings = settings
        self.instances = instances
    }
}

/// LXD's instance key that records where an evacuation took an instance from (or stopped it on).
public enum EvacuationKeys {
    public static let mode = "cluster.evacuate"
    public static let origin = "volatile.evacuate.origin"
}

extension PlacementService {
    /// The instances of `member` as the evacuation planner needs them (running as this member's
    /// host reports it when `member` is this member, else as the database last recorded), with
    /// every member's snapshot and the cluster's scheduler settings.
    public func evacuationInput(member: String) async throws -> EvacuationInput {
        let (rows, members, settings, groups) = try await context.db.transaction { tx in
            let rows = try tx.instances().filter { $0.location == member }
            var groups: [String: PlacementGroupRule] = [:]
            for row in try tx.placementGroups() { groups[row.name] = try PlacementPlanner.rule(row) }
            return (rows, try PlacementPlanner.snapshots(tx), PlacementPlanner.settings(try tx.allConfig()), groups)
        }
        let local = member == context.member.name
        let instances = rows.map { row in
            let footprint = InstanceFootprint(instanceConfig: row.config)
            let running = local ? context.host.state(instance: row.ref)?.running == true : row.powerState == .running
            return EvacuatingInstance(
                project: row.project, name: row.name, running: running,
                mode: row.config[EvacuationKeys.mode].flatMap(EvacuationMode.init(rawValue:)) ?? .auto,
                limits: ResourceLimits(cpu: footprint.cpu, memory: footprint.memory, disk: footprint.disk, processes: footprint.processes),
                placementGroup: row.config["placement.group"].flatMap { groups[$0] })
        }
        return EvacuationInput(members: members, settings: settings, instances: instances)
    }

    /// The instances an evacuation took from `member` or stopped on it (their
    /// `volatile.evacuate.origin` names it), where they are now and whether they run there.
    public func restoreInput(member: String) async throws -> [RestoringInstance] {
        let rows = try await context.db.transaction { tx in try tx.instances() }
        return rows.filter { $0.config[EvacuationKeys.origin] == member }.map { row in
            let running = row.location == context.member.name
                ? context.host.state(instance: row.ref)?.running == true : row.powerState == .running
            return RestoringInstance(project: row.project, name: row.name, location: row.location, running: running)
        }
    }
}

extension InstanceLifecycle {
    /// Records (or, with nil, removes) the member an evacuation took the instance from.
    public func setEvacuationOrigin(_ instance: InstanceRef, _ origin: String?) async throws {
        try await context.db.transaction { tx in
            guard var config = try tx.instance(name: instance.name, project: instance.project)?.config else {
                throw InstancesError.notFound("Instance \"\(instance.name)\" not found")
            }
            config[EvacuationKeys.origin] = origin
            try tx.updateInstanceConfig(name: instance.name, project: instance.project, config: config)
        }
    }

    /// Starts or stops an instance of this member and returns when that is done (for callers
    /// running their own operation, like a cluster evacuation).
    public func changeStateNow(_ instance: InstanceRef, action: String) async throws {
        let op = try await changeState(instance.name, InstanceStatePut(action: action))
        guard let done = await context.operations.wait(op.id, timeout: nil) else {
            throw InstancesError.internal("The \(action) operation of \(instance.name) vanished before it ended")
        }
        if done.knownStatus != .success {
            throw InstancesError.conflict("Could not \(action) instance \(instance.name): \(done.err)")
        }
    }

    /// Whether this member can checkpoint and restore containers (CRIU found): live moves from here.
    public var canCheckpoint: Bool { context.checkpointer != nil }
}
