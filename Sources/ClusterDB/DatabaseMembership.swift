import Dqlite

/// dqlite's own configuration as the leader reports it: which nodes replicate the database, in
/// which role, and which one leads. Not a table: raft keeps it, beside the `members` rows.
public struct DatabaseConfiguration: Sendable, Equatable {
    /// Every node raft knows, with its role.
    public var servers: [DqliteServerInfo]
    /// The leader's node id; nil when the answering node knows no leader.
    public var leader: UInt64?

    public init(servers: [DqliteServerInfo], leader: UInt64?) {
        self.servers = servers
        self.leader = leader
    }

    /// The role of node `id`; nil when raft does not know it (never added, or removed by a recovery).
    public func role(of id: UInt64) -> DqliteRole? {
        servers.first { $0.id == id }?.role
    }
}

/// Raft membership: reading and changing which nodes replicate the database. Each call is one
/// request through a leader connection and is not retried here: raft takes one membership change
/// at a time and refuses another meanwhile (`DqliteError.isMembershipChangeInProgress`), and
/// whether to wait that out is the caller's decision.
extension ClusterDB {
    /// The database's nodes, their roles, and the leader.
    public func databaseConfiguration() async throws -> DatabaseConfiguration {
        try await pool.withConnection { c in DatabaseConfiguration(servers: try c.cluster(), leader: try c.leader()?.id) }
    }

    /// The node that leads the database now, as the node answering sees it.
    public func databaseLeader() async throws -> DqliteServerInfo? {
        try await pool.withConnection { c in try c.leader() }
    }

    /// Adds node `id` at `address` as a spare: it neither votes nor replicates until `assignDatabaseRole`.
    public func addDatabaseNode(id: UInt64, address: String) async throws {
        try await pool.withConnection { c in try c.add(id: id, address: address) }
    }

    /// Removes node `id` from the database's configuration.
    public func removeDatabaseNode(id: UInt64) async throws {
        try await pool.withConnection { c in try c.remove(id: id) }
    }

    /// Gives node `id` a role (promotion or demotion).
    public func assignDatabaseRole(id: UInt64, role: DqliteRole) async throws {
        try await pool.withConnection { c in try c.assign(id: id, role: role) }
    }

    /// Hands the leadership to voter `id`.
    public func transferDatabaseLeadership(to id: UInt64) async throws {
        try await pool.withConnection { c in try c.transfer(to: id) }
    }
}
