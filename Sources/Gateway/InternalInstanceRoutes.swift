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
