/// Decides when members go offline and come back, from the leader's heartbeat results.
///
/// A pure state machine in the SWIM style: the shell feeds events and performs the directives
/// it gets back (write the status to ClusterDB, run `RolePlanner`). It reads no clock: every
/// event carries `at`, the leader's monotonic time (e.g. `ContinuousClock` elapsed since its own
/// election). Wall-clock times of different members are never compared (DESIGN "Time").
///
/// Rules:
/// - A member is offline once it has been silent for the full threshold:
///   `at - lastSuccess >= threshold` (so exactly at 5 s with the default, not before).
/// - Right after `leadershipAcquired(at:members:)` every member counts as heard from at that
///   instant: a new leader has no history, so each member gets a whole threshold before being
///   declared offline.
/// - The local member (the leader itself) is never declared offline; if it was recorded
///   offline, winning the election marks it online.
/// - An offline member is marked online after `recoverAfterSuccesses` consecutive successful
///   heartbeats; a failure in between restarts the count, so a flapping link does not flip the
///   status (and the roles) back and forth on every lucky heartbeat.
/// - Any status change, join or removal is followed by one `.rebalanceRoles` at the end of the batch.
/// - While not leader, every event except `leadershipAcquired` is ignored (membership changes
///   included: pass the database's member list with `leadershipAcquired(at:members:)`).
public struct OfflineDetector: Sendable {
    public struct Configuration: Sendable, Hashable {
        /// `cluster.offline_threshold`: silence after which a member is offline.
        public var threshold: Duration
        /// Consecutive successful heartbeats that bring an offline member back online (>= 1).
        public var recoverAfterSuccesses: Int

        public init(threshold: Duration = OfflineDetector.defaultThreshold, recoverAfterSuccesses: Int = 2) {
            self.threshold = threshold
            self.recoverAfterSuccesses = recoverAfterSuccesses
        }
    }

    /// LXD uses 20 s; ours is shorter so a dead member shows OFFLINE within the 6 s target.
    public static let defaultThreshold: Duration = .seconds(5)

    public enum Event: Sendable, Hashable {
        /// This member became leader at `at` (its own monotonic clock, usually zero).
        /// `members` (id -> recorded online status, from the database) replaces the known set;
        /// nil keeps the set from an earlier term.
        case leadershipAcquired(at: Duration, members: [MemberID: Bool]? = nil)
        /// This member is no longer leader: stop judging.
        case leadershipLost
        /// A member joined, or is known from the database (`online` is its recorded status).
        case memberAdded(MemberID, at: Duration, online: Bool = true)
        case memberRemoved(MemberID)
        case heartbeatSucceeded(MemberID, at: Duration)
        case heartbeatFailed(MemberID, at: Duration)
        /// Time passed; evaluate every member.
        case tick(at: Duration)
    }

    public enum Directive: Sendable, Hashable {
        case markOffline(MemberID)
        case markOnline(MemberID)
        /// Run `RolePlanner` with the updated statuses.
        case rebalanceRoles
    }

    /// What the detector knows about one member.
    public struct MemberStatus: Sendable, Hashable {
        /// The status last reported through a directive (or given in `memberAdded`).
        public var online: Bool
        /// Leader time of the last successful heartbeat, or of the leadership start if later.
        public var lastHeard: Duration
        /// Consecutive successes since the member went offline.
        public var successStreak: Int
    }

    public let configuration: Configuration
    /// This member's own id: never declared offline.
    public let local: MemberID?
    public private(set) var isLeader = false
    public private(set) var members: [MemberID: MemberStatus] = [:]

    public init(configuration: Configuration = Configuration(), local: MemberID? = nil) {
        self.configuration = configuration
        self.local = local
    }

    /// The earliest leader time at which a currently-online member could be declared offline,
    /// so the shell can schedule its next tick; nil when not leader or nobody is online.
    public var nextDeadline: Duration? {
        guard isLeader else { return nil }
        return members.filter { $0.value.online && $0.key != local }
            .map { $0.value.lastHeard + configuration.threshold }.min()
    }

    public mutating func handle(_ event: Event) -> [Directive] {
        if case .leadershipAcquired(let at, let seed) = event {
            isLeader = true
            if let seed {
                members = seed.mapValues { MemberStatus(online: $0, lastHeard: at, successStreak: 0) }
            }
            for id in members.keys {
                members[id]!.lastHeard = at
                members[id]!.successStreak = 0
            }
            if let local, members[local]?.online == false {
                members[local]!.online = true
                return [.markOnline(local), .rebalanceRoles]
            }
            return []
        }
        guard isLeader else { return [] }

        var directives: [Directive] = []
        var rebalance = false
        switch event {
        case .leadershipAcquired:
            break // handled above
        case .leadershipLost:
            isLeader = false
        case .memberAdded(let id, let at, let online):
            if members[id] == nil {
                members[id] = MemberStatus(online: online, lastHeard: at, successStreak: 0)
                rebalance = true
            }
        case .memberRemoved(let id):
            if members.removeValue(forKey: id) != nil { rebalance = true }
        case .heartbeatSucceeded(let id, let at):
            guard var m = members[id] else { break }
            // Results of concurrent heartbeats can arrive out of order: never move time back.
            m.lastHeard = max(m.lastHeard, at)
            if !m.online {
                m.successStreak += 1
                if m.successStreak >= max(configuration.recoverAfterSuccesses, 1) {
                    m.online = true
                    m.successStreak = 0
                    directives.append(.markOnline(id))
                    rebalance = true
                }
            }
            members[id] = m
        case .heartbeatFailed(let id, let at):
            guard members[id] != nil else { break }
            members[id]!.successStreak = 0
            if expire(id, at: at) {
                directives.append(.markOffline(id))
                rebalance = true
            }
        case .tick(let at):
            for id in members.keys.sorted() where expire(id, at: at) {
                directives.append(.markOffline(id))
                rebalance = true
            }
        }
        if rebalance { directives.append(.rebalanceRoles) }
        return directives
    }

    /// Marks `id` offline if it is online and silent for the threshold at `at`; true if it changed.
    private mutating func expire(_ id: MemberID, at: Duration) -> Bool {
        guard id != local, let m = members[id], m.online, at - m.lastHeard >= configuration.threshold else { return false }
        members[id]!.online = false
        members[id]!.successStreak = 0
        return true
    }
}

/// How often the leader heartbeats members and how long it waits for each answer.
public struct HeartbeatSchedule: Sendable, Hashable {
    public var threshold: Duration
    /// Time between heartbeat rounds: a quarter of the threshold, so a member gets about four
    /// chances before it is declared offline; at least 100 ms (don't spin), at most 10 s, and
    /// never more than half the threshold.
    public var interval: Duration
    /// Per-member timeout of one heartbeat: 80% of the interval, so a round finishes before
    /// the next one starts and a hung member can't stall the others.
    public var timeout: Duration

    public init(threshold: Duration = OfflineDetector.defaultThreshold) {
        self.threshold = threshold
        var interval = min(max(threshold / 4, .milliseconds(100)), .seconds(10))
        interval = min(interval, threshold / 2)
        self.interval = interval
        self.timeout = interval * 4 / 5
    }

    public enum ConfigError: Error, Sendable, Hashable, CustomStringConvertible {
        case invalidThreshold(String)

        public var description: String {
            switch self {
            case .invalidThreshold(let v):
                "invalid cluster.offline_threshold \"\(v)\": expected a number of seconds between 1 and 3600, e.g. \"5\""
            }
        }
    }

    /// Parses `cluster.offline_threshold` (seconds; decimals allowed); nil or empty means the default.
    public static func threshold(fromConfig value: String?) throws(ConfigError) -> Duration {
        guard let value, !value.isEmpty else { return OfflineDetector.defaultThreshold }
        guard let seconds = Double(value), seconds.isFinite, seconds >= 1, seconds <= 3600 else {
            throw .invalidThreshold(value)
        }
        return .milliseconds(Int64((seconds * 1000).rounded()))
    }
}
