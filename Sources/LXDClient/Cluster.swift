import APITypes
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// `/1.0/cluster`: membership.
extension LXDClient {
    /// A sync request with a JSON body whose metadata decodes as `T`.
    public func call<T: Decodable, Body: Encodable>(_ method: RequestMethod, _ path: String, json body: Body, as type: T.Type) async throws -> T {
        try Envelope.decodeSync(T.self, from: try await transport.send(HTTPRequest(method, path, body: try Self.encode(body))))
    }

    public func clusterMembers() async throws -> [ClusterMemberInfo] {
        try await get([ClusterMemberInfo].self, "/1.0/cluster/members", query: [QueryItem("recursion", "1")])
    }

    public func clusterMember(_ name: String) async throws -> ClusterMemberInfo {
        try await get(ClusterMemberInfo.self, "/1.0/cluster/members/\(name)")
    }

    /// Asks a member for a join token for a new member called `name`.
    public func createJoinToken(name: String) async throws -> String {
        let op = try await start(.POST, "/1.0/cluster/members", json: ClusterMembersPost(serverName: name))
        guard let token = op.metadata?["token"]?.stringValue else {
            throw APIError(500, "The member issued no join token (its operation's metadata has no \"token\")")
        }
        return token
    }

    /// Makes the agent behind this client (its unix socket) join the cluster the token names.
    public func joinCluster(token: String) async throws {
        try await send(.PUT, "/1.0/cluster", json: ClusterPut(clusterToken: token))
    }

    public func clusterInfo() async throws -> ClusterInfo {
        try await get(ClusterInfo.self, "/1.0/cluster")
    }

    /// Enables clustering on the agent behind this client (its unix socket), naming it `serverName`.
    public func enableCluster(serverName: String) async throws {
        try await send(.PUT, "/1.0/cluster", json: ClusterPut(serverName: serverName, enabled: true))
    }

    /// Replaces a member's config and failure domain.
    public func updateClusterMember(_ name: String, _ update: ClusterMemberPut) async throws {
        try await send(.PUT, "/1.0/cluster/members/\(name)", json: update)
    }

    /// Starts the evacuation (`action` "evacuate", `mode` optional) or restore of a member;
    /// returns its operation as created (follow it with `operation(_:)` for each instance's outcome).
    public func changeClusterMemberState(_ name: String, _ post: ClusterMemberStatePost) async throws -> APITypes.Operation {
        try await start(.POST, "/1.0/cluster/members/\(name)/state", json: post)
    }

    /// Removes a member; `force` also drops the instances of an OFFLINE member from the database.
    public func removeClusterMember(_ name: String, force: Bool = false) async throws {
        try Envelope.checkSync(try await transport.send(HTTPRequest(.DELETE, "/1.0/cluster/members/\(name)", query: force ? [QueryItem("force", "1")] : [])))
    }
}
