import APITypes
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// One cluster member as `GET /1.0/cluster/members?recursion=1` reports it.
public struct ClusterMemberRecord: Codable, Sendable, Equatable {
    public var serverName: String
    public var url: String
    public var database: String
    public var status: String
    public var message: String
    public var failureDomain: String
    public var fingerprint: String?
    public var config: [String: String]?
    public var roles: [String]?

    enum CodingKeys: String, CodingKey {
        case url, database, status, message, fingerprint, config, roles
        case serverName = "server_name"
        case failureDomain = "failure_domain"
    }
}

/// `GET /1.0/cluster`.
public struct ClusterInfoRecord: Codable, Sendable, Equatable {
    public var serverName: String
    public var enabled: Bool

    enum CodingKeys: String, CodingKey {
        case enabled
        case serverName = "server_name"
    }

    public init(serverName: String, enabled: Bool) {
        self.serverName = serverName
        self.enabled = enabled
    }
}

/// `PUT /1.0/cluster/members/NAME` (LXD's shape).
public struct ClusterMemberUpdate: Codable, Sendable, Equatable {
    public var description: String
    public var config: [String: String]
    public var failureDomain: String
    public var roles: [String]
    public var groups: [String]

    enum CodingKeys: String, CodingKey {
        case description, config, roles, groups
        case failureDomain = "failure_domain"
    }

    public init(description: String = "", config: [String: String], failureDomain: String, roles: [String] = [], groups: [String] = []) {
        self.description = description
        self.config = config
        self.failureDomain = failureDomain
        self.roles = roles
        self.groups = groups
    }
}

/// `/1.0/cluster`: membership.
extension LXDClient {
    /// A sync request with a JSON body whose metadata decodes as `T`.
    public func call<T: Decodable, Body: Encodable>(_ method: RequestMethod, _ path: String, json body: Body, as type: T.Type) async throws -> T {
        try Envelope.decodeSync(T.self, from: try await transport.send(HTTPRequest(method, path, body: try Self.encode(body))))
    }

    public func clusterMembers() async throws -> [ClusterMemberRecord] {
        try await get([ClusterMemberRecord].self, "/1.0/cluster/members", query: [QueryItem("recursion", "1")])
    }

    public func clusterMember(_ name: String) async throws -> ClusterMemberRecord {
        try await get(ClusterMemberRecord.self, "/1.0/cluster/members/\(name)")
    }

    /// Asks a member for a join token for a new member called `name`.
    public func createJoinToken(name: String) async throws -> String {
        struct Post: Encodable { var server_name: String }
        struct Reply: Decodable { var token: String }
        return try await call(.POST, "/1.0/cluster/members", json: Post(server_name: name), as: Reply.self).token
    }

    /// Makes the agent behind this client (its unix socket) join the cluster the token names.
    public func joinCluster(token: String) async throws {
        struct Put: Encodable { var cluster_token: String }
        try await send(.PUT, "/1.0/cluster", json: Put(cluster_token: token))
    }

    public func clusterInfo() async throws -> ClusterInfoRecord {
        try await get(ClusterInfoRecord.self, "/1.0/cluster")
    }

    /// Enables clustering on the agent behind this client (its unix socket), naming it `serverName`.
    public func enableCluster(serverName: String) async throws {
        struct Put: Encodable { var server_name: String; var enabled: Bool }
        try await send(.PUT, "/1.0/cluster", json: Put(server_name: serverName, enabled: true))
    }

    /// Replaces a member's config and failure domain.
    public func updateClusterMember(_ name: String, _ update: ClusterMemberUpdate) async throws {
        try await send(.PUT, "/1.0/cluster/members/\(name)", json: update)
    }

    /// Removes a member; `force` also drops the instances of an OFFLINE member from the database.
    public func removeClusterMember(_ name: String, force: Bool = false) async throws {
        try Envelope.checkSync(try await transport.send(HTTPRequest(.DELETE, "/1.0/cluster/members/\(name)", query: force ? [QueryItem("force", "1")] : [])))
    }
}
