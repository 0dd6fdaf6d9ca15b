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
            Reply.sync(try await r.instances.placement.memberResources())
        }
        // Placement groups (rules the scheduler applies to instances naming them in `placement.group`).
        router.get("/1.0/placement-groups") { req, _ in
            let groups = try await r.instances.placement.placementGroups()
            let recursion = try req.recursion()
            return recursion >= 1 ? Reply.sync(groups) : Reply.sync(groups.map { "/1.0/placement-groups/\($0.name)" })
        }
        router.post("/1.0/placement-groups") { req, ctx in
            let post: PlacementGroup = try await r.decode(req)
            try await r.instances.placement.createPlacementGroup(post)
            return Reply.sync([String: String]())
        }
        router.get("/1.0/placement-groups/:group") { _, ctx in
            Reply.sync(try await r.instances.placement.placementGroup(ctx.parameters.get("group") ?? ""))
        }
        router.delete("/1.0/placement-groups/:group") { _, ctx in
            try await r.instances.placement.deletePlacementGroup(ctx.parameters.get("group") ?? "")
            return Reply.sync([String: String]())
        }
        router.post("/internal/instances/materialise") { req, ctx in
            let post: InstancesMaterialisePost = try await r.decode(req)
            return Reply.async(try await r.instances.lifecycle.materialise(post))
        }
    }
}
