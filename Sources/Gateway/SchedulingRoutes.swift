import APITypes
import Hummingbird

extension APIRoutes {
    /// Scheduling: members' capacity and allocation, and placement groups (rules the scheduler
    /// applies to instances naming them in `placement.group`).
    func addSchedulingRoutes(_ router: Router<Context>) {
        let r = self
        // Extension `cluster_member_resources`.
        router.get("/1.0/cluster/resources") { _, _ in
            Reply.sync(try await r.scheduling.memberResources())
        }
        router.get("/1.0/placement-groups") { req, _ in
            let groups = try await r.scheduling.placementGroups()
            let recursion = try req.recursion()
            return recursion >= 1 ? Reply.sync(groups) : Reply.sync(groups.map { "/1.0/placement-groups/\($0.name)" })
        }
        router.post("/1.0/placement-groups") { req, _ in
            let post: PlacementGroup = try await r.decode(req)
            try await r.scheduling.createPlacementGroup(post)
            return Reply.sync([String: String]())
        }
        router.get("/1.0/placement-groups/:group") { _, ctx in
            Reply.sync(try await r.scheduling.placementGroup(ctx.parameters.get("group") ?? ""))
        }
        router.delete("/1.0/placement-groups/:group") { _, ctx in
            try await r.scheduling.deletePlacementGroup(ctx.parameters.get("group") ?? "")
            return Reply.sync([String: String]())
        }
    }
}
