import Foundation
import APITypes
import ClusterDB
import Scheduler

/// Where instances may go: the cluster-wide server config (`scheduler.*`), the members'
/// capacity and allocation, placement groups (PlacementGroups.swift), and the sweep of
/// placements nobody claimed.
public struct PlacementService: Sendable {
    let context: InstanceContext

    /// The server config stored in ClusterDB (`GET /1.0` shows it).
    public func serverConfig() async throws -> [String: String] {
        try await context.db.transaction { tx in try tx.allConfig() }
    }

    /// `PUT /1.0` (`replace`: keys not given are unset) or `PATCH /1.0` (merge; `""` unsets).
    /// Every key is validated before anything is written.
    public func updateServerConfig(_ config: [String: String], replace: Bool) async throws {
        for (key, value) in config { try ServerConfigKeys.validate(key, value) }
        try await context.db.transaction { tx in
            if replace {
                for key in try tx.allConfig().keys where config[key] == nil { try tx.setConfig(key, nil) }
            }
            for (key, value) in config { try tx.setConfig(key, value.isEmpty ? nil : value) }
        }
        context.logger.info("server config updated", metadata: ["keys": "\(config.keys.sorted())"])
    }

    /// Each member's reported and effective capacity and what its instances take (`GET /1.0/cluster/resources`).
    public func memberResources() async throws -> [MemberResources] {
        let (members, rows, reported, config) = try await context.db.transaction { tx in
            (try PlacementPlanner.snapshots(tx), try tx.members(), try tx.reportedCapacities(), try tx.allConfig())
        }
        let ratio = PlacementPlanner.settings(config).cpuOvercommitRatio
        return zip(members, rows).map { snapshot, row in
            MemberResources(
                serverName: snapshot.name, status: row.state, failureDomain: snapshot.failureDomain,
                schedulerInstance: snapshot.instanceMode.rawValue,
                reported: reported[row.id],
                capacity: ResourceFigures(cpu: snapshot.capacity.cpu, memory: snapshot.capacity.memory,
                                          disk: snapshot.capacity.disk, processes: snapshot.capacity.processes),
                allocated: ResourceFigures(cpu: snapshot.allocated.cpu, memory: snapshot.allocated.memory,
                                           disk: snapshot.allocated.disk, processes: snapshot.allocated.processes),
                instances: snapshot.instanceCount, cpuOvercommit: ratio,
                idmap: row.id == context.member.id ? IDMapSummary(start: context.idmaps.start, size: context.idmaps.size, instances: context.idmaps.instances) : nil)
        }
    }

    /// Removes rows placed here that were never claimed within `grace` (see `claimInstances`):
    /// whoever placed them died before asking this member to create them. Returns their names.
    public func removeAbandonedPlacements(grace: Duration) async throws -> [String] {
        let id = context.member.id
        let before = Date().addingTimeInterval(-Double(grace.components.seconds))
        return try await context.db.idempotentTransaction { tx in try tx.deleteAbandonedPlacements(memberID: id, placedBefore: before) }
    }

    /// Records what this member offers (the agent probes the host at start and when it changes).
    public func reportCapacity(_ capacity: ReportedCapacity) async throws {
        let id = context.member.id
        try await context.db.transaction { tx in try tx.setReportedCapacity(memberID: id, capacity) }
    }
}
