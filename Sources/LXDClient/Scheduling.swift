import APITypes

/// Scheduling: batch launches, cluster-wide server config, members' capacity and allocation.
extension LXDClient {
    /// `POST /1.0/instances` with the `instances_create_count` extension; returns the operation
    /// as created (follow it with `operation(_:)` for progress, or `wait(operation:)`).
    public func startCreatingInstances(_ post: InstancesBatchPost, target: String? = nil) async throws -> APITypes.Operation {
        try await start(.POST, APIPath.instances, query: target.map { [QueryItem("target", $0)] } ?? [], json: post)
    }

    /// Each member's capacity and allocation (extension `cluster_member_resources`).
    public func clusterResources() async throws -> [MemberResources] {
        try await get([MemberResources].self, "/1.0/cluster/resources")
    }

    /// The server's config map (`GET /1.0`).
    public func serverConfig() async throws -> [String: String] {
        try await get(Server.self, APIPath.server).config
    }

    /// Merges keys into the cluster-wide server config (`PATCH /1.0`); an empty value unsets a key.
    public func updateServerConfig(_ config: [String: String]) async throws {
        try await send(.PATCH, APIPath.server, json: ServerPut(config: config))
    }

    public func placementGroups() async throws -> [PlacementGroup] {
        try await get([PlacementGroup].self, "/1.0/placement-groups", query: [QueryItem("recursion", "1")])
    }

    public func createPlacementGroup(_ group: PlacementGroup) async throws {
        try await send(.POST, "/1.0/placement-groups", json: group)
    }

    public func deletePlacementGroup(_ name: String) async throws {
        try Envelope.checkSync(try await transport.send(HTTPRequest(.DELETE, "/1.0/placement-groups/\(PercentEncoding.escape(name))")))
    }
}
