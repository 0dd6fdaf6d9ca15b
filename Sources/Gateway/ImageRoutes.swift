import APITypes
import HTTPTypes
import Hummingbird

extension APIRoutes {
    /// `/1.0/images`: upload, list, show, delete, export; aliases.
    func addImageRoutes(_ router: Router<Context>) {
        let r = self
        router.get("/1.0/images") { req, _ in
            let recursion = try req.recursion()
            let filter = try req.filter()
            let list = try await r.images.list().filter { filter?.matches(JSONValue(shown: $0)) ?? true }
            if recursion == 0 { return Reply.sync(list.map { "/1.0/images/\($0.fingerprint)" }) }
            return Reply.sync(list)
        }
        router.post("/1.0/images") { req, _ in
            // A JSON body is LXD's other way in: publish an instance or snapshot, or copy an image
            // from a URL or another server. None is built yet: say so rather than read the JSON
            // as a tarball.
            if req.headers[.contentType]?.lowercased().hasPrefix("application/json") == true {
                throw APIError.badRequest("Creating an image from a JSON request (lxc publish, or a copy from a URL or another server) is not supported yet: import an image tarball (lxc image import FILE)")
            }
            let filename = req.headers[HTTPField.Name("X-LXD-filename")!] ?? "image.tar"
            let path = try await req.streamUpload(into: r.uploadDirectory, limit: r.limits.image)
            return Reply.async(try await r.images.importTarball(at: path, filename: filename))
        }
        router.get("/1.0/images/aliases") { req, _ in
            let recursion = try req.recursion()
            let aliases = try await r.images.aliases()
            if recursion == 0 { return Reply.sync(aliases.map { "/1.0/images/aliases/\($0.name)" }) }
            return Reply.sync(aliases)
        }
        router.post("/1.0/images/aliases") { req, _ in
            let post: ImageAliasesPost = try await r.decode(req)
            try await r.images.createAlias(post)
            return Reply.empty()
        }
        router.get("/1.0/images/aliases/:alias") { _, ctx in
            Reply.sync(try await r.images.alias(ctx.parameters.get("alias") ?? ""))
        }
        router.delete("/1.0/images/aliases/:alias") { _, ctx in
            try await r.images.deleteAlias(ctx.parameters.get("alias") ?? "")
            return Reply.empty()
        }
        router.get("/1.0/images/:fingerprint") { _, ctx in
            Reply.sync(try await r.images.get(ctx.parameters.get("fingerprint") ?? ""))
        }
        // Members fetch an image's original tarball from here on first use (members only over
        // HTTPS: see Endpoints). Streamed from disk, not loaded whole.
        router.get("/1.0/images/:fingerprint/export") { _, ctx in
            let path = try await r.images.exportPath(ctx.parameters.get("fingerprint") ?? "")
            let body = try await FileIO().loadFile(path: path, context: ctx)
            return Response(status: .ok, headers: [.contentType: "application/octet-stream"], body: body)
        }
        router.delete("/1.0/images/:fingerprint") { _, ctx in
            Reply.async(try await r.images.delete(ctx.parameters.get("fingerprint") ?? ""))
        }
    }
}
