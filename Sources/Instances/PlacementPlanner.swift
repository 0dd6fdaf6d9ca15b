import APITypes
import ClusterDB
import Scheduler

/// Where each instance of a launch goes.
struct PlannedInstance: Sendable {
    var name: String
    var memberID: Int64
    var memberName: String
}

/// The glue between ClusterDB and the pure Scheduler: reads member snapshots inside the caller's
/// transaction and runs the placement there, so the rows inserted afterwards in the same
/// transaction are judged against exactly what the database holds (a retried transaction
/// re-reads and re-places).
enum PlacementPlanner {
    /// What an instance without limits counts for (documented in docs/scheduling.md).
    static let defaultFootprint: InstanceFootprint = {
        let d = SchedulerSettings.defaultFootprint
        return InstanceFootprint(cpu: d.cpu, memory: d.memory, disk: d.disk, processes: d.processes)
    }()

    /// The cluster's scheduler settings from the config table (values were validated on write).
    static func settings(_ config: [String: String]) -> SchedulerSettings {
        var settings = SchedulerSettings()
        if let policy = config[ServerConfigKeys.policy].flatMap(SchedulerPolicy.init(rawValue:)) { settings.policy = policy }
        if let ratio = config[ServerConfigKeys.cpuOvercommit].flatMap(Double.init), ratio > 0 { settings.cpuOvercommitRatio = ratio }
        return settings
    }

    /// Every member as the scheduler sees it, read in `tx`.
    static func snapshots(_ tx: Transaction) throws -> [MemberSnapshot] {
        let rows = try tx.members()
        let reported = try tx.reportedCapacities()
        let allocations = try tx.memberAllocations(defaults: defaultFootprint)
        let grouped = try tx.placementGroupInstances()
        return rows.map { row in
            let config = MemberSchedulingConfig(config: row.config)
            let report = reported[row.id]
            // A member that has not reported yet offers nothing unless its config says otherwise.
            let capacity = MemberCapacity(cpu: report?.cpu ?? 0, memory: report?.memory ?? 0,
                                          disk: report?.disk, processes: report?.processes)
                .overridden(by: CapacityOverride(cpu: config.cpu, memory: config.memory, disk: config.disk, processes: config.processes))
            let used = allocations[row.id] ?? MemberAllocation()
            return MemberSnapshot(
                id: row.id, name: row.name, online: row.state != .offline, evacuated: row.state == .evacuated,
                instanceMode: InstanceSchedulingMode(rawValue: config.mode) ?? .all,
                groups: Set(["default"] + config.groups), failureDomain: row.failureDomain, capacity: capacity,
                allocated: Resources(cpu: used.cpu, memory: used.memory, disk: used.disk, processes: used.processes),
                instanceCount: used.instances, placementGroupInstances: grouped[row.id] ?? [:])
        }
    }

    /// Places `names` (all with the same footprint) inside `tx`, all or nothing. `target` is a
    /// member name, `@group`, or nil for any member. Throws `InstancesError`: a conflict with every member's
    /// reason when nothing fits, not found for an unknown member or group, invalid for a bad policy.
    static func place(
        _ names: [String], footprint: InstanceFootprint, target: String?, policy: String?, placementGroup: String? = nil,
        seed: UInt64, in tx: Transaction
    ) throws -> [PlannedInstance] {
        let rule = try placementGroup.map { name -> PlacementGroupRule in
            guard let row = try tx.placementGroup(name: name) else {
                throw InstancesError.notFound("Placement group \"\(name)\" not found: create it with lxdctl placement-group create \(name) POLICY")
            }
            return try Self.rule(row)
        }
        let members = try snapshots(tx)
        let settings = settings(try tx.allConfig())
        let placementTarget: PlacementTarget
        switch target {
        case .none: placementTarget = .anyMember
        case .some(let t) where t.hasPrefix("@"): placementTarget = .group(String(t.dropFirst()))
        case .some(let t): placementTarget = .member(t)
        }
        let template = PlacementRequest(
            limits: ResourceLimits(cpu: footprint.cpu, memory: footprint.memory, disk: footprint.disk, processes: footprint.processes),
            target: placementTarget, placementGroup: rule, policy: try policy.map(parsePolicy))
        let requests = names.map { name -> PlacementRequest in
            var request = template
            request.name = name
            return request
        }
        switch Scheduler.placeMany(requests, members: members, settings: settings, seed: seed) {
        case .success(let batch):
            return zip(names, batch.placements).map { PlannedInstance(name: $0, memberID: $1.memberID, memberName: $1.memberName) }
        case .failure(let refusal):
            throw refusalError(refusal, batch: names.count > 1)
        }
    }

    /// The Scheduler's rule for a stored group (its values were checked when it was created).
    static func rule(_ row: PlacementGroupRow) throws -> PlacementGroupRule {
        guard let kind = PlacementGroupRule.Kind(rawValue: row.policy), let rigor = PlacementGroupRule.Rigor(rawValue: row.rigor),
              let scope = PlacementGroupRule.Scope(rawValue: row.scope) else {
            throw InstancesError.internal("Placement group \(row.name) is stored with unknown values (\(row.policy), \(row.rigor), \(row.scope))")
        }
        return PlacementGroupRule(name: row.name, kind: kind, rigor: rigor, scope: scope)
    }

    static func parsePolicy(_ text: String) throws -> SchedulerPolicy {
        guard let policy = SchedulerPolicy(rawValue: text) else {
            throw InstancesError.invalid("Unknown scheduler policy \"\(text)\": use \(SchedulerPolicy.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return policy
    }

    static func refusalError(_ refusal: BatchRefusal, batch: Bool) -> InstancesError {
        let text = batch ? refusal.description : refusal.refusal.description
        switch refusal.refusal.problem {
        case .noSuchMember, .noSuchGroup: return InstancesError.notFound(text)
        case .invalidRequest: return InstancesError.invalid(text)
        case .noMembers, .noMemberFits: return InstancesError.conflict(text)
        }
    }
}
