import APITypes
import Hummingbird

extension APIRoutes {
    /// `/` and `/1.0`: who the server is, and the cluster-wide server config.
    func addServerRoutes(_ router: Router<Context>) {
        let r = self
        router.get("/") { _, _ in Reply.sync(["/1.0"]) }
        router.get("/1.0") { _, ctx in
            var info = await r.serverInfo()
            info.auth = ctx.caller.isTrusted ? "trusted" : "untrusted"
            // Cluster-wide config is shown to trusted callers only (LXD does the same).
            if ctx.caller.isTrusted, let config = try? await r.scheduling.serverConfig() {
                info.config.merge(config) { $1 }
            }
            return Reply.sync(info)
        }
        router.put("/1.0") { req, _ in
            let put: ServerPut = try await r.decode(req)
            try await r.scheduling.updateServerConfig(put.config, replace: true)
            return Reply.empty()
        }
        router.patch("/1.0") { req, _ in
            let put: ServerPut = try await r.decode(req)
            try await r.scheduling.updateServerConfig(put.config, replace: false)
            return Reply.empty()
        }
    }
}
