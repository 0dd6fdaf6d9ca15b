import APITypes
import ClusterDB
import Foundation
import Identity
import LXDClient
import Logging
import Membership

/// The leader's heartbeats: every `schedule.interval` it sends the member list to each other
/// member; `OfflineDetector` turns the answers into ONLINE/OFFLINE and role rebalances.
/// Every member runs the loop; only the current dqlite leader heartbeats.
public struct Heartbeater: Sendable {
    let cluster: ClusterController
    let memberID: Int64
    let schedule: HeartbeatSchedule
    let logger: Logger

    public init(cluster: ClusterController, memberID: Int64, threshold: Duration = OfflineDetector.defaultThreshold, logger: Logger) {
        self.cluster = cluster
        self.memberID = memberID
        self.schedule = HeartbeatSchedule(threshold: threshold)
        self.logger = logger
    }

    /// How often a member that does not lead checks whether it leads now: a new leader's
    /// heartbeats, and its offline judgements, start at most this long after its election.
    static let leadershipPoll = Duration.milliseconds(250)

    public func run() async {
        let clock = ContinuousClock()
        let origin = clock.now
        var detector = OfflineDetector(configuration: .init(threshold: schedule.threshold), local: UInt64(memberID))
        var clients: [String: LXDClient] = [:]
        var rows: [MemberRow] = []
        while !Task.isCancelled {
            let roundStart = clock.now
            var next = roundStart + schedule.interval
            do {
                let leader = try await cluster.db.databaseLeader()
                let isLeader = leader?.address == cluster.local.address
                if !isLeader {
                    if detector.isLeader {
                        _ = detector.handle(.leadershipLost)
                        cluster.unresponsive.withLock { $0 = [] }
                    }
                    next = roundStart + min(schedule.interval, Self.leadershipPoll)
                } else {
                    rows = try await cluster.db.transaction { tx in try tx.members() }
                    var directives: [OfflineDetector.Directive] = []
                    if !detector.isLeader {
                        let seed = Dictionary(uniqueKeysWithValues: rows.map { (UInt64($0.id), $0.state != .offline) })
                        // Everyone counts as heard when the old leader's last heartbeat came, not
                        // now: a dead old leader has been silent since about then (so it shows
                        // OFFLINE a threshold after its death, not after the election), and the
                        // live members answer the round that follows at once. An older heartbeat
                        // (this member led before) says nothing about the others: then now.
                        let now = clock.now
                        let heard = cluster.lastLeaderHeartbeat.withLock { $0 }
                            .flatMap { now - $0 < schedule.threshold / 2 && $0 >= origin ? $0 : nil } ?? now
                        directives += detector.handle(.leadershipAcquired(at: heard - origin, members: seed))
                    }
                    for row in rows where detector.members[UInt64(row.id)] == nil {
                        directives += detector.handle(.memberAdded(UInt64(row.id), at: clock.now - origin, online: row.state != .offline))
                    }
                    for id in detector.members.keys where !rows.contains(where: { UInt64($0.id) == id }) {
                        directives += detector.handle(.memberRemoved(id))
                    }
                    let peers = cluster.directory.all
                    let results = await beat(peers.filter { $0.address != cluster.local.address }, clients: &clients)
                    let silent = Set(results.compactMap { address, answeredAt in
                        answeredAt == nil ? rows.first(where: { $0.address == address }).map { UInt64($0.id) } : nil
                    })
                    cluster.unresponsive.withLock { $0 = silent }
                    for (address, answeredAt) in results {
                        guard let row = rows.first(where: { $0.address == address }) else { continue }
                        // A success counts from when the answer came, not from the end of the round.
                        directives += detector.handle(answeredAt.map { .heartbeatSucceeded(UInt64(row.id), at: $0 - origin) }
                                                      ?? .heartbeatFailed(UInt64(row.id), at: clock.now - origin))
                    }
                    directives += detector.handle(.tick(at: clock.now - origin))
                    try await apply(directives, rows: rows)
                    // Joins need promotions even when no status changed. In the background: a
                    // promotion waits for the member to catch up, and heartbeats must go on meanwhile.
                    cluster.rebalanceInBackground()
                }
            } catch {
                logger.debug("heartbeat round failed", metadata: ["error": "\(error)"])
            }
            // Between rounds, judge a silent member exactly when its threshold runs out rather
            // than at the next round (which would add up to a whole interval to the detection).
            while detector.isLeader, !Task.isCancelled, let due = detector.nextDeadline.map({ origin + $0 }), due < next {
                try? await Task.sleep(until: due, clock: clock)
                let directives = detector.handle(.tick(at: clock.now - origin))
                guard !directives.isEmpty else { break }
                do {
                    try await apply(directives, rows: rows)
                    cluster.rebalanceInBackground()
                } catch {
                    logger.debug("offline status update failed", metadata: ["error": "\(error)"])
                    break
                }
            }
            try? await Task.sleep(until: next, clock: clock)
        }
        for client in clients.values { await client.transport.shutdown() }
    }

    /// Keeps the peer directory in step with the database, whichever member admitted a newcomer:
    /// until this member knows the newcomer's certificate, their database links are refused.
    public func refreshPeers() async {
        while !Task.isCancelled {
            do {
                try await cluster.refreshPeers()
            } catch {
                logger.debug("peer list refresh failed", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: .milliseconds(500))
        }
    }

    private func apply(_ directives: [OfflineDetector.Directive], rows: [MemberRow]) async throws {
        for directive in directives {
            switch directive {
            case .markOffline(let id), .markOnline(let id):
                let online = if case .markOnline = directive { true } else { false }
                let name = rows.first { UInt64($0.id) == id }?.name ?? "\(id)"
                logger.notice(online ? "member back online" : "member offline", metadata: ["peer": "\(name)"])
                // An EVACUATED member keeps that state through an outage (ClusterDB.updateMemberLiveness).
                try await cluster.db.transaction { tx in try tx.updateMemberLiveness(id: Int64(id), online: online) }
            case .rebalanceRoles:
                break // done after every round anyway
            }
        }
    }

    /// Heartbeats every peer at once and returns when all have answered or the timeout passed
    /// (a peer that has not answered by then failed; its request ends with the read timeout).
    private func beat(_ peers: [LocalPeer], clients: inout [String: LXDClient]) async -> [(String, ContinuousClock.Instant?)] {
        let rows = (try? await cluster.db.transaction { tx in try tx.memberPeers() }) ?? []
        let body = ClusterHeartbeat(members: rows.map { ClusterPeerInfo(name: $0.name, address: $0.address, fingerprint: $0.fingerprint, dqliteID: UInt64($0.id)) })
        let (answers, sink) = AsyncStream<(String, ContinuousClock.Instant?)>.makeStream()
        var expected = 0
        for peer in peers where !peer.fingerprint.isEmpty {
            let key = peer.address + "/" + peer.fingerprint
            if clients[key] == nil {
                let ms = Int64(schedule.timeout.components.seconds * 1000 + schedule.timeout.components.attoseconds / 1_000_000_000_000_000)
                if let connector = try? TLSConnector(addresses: [peer.address], serverFingerprint: peer.fingerprint, identity: cluster.identity,
                                                     connectTimeout: .milliseconds(ms)) {
                    // One kept connection per peer: a heartbeat is then one round trip, not a handshake.
                    // The read timeout ends a request to a hung peer with the round.
                    clients[key] = LXDClient(transport: HTTPChannelTransport(connector: connector, maxIdleConnections: 1,
                                                                             idleTimeout: .seconds(20), readTimeout: .milliseconds(ms)))
                }
            }
            guard let client = clients[key] else { continue }
            expected += 1
            Task {
                do {
                    try await client.send(.POST, "/internal/cluster/heartbeat", json: body)
                    sink.yield((peer.address, ContinuousClock.now))
                } catch {
                    // A dropped keep-alive connection must not count twice: the next round reconnects.
                    await client.transport.shutdown()
                    sink.yield((peer.address, nil))
                }
            }
        }
        let timeout = schedule.timeout
        Task {
            try? await Task.sleep(for: timeout)
            sink.finish()
        }
        var answered: [String: ContinuousClock.Instant] = [:]
        var heard = 0
        if expected > 0 {
            for await (address, at) in answers {
                heard += 1
                if let at { answered[address] = at }
                if heard == expected { break }
            }
        }
        sink.finish()
        return peers.map { ($0.address, answered[$0.address]) }
    }
}
