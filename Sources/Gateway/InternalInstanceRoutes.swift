import APITypes
import Hummingbird

extension APIRoutes {
    /// The members-only call by which the member that placed a launch asks the owner to create
    /// the instances.
    func addInternalInstanceRoutes(_ router: Router<Context>) {
        let r = self
        router.post("/internal/instances/materialise") { req, _ in
            let post: InstancesMaterialisePost = try await r.decode(req)
            return Reply.async(try await r.lifecycle.materialise(post))
        }
    }
}
