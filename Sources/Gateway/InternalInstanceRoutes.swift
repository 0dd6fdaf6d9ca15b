import APITypes
import Hummingbird
import Instances

extension APIRoutes {
    /// Scheduling: members' capacity and allocation, and the members-only call by which the member
    /// that placed a launch asks the owner to create the instances.
    func addSchedulingRoutes(_ router: Router<Context>) {
        let r = self
        // Extension `cluster_member_resources`.
        router.get("/1.0/cluster/resources") { _, _ in
            try await handle { Reply.sync(try await r.instances.memberResources()) }
        }
        // Placement groups (rules the scheduler applies to instances naming them in `placement.group`).
        router.get("/1.0/placement-groups") { req, _ in
            try await handle {
                let groups = try await r.instances.placementGroups()
                let recursion = req.uri.queryParameters.get("recursion").flatMap(Int.init) ?? 0
                return recursion >= 1 ? Reply.sync(groups) : Reply.sync(groups.map { "/1.0/placement-groups/\($0.name)" })
            }
        }
        router.post("/1.0/placement-groups") { req, ctx in
            try await handle {
                let post: PlacementGroup = try await r.decode(req, ctx)
                try await r.instances.createPlacementGroup(post)
                return Reply.sync([String: String]())
            }
        }
        router.get("/1.0/placement-groups/:group") { _, ctx in
            try await handle { Reply.sync(try await r.instances.placementGroup(ctx.parameters.get("group") ?? "")) }
        }
        router.delete("/1.0/placement-groups/:group") { _, ctx in
            try await handle {
                try await r.instances.deletePlacementGroup(ctx.parameters.get("group") ?? "")
                return Reply.sync([String: String]())
            }
        }
        router.post("/internal/instances/materialise") { req, ctx in
            try await handle {
                try await r.requireMember(ctx)
                let post: InstancesMaterialisePost = try await r.decode(req, ctx)
                return Reply.async(try await r.instances.materialise(post))
            }
        }
    }

    /// The caller is another member (its certificate is a member's) or root on the unix socket.
    func requireMember(_ ctx: Context) async throws {
        switch ctx.caller {
        case .local:
            return
        case .trusted(let fingerprint):
            if let cluster, await cluster.isMember(fingerprint: fingerprint) { return }
        case .untrusted:
            break
        }
        throw APIError.forbidden("only cluster members may call this endpoint")
    }
}
