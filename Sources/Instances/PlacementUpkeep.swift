import APITypes
import ClusterDB
import Foundation
import Logging
import Runtime

/// Reports this member's capacity (Runtime's host probe) into ClusterDB at start and whenever
/// the probe changes; the agent runs it as one of its background jobs.
public struct CapacityReporter: Sendable {
    let placement: PlacementService
    let dataDir: String
    let logger: Logger
    var interval: Duration = .seconds(60)

    public init(placement: PlacementService, dataDir: String, logger: Logger) {
        self.placement = placement
        self.dataDir = dataDir
        self.logger = logger
    }

    public func run() async {
        var last: ReportedCapacity?
        while !Task.isCancelled {
            let now = Self.reported(HostProbe.capacity(dataDir: dataDir))
            if now != last {
                do {
                    try await placement.reportCapacity(now)
                    last = now
                    logger.info("capacity reported", metadata: [
                        "cpu": "\(now.cpu)", "memory": "\(now.memory)", "disk": "\(now.disk.map(String.init) ?? "-")",
                        "processes": "\(now.processes.map(String.init) ?? "-")",
                    ])
                } catch {
                    logger.warning("cannot report capacity; retrying", metadata: ["error": "\(error)"])
                    try? await Task.sleep(for: .seconds(2))
                    continue
                }
            }
            try? await Task.sleep(for: interval)
        }
    }

    static func reported(_ host: HostCapacity) -> ReportedCapacity {
        ReportedCapacity(cpu: Double(host.cpuCores), memory: host.memoryBytes, disk: host.diskBytes, processes: host.processes)
    }
}

/// Removes instance rows placed on this member that no launch ever asked it to create; the
/// agent runs it as one of its background jobs.
public struct AbandonedPlacementSweeper: Sendable {
    let placement: PlacementService
    let logger: Logger
    /// Far above the few seconds between a launch's insert and its request to the owner (which
    /// itself gives up after Cluster's `MemberClient.acceptTimeout`), so a live launch is never cut.
    var grace: Duration = .seconds(120)
    var interval: Duration = .seconds(60)

    public init(placement: PlacementService, logger: Logger) {
        self.placement = placement
        self.logger = logger
    }

    public func run() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: interval)
            do {
                let removed = try await placement.removeAbandonedPlacements(grace: grace)
                if !removed.isEmpty {
                    logger.warning("removed instance rows whose launch never asked this member to create them",
                                   metadata: ["instances": "\(removed.prefix(10).joined(separator: ","))", "count": "\(removed.count)"])
                }
            } catch {
                logger.debug("abandoned placement sweep failed; next round retries", metadata: ["error": "\(error)"])
            }
        }
    }
}
