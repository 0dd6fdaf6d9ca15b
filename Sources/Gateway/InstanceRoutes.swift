import APITypes
import HTTPTypes
import Hummingbird
import Instances

extension APIRoutes {
    /// `/1.0/instances`: create, read, change, delete; state; exec, console, logs, files.
    func addInstanceRoutes(_ router: Router<Context>) {
        let r = self
        router.get("/1.0/instances") { req, _ in
            let recursion = try req.recursion()
            let filter = try req.filter()
            let list = try await r.lifecycle.list(withState: recursion >= 2)
            if recursion == 0 && filter == nil { return Reply.sync(list.map { "/1.0/instances/\($0.name)" }) }
            let forwarded = req.headers[HTTPField.Name(Forwarding.markerHeader)!] != nil
            // A filter sees what recursion 1 (or 2) shows, statuses from the owners included.
            let all = await r.clusterWide(list, withState: recursion >= 2, forwarded: forwarded)
            let shown = filter.map { f in all.filter { f.matches(JSONValue(shown: $0)) } } ?? all
            if recursion == 0 { return Reply.sync(shown.map { "/1.0/instances/\($0.name)" }) }
            return Reply.sync(shown)
        }
        router.post("/1.0/instances") { req, _ in
            // One body, two views: LXD's fields and our extensions (count, name_prefix, scheduler_policy).
            let (post, extra): (InstancesPost, InstancesCreateOptions) = try await r.decodeTwice(req)
            let options = CreateOptions(
                target: req.uri.queryParameters.get("target").flatMap { $0.isEmpty ? nil : String($0) },
                count: extra.count, namePrefix: extra.namePrefix, policy: extra.schedulerPolicy)
            return Reply.async(try await r.lifecycle.create(post, options: options))
        }
        router.get("/1.0/instances/:name") { req, ctx in
            let recursion = try req.recursion()
            return Reply.sync(try await r.lifecycle.get(try ctx.name(), withState: recursion >= 1))
        }
        router.put("/1.0/instances/:name") { req, ctx in
            let put: InstancePut = try await r.decode(req)
            let name = try ctx.name()
            try await r.lifecycle.update(name, put, replace: true)
            // LXD answers a PUT with an operation, which lxc reads; the change is made by now
            // (a bad one was refused above, with nothing changed), so it is a finished one.
            return Reply.async(await r.operations.start(description: "Updating instance",
                                                        resources: ["instances": ["/1.0/instances/\(name)"]]) { _ in nil })
        }
        router.patch("/1.0/instances/:name") { req, ctx in
            let put: InstancePut = try await r.decode(req)
            try await r.lifecycle.update(try ctx.name(), put, replace: false)
            return Reply.empty()
        }
        router.post("/1.0/instances/:name") { req, ctx in
            let post: InstancePost = try await r.decode(req)
            let target = req.uri.queryParameters.get("target").flatMap { $0.isEmpty ? nil : String($0) }
            return Reply.async(try await Self.dispatch(post, name: try ctx.name(), target: target, to: r.lifecycle))
        }
        router.delete("/1.0/instances/:name") { _, ctx in
            Reply.async(try await r.lifecycle.delete(try ctx.name()))
        }
        router.get("/1.0/instances/:name/state") { _, ctx in
            Reply.sync(try await r.lifecycle.state(try ctx.name()))
        }
        router.put("/1.0/instances/:name/state") { req, ctx in
            let put: InstanceStatePut = try await r.decode(req)
            return Reply.async(try await r.lifecycle.changeState(try ctx.name(), put))
        }
        router.post("/1.0/instances/:name/exec") { req, ctx in
            let post: InstanceExecPost = try await r.decode(req)
            return Reply.async(try await r.access.exec(try ctx.name(), post))
        }
        router.get("/1.0/instances/:name/console") { _, ctx in
            Reply.raw(try await r.access.consoleLog(try ctx.name()))
        }
        router.post("/1.0/instances/:name/console") { req, ctx in
            let post: InstanceConsolePost = try await r.decode(req)
            return Reply.async(try await r.access.console(try ctx.name(), post))
        }
        router.delete("/1.0/instances/:name/console") { _, ctx in
            try await r.access.clearConsoleLog(try ctx.name())
            return Reply.empty()
        }
        router.get("/1.0/instances/:name/logs") { _, ctx in
            let name = try ctx.name()
            _ = try await r.lifecycle.get(name, withState: false)
            return Reply.sync(["/1.0/instances/\(name)/logs/console.log"])
        }
        router.get("/1.0/instances/:name/logs/:file") { _, ctx in
            guard ctx.parameters.get("file") == "console.log" else { throw APIError.notFound("Log file not found: only console.log exists") }
            return Reply.raw(try await r.access.consoleLog(try ctx.name()))
        }
        router.get("/1.0/instances/:name/files") { req, ctx in
            let path = try req.requiredQuery("path")
            let f = try await r.access.readFile(try ctx.name(), path: path)
            return Reply.raw(f.content, headers: [
                ("X-LXD-uid", "\(f.uid)"), ("X-LXD-gid", "\(f.gid)"),
                ("X-LXD-mode", String(f.mode, radix: 8)), ("X-LXD-type", f.type),
            ])
        }
        router.post("/1.0/instances/:name/files") { req, ctx in
            let path = try req.requiredQuery("path")
            let type = req.headers[HTTPField.Name("X-LXD-type")!] ?? "file"
            guard type == "file" || type == "directory" else { throw APIError.badRequest("Unsupported X-LXD-type \"\(type)\": use file or directory") }
            // Past the limit Hummingbird refuses the body with its 413 (given LXD's shape by ErrorReplies).
            var request = req
            let body = Array(buffer: try await request.collectBody(upTo: r.limits.file))
            let mode = try req.fileHeader("X-LXD-mode", radix: 8, max: 0o7777)
            // Ids inside the container: its user namespace maps 0..<65536.
            let uid = try req.fileHeader("X-LXD-uid", radix: 10, max: 65_535) ?? 0
            let gid = try req.fileHeader("X-LXD-gid", radix: 10, max: 65_535) ?? 0
            try await r.access.writeFile(
                try ctx.name(), path: path,
                InstanceFile(content: body, uid: uid, gid: gid, mode: mode ?? (type == "file" ? 0o644 : 0o755), type: type))
            return Reply.empty()
        }
    }
}

extension APIRoutes {
    /// `POST /1.0/instances/NAME`, LXD's one route for a rename and a move. `lxc move NAME
    /// --target M` sends `?target=M` with `{"name": NAME, "migration": true, "live": true}`
    /// (`live` false with `--stateless`); `lxc rename` (and `lxc move OLD NEW`) sends
    /// `{"name": NEW, "migration": false}`. A migration without `?target=` is LXD's first step of
    /// a move to another server, which this server does not serve.
    static func dispatch(_ post: InstancePost, name: String, target: String?,
                         to lifecycle: any InstanceLifecycleUseCases) async throws -> APIOperation {
        let newName = post.name.flatMap { $0.isEmpty ? nil : $0 }
        if post.migration == true {
            guard let target else {
                throw APIError.badRequest("Moving instance \(name) between servers is not supported: to move it within the cluster, name the member with ?target=MEMBER (lxc move \(name) --target MEMBER)")
            }
            if let newName, newName != name {
                throw APIError.badRequest("A move keeps the instance's name: move \(name) to member \(target), then rename it to \(newName)")
            }
            return try await lifecycle.move(name, to: target, live: post.live, mode: post.migrationMode)
        }
        if post.migrationMode != nil {
            throw APIError.badRequest("\"migration_mode\" applies to a move (\"migration\": true with ?target=MEMBER): rename \(name) without it")
        }
        guard let newName else {
            throw APIError.badRequest("Invalid request body: give \"name\" (the new name) to rename \(name), or \"migration\": true with ?target=MEMBER to move it")
        }
        if target != nil {
            throw APIError.badRequest("?target= applies to a move (\"migration\": true): rename \(name) without it")
        }
        return try await lifecycle.rename(name, to: newName)
    }
}

extension Request {
    /// A numeric `X-LXD-*` file header, nil when absent.
    func fileHeader(_ name: String, radix: Int, max: UInt32) throws -> UInt32? {
        guard let text = headers[HTTPField.Name(name)!] else { return nil }
        guard let value = UInt32(text, radix: radix), value <= max else {
            throw APIError.badRequest("Invalid \(name) \"\(text)\": use a number from 0 to \(String(max, radix: radix))\(radix == 8 ? " (octal)" : "")")
        }
        return value
    }
}

extension Context {
    func name() throws -> String {
        guard let n = parameters.get("name") else { throw APIError.badRequest("Missing instance name") }
        return n
    }
}
