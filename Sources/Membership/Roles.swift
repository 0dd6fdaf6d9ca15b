/// A member's dqlite node id. Rows reference members by this integer (DESIGN "Identity").
public typealias MemberID = UInt64

/// A member's database role. Raw values are dqlite's wire numbers (NOTES-dqlite.md:
/// voter 0, standby 1, spare 2; raft.h numbers them differently, so never pass these to raft).
public enum MemberRole: UInt8, Sendable, Hashable, Codable, CaseIterable, CustomStringConvertible {
    /// Votes in elections and counts toward the commit quorum.
    case voter = 0
    /// Replicates the log without voting: a caught-up replacement for a lost voter.
    case standby = 1
    /// Neither replicates nor votes.
    case spare = 2

    public var description: String {
        switch self {
        case .voter: "voter"
        case .standby: "standby"
        case .spare: "spare"
        }
    }
}

/// What the role planner needs to know about one member, as the leader sees it now.
public struct ClusterMember: Sendable, Hashable {
    public var id: MemberID
    public var name: String
    public var role: MemberRole
    public var online: Bool
    /// Answered the leader's latest heartbeat. A member still online (its offline threshold has
    /// not run out) may have stopped answering: raft cannot catch it up, so it is not promoted.
    public var responsive: Bool
    public var failureDomain: String

    public init(id: MemberID, name: String, role: MemberRole, online: Bool, failureDomain: String = "default", responsive: Bool = true) {
        self.id = id
        self.name = name
        self.role = role
        self.online = online
        self.responsive = responsive
        self.failureDomain = failureDomain
    }
}

/// How many members should hold each replicating role.
public struct RoleTargets: Sendable, Hashable {
    /// Upper bound on voters. The planner only ever aims at an odd count (see `RolePlanner`).
    public var maxVoters: Int
    public var maxStandbys: Int

    public init(maxVoters: Int = 3, maxStandbys: Int = 2) {
        self.maxVoters = maxVoters
        self.maxStandbys = maxStandbys
    }

    public static let `default` = RoleTargets()
}

/// One role assignment for the leader to perform (dqlite ASSIGN), in plan order.
public struct RoleChange: Sendable, Hashable, CustomStringConvertible {
    public var id: MemberID
    public var from: MemberRole
    public var to: MemberRole

    public init(id: MemberID, from: MemberRole, to: MemberRole) {
        self.id = id
        self.from = from
        self.to = to
    }

    /// Whether the member moves toward `voter` (voter < standby < spare).
    public var isPromotion: Bool { to.rawValue < from.rawValue }

    public var description: String { "member \(id): \(from) -> \(to)" }
}

/// The ordered changes that move the cluster toward its target roles.
public struct RolePlan: Sendable, Hashable {
    /// Apply strictly in order, one at a time, each after the previous one committed.
    public var changes: [RoleChange]
    /// Why the plan stops short of the target (quorum lost, stale input), or nil.
    public var blocked: String?

    public init(changes: [RoleChange], blocked: String? = nil) {
        self.changes = changes
        self.blocked = blocked
    }
}

/// Whether a member may be removed from the cluster now.
public enum RemovalDecision: Sendable, Hashable {
    case allowed
    /// The removal must not happen; the reason says why and what to do.
    case refused(String)
}

/// Decides database roles. Pure: no I/O, no clock; the leader runs it whenever a member joins,
/// leaves, or changes online state, and performs the changes itself.
///
/// Policy:
/// - Voters: an odd number, at most `maxVoters`, chosen among online members. Two voters
///   tolerate no more failures than one but need both for every commit, so with two online
///   members the second one is a standby rather than a voter.
/// - Standbys: up to `maxStandbys` among the remaining online members; everyone else is a spare,
///   offline members included (the leader counts as online: it is the one planning).
/// - The leader is always a voter and is never demoted.
/// - Selection is greedy: the leader first, then members whose failure domain is not covered yet,
///   then members already holding the role (less churn), then the lowest id.
/// - Order: each voter addition is followed by one voter removal (offline ones first), so a
///   replacement is promoted before the member it replaces is demoted (at most one voter above
///   the target at any time; a cluster already above it removes first); standby promotions come
///   before standby demotions. Every step is checked to keep an online majority of voters both
///   in the configuration that commits it and in the one it produces; the plan stops before the
///   first step that would not, and says why in `blocked`.
/// - No promotion of a member that did not answer the latest heartbeat: raft must catch a
///   promoted member up first and takes no other membership change meanwhile (measured: a
///   promotion of a frozen member held that slot for over a minute, blocking joins and
///   removals); the plan stops before it and retries once the member answers or goes offline.
public enum RolePlanner {
    /// Majority of `voters`: the number of votes a configuration of that size needs to commit.
    public static func quorum(of voters: Int) -> Int { voters / 2 + 1 }

    /// Whether the voters among `members` can still commit (an online majority).
    public static func hasQuorum(_ members: [ClusterMember]) -> Bool {
        let voters = members.filter { $0.role == .voter }
        return !voters.isEmpty && voters.count(where: \.online) >= quorum(of: voters.count)
    }

    /// The role each member of `members` should end up with (every member gets an entry).
    public static func targetRoles(
        members: [ClusterMember], leader: MemberID, targets: RoleTargets = .default
    ) -> [MemberID: MemberRole] {
        let online = members.filter { $0.online || $0.id == leader }
        var voterCount = min(max(targets.maxVoters, 1), online.count)
        if voterCount % 2 == 0 { voterCount -= 1 }

        var covered = Set<String>()
        var result: [MemberID: MemberRole] = [:]
        for m in members { result[m.id] = .spare }

        var pool = online
        if let l = pool.firstIndex(where: { $0.id == leader }) {
            let l = pool.remove(at: l)
            covered.insert(l.failureDomain)
            result[l.id] = .voter
            voterCount -= 1
        }
        let voters = pickGreedy(from: &pool, count: voterCount, covered: &covered,
                                preference: [.voter, .standby, .spare])
        for v in voters { result[v.id] = .voter }
        let standbys = pickGreedy(from: &pool, count: max(targets.maxStandbys, 0), covered: &covered,
                                  preference: [.standby, .voter, .spare])
        for s in standbys { result[s.id] = .standby }
        return result
    }

    /// Picks up to `count` members one by one: uncovered failure domain first, then the current
    /// role's position in `preference`, then the lowest id. Removes the picked ones from `pool`.
    private static func pickGreedy(
        from pool: inout [ClusterMember], count: Int, covered: inout Set<String>, preference: [MemberRole]
    ) -> [ClusterMember] {
        var picked: [ClusterMember] = []
        while picked.count < count, !pool.isEmpty {
            func key(_ m: ClusterMember) -> (Int, Int, MemberID) {
                (covered.contains(m.failureDomain) ? 1 : 0, preference.firstIndex(of: m.role) ?? preference.count, m.id)
            }
            var best = 0
            for i in pool.indices.dropFirst() where key(pool[i]) < key(pool[best]) { best = i }
            let m = pool.remove(at: best)
            covered.insert(m.failureDomain)
            picked.append(m)
        }
        return picked
    }

    /// The ordered role changes that move `members` toward `targets`.
    public static func plan(members: [ClusterMember], leader: MemberID, targets: RoleTargets = .default) -> RolePlan {
        if Set(members.map(\.id)).count != members.count {
            return RolePlan(changes: [], blocked: "member list has duplicate ids: refusing to plan on inconsistent input")
        }
        guard let leaderMember = members.first(where: { $0.id == leader }) else {
            return RolePlan(changes: [], blocked: "leader \(leader) is not in the member list: refresh the list and plan again")
        }
        guard leaderMember.role == .voter else {
            return RolePlan(changes: [], blocked: "leader \(leaderMember.name) is listed as \(leaderMember.role), not voter: the member list is stale, refresh it")
        }

        let target = targetRoles(members: members, leader: leader, targets: targets)
        let byID = Dictionary(uniqueKeysWithValues: members.map { ($0.id, $0) })

        // Pair each voter addition with one removal; offline voters are removed first.
        let voterAdds = members.filter { $0.role != .voter && target[$0.id] == .voter }
            .sorted { $0.id < $1.id }
        let voterDrops = members.filter { $0.role == .voter && target[$0.id] != .voter }
            .sorted { ($0.online ? 1 : 0, $0.id) < ($1.online ? 1 : 0, $1.id) }
        var ordered: [RoleChange] = []
        var adds = voterAdds[...], drops = voterDrops[...]
        var voterCount = members.count(where: { $0.role == .voter })
        let targetVoters = target.values.count(where: { $0 == .voter })
        while !adds.isEmpty || !drops.isEmpty {
            // Promote first, unless that would go more than one above the target (a cluster
            // that already has too many voters shrinks first).
            let addFirst = voterCount < targetVoters + 1 || drops.isEmpty
            for step in addFirst ? [true, false] : [false, true] {
                if step, let a = adds.popFirst() {
                    ordered.append(RoleChange(id: a.id, from: a.role, to: .voter))
                    voterCount += 1
                } else if !step, let d = drops.popFirst() {
                    ordered.append(RoleChange(id: d.id, from: .voter, to: target[d.id]!))
                    voterCount -= 1
                }
            }
        }
        let nonVoter = members.filter { $0.role != .voter && target[$0.id] != .voter && target[$0.id] != $0.role }
            .map { RoleChange(id: $0.id, from: $0.role, to: target[$0.id]!) }
        ordered += nonVoter.filter(\.isPromotion).sorted { $0.id < $1.id }
        ordered += nonVoter.filter { !$0.isPromotion }.sorted { $0.id < $1.id }

        // Simulate and stop at the first step that would lose (or needs) a quorum we don't have.
        var state = byID
        var accepted: [RoleChange] = []
        for change in ordered {
            if change.isPromotion, let m = byID[change.id], !m.responsive {
                return RolePlan(changes: accepted, blocked: "\(m.name) did not answer the last heartbeat: not promoting it to \(change.to) until it does (raft would wait for it to catch up, holding every other membership change)")
            }
            let before = votersState(state)
            guard before.online >= quorum(of: before.total) else {
                return RolePlan(changes: accepted, blocked: "only \(before.online) of \(before.total) voters are online, below quorum: no role change can commit; restart voters or recover from quorum loss")
            }
            state[change.id]!.role = change.to
            let after = votersState(state)
            guard after.total > 0, after.online >= quorum(of: after.total) else {
                let name = byID[change.id]!.name
                return RolePlan(changes: accepted, blocked: "changing \(name) to \(change.to) would leave \(after.online) of \(after.total) voters online, below quorum: stopped before it")
            }
            accepted.append(change)
        }
        return RolePlan(changes: accepted)
    }

    private static func votersState(_ state: [MemberID: ClusterMember]) -> (total: Int, online: Int) {
        let voters = state.values.filter { $0.role == .voter }
        return (voters.count, voters.count(where: \.online))
    }

    /// `members` with `changes` applied (for the caller's bookkeeping and for tests).
    public static func apply(_ changes: [RoleChange], to members: [ClusterMember]) -> [ClusterMember] {
        var result = members
        for c in changes {
            if let i = result.firstIndex(where: { $0.id == c.id }) { result[i].role = c.to }
        }
        return result
    }

    /// Whether removing member `id` is safe now. `--force` handling is the caller's business.
    public static func canRemove(_ id: MemberID, members: [ClusterMember], leader: MemberID) -> RemovalDecision {
        guard let m = members.first(where: { $0.id == id }) else {
            return .refused("no member with id \(id): check `cluster list`")
        }
        let voters = members.filter { $0.role == .voter }
        let onlineVoters = voters.count(where: \.online)
        if m.role == .voter && voters.count == 1 {
            return .refused("member \(m.name) is the last voter: the cluster database would have no voter left; delete the cluster instead")
        }
        if id == leader {
            return .refused("member \(m.name) is the database leader: transfer leadership to another voter first, then remove it")
        }
        guard onlineVoters >= quorum(of: voters.count) else {
            return .refused("only \(onlineVoters) of \(voters.count) voters are online, below quorum: the removal could not commit; bring voters back or recover from quorum loss")
        }
        if m.role == .voter {
            let remaining = voters.count - 1
            let remainingOnline = onlineVoters - (m.online ? 1 : 0)
            if remainingOnline < quorum(of: remaining) {
                return .refused("removing voter \(m.name) would leave \(remainingOnline) of \(remaining) voters online, below quorum: bring an offline voter back first")
            }
        }
        return .allowed
    }
}

/// When the leader may try a role change again after raft refused it. Raft refuses a change while
/// another one runs and gives no hint how long that takes; a refused change retried every
/// heartbeat round would compete with removals and admissions for raft's single change slot, so
/// each consecutive refusal of the same change doubles the wait, up to `maxDelay`. Pure: the
/// caller passes the time (any monotonic origin).
public struct RoleChangeBackoff: Sendable {
    public var firstDelay: Duration
    public var maxDelay: Duration
    private var refused: [RoleChange: (count: Int, retryAt: Duration)] = [:]

    public init(firstDelay: Duration = .seconds(2), maxDelay: Duration = .seconds(8)) {
        self.firstDelay = firstDelay
        self.maxDelay = maxDelay
    }

    /// nil when `change` may be tried at `now`, else when it may.
    public func retryAt(_ change: RoleChange, now: Duration) -> Duration? {
        guard let r = refused[change], now < r.retryAt else { return nil }
        return r.retryAt
    }

    /// Records a refusal at `now`; returns how long the change now waits.
    @discardableResult
    public mutating func refused(_ change: RoleChange, now: Duration) -> Duration {
        let count = (refused[change]?.count ?? 0) + 1
        var delay = firstDelay
        for _ in 1..<count where delay < maxDelay { delay *= 2 }
        delay = min(delay, maxDelay)
        refused[change] = (count, now + delay)
        return delay
    }

    /// The change committed: its refusals are forgotten.
    public mutating func succeeded(_ change: RoleChange) {
        refused[change] = nil
    }

    /// Forgets refusals of changes no longer planned (the cluster changed under them).
    public mutating func keepOnly(_ planned: [RoleChange]) {
        let keep = Set(planned)
        refused = refused.filter { keep.contains($0.key) }
    }
}
