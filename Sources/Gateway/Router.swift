import APITypes
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdWebSocket
import Instances
import Logging
import NIOCore
import Operations

/// Limits on request bodies: anything larger is refused with 413 before it is processed.
public struct BodyLimits: Sendable {
    public var json: Int = 4 << 20
    public var image: Int64 = 4 << 30
    public var file: Int = 256 << 20
    public init() {}
}

typealias Context = APIContext

/// Routes of the REST API. Handlers parse HTTP and call the use cases; no business rules here.
public struct APIRoutes: Sendable {
    public let instances: InstanceService
    public let images: ImageService
    public let operations: OperationRegistry
    public let serverInfo: @Sendable () async -> Server
    public let limits: BodyLimits
    public let uploadDirectory: String
    /// The trust store: /1.0/certificates and the HTTPS listener's client check.
    public let trust: any TrustService
    /// Cluster membership: /1.0/cluster routes and the members-only check.
    public let cluster: any ClusterService
    /// Reaches other members; nil (a single member) forwards nothing.
    public let forwarder: (any MemberForwarder)?
    let logger: Logger

    public init(instances: InstanceService, images: ImageService, operations: OperationRegistry, serverInfo: @escaping @Sendable () async -> Server, limits: BodyLimits = .init(), uploadDirectory: String, trust: any TrustService, cluster: any ClusterService, forwarder: (any MemberForwarder)? = nil, logger: Logger) {
        self.forwarder = forwarder
        self.trust = trust
        self.cluster = cluster
        self.instances = instances
        self.images = images
        self.operations = operations
        self.serverInfo = serverInfo
        self.limits = limits
        self.uploadDirectory = uploadDirectory
        self.logger = logger
    }

    /// The routes of one listener, behind the front door that normalises paths and admits callers
    /// per endpoint. `remote` (HTTPS) checks client certificates; the unix socket is root's.
    func build(remote: Bool = false) -> GuardedRouter {
        let router = Router(context: Context.self)
        let r = self
        router.add(middleware: ErrorReplies())
        // After admission: only callers allowed on the endpoint get forwarded.
        if let forwarder {
            router.add(middleware: ForwardingMiddleware(forwarder: forwarder, instances: instances, bodyLimit: limits.file))
        }

        router.get("/") { _, _ in Reply.sync(["/1.0"]) }
        router.get("/1.0") { _, ctx in
            var info = await r.serverInfo()
            info.auth = ctx.caller.isTrusted ? "trusted" : "untrusted"
            // Cluster-wide config is shown to trusted callers only (LXD does the same).
            if ctx.caller.isTrusted, let config = try? await r.instances.placement.serverConfig() {
                info.config.merge(config) { $1 }
            }
            return Reply.sync(info)
        }
        router.put("/1.0") { req, ctx in
            let put: ServerPut = try await r.decode(req, ctx)
            try await r.instances.placement.updateServerConfig(put.config, replace: true)
            return Reply.empty()
        }
        router.patch("/1.0") { req, ctx in
            let put: ServerPut = try await r.decode(req, ctx)
            try await r.instances.placement.updateServerConfig(put.config, replace: false)
            return Reply.empty()
        }
        addSchedulingRoutes(router)
        addCertificateRoutes(router, trust)
        addClusterRoutes(router, cluster)
        addEventRoutes(router)

        // Instances
        router.get("/1.0/instances") { req, _ in
            let recursion = try req.recursion()
            let list = try await r.instances.lifecycle.list(withState: recursion >= 2)
            if recursion == 0 { return Reply.sync(list.map { "/1.0/instances/\($0.name)" }) }
            let forwarded = req.headers[HTTPField.Name(Forwarding.markerHeader)!] != nil
            return Reply.sync(await r.clusterWide(list, withState: recursion >= 2, forwarded: forwarded))
        }
        router.post("/1.0/instances") { req, ctx in
            // One body, two views: LXD's fields and our extensions (count, name_prefix, scheduler_policy).
            let (post, extra): (InstancesPost, InstancesCreateOptions) = try await r.decodeTwice(req, ctx)
            let options = CreateOptions(
                target: req.uri.queryParameters.get("target").flatMap { $0.isEmpty ? nil : String($0) },
                count: extra.count, namePrefix: extra.namePrefix, policy: extra.schedulerPolicy)
            return Reply.async(try await r.instances.lifecycle.create(post, options: options))
        }
        router.get("/1.0/instances/:name") { req, ctx in
            let recursion = try req.recursion()
            return Reply.sync(try await r.instances.lifecycle.get(try ctx.name(), withState: recursion >= 1))
        }
        router.put("/1.0/instances/:name") { req, ctx in
            let put: InstancePut = try await r.decode(req, ctx)
            try await r.instances.lifecycle.update(try ctx.name(), put, replace: true)
            return Reply.empty()
        }
        router.patch("/1.0/instances/:name") { req, ctx in
            let put: InstancePut = try await r.decode(req, ctx)
            try await r.instances.lifecycle.update(try ctx.name(), put, replace: false)
            return Reply.empty()
        }
        router.delete("/1.0/instances/:name") { _, ctx in
            Reply.async(try await r.instances.lifecycle.delete(try ctx.name()))
        }
        router.get("/1.0/instances/:name/state") { _, ctx in
            Reply.sync(try await r.instances.lifecycle.state(try ctx.name()))
        }
        router.put("/1.0/instances/:name/state") { req, ctx in
            let put: InstanceStatePut = try await r.decode(req, ctx)
            return Reply.async(try await r.instances.lifecycle.changeState(try ctx.name(), put))
        }
        router.post("/1.0/instances/:name/exec") { req, ctx in
            let post: InstanceExecPost = try await r.decode(req, ctx)
            return Reply.async(try await r.instances.access.exec(try ctx.name(), post))
        }
        router.get("/1.0/instances/:name/console") { _, ctx in
            Reply.raw(try await r.instances.access.consoleLog(try ctx.name()))
        }
        router.get("/1.0/instances/:name/logs") { _, ctx in
            let name = try ctx.name()
            _ = try await r.instances.lifecycle.get(name, withState: false)
            return Reply.sync(["/1.0/instances/\(name)/logs/console.log"])
        }
        router.get("/1.0/instances/:name/logs/:file") { _, ctx in
            guard ctx.parameters.get("file") == "console.log" else { throw APIError.notFound("Log file not found: only console.log exists") }
            return Reply.raw(try await r.instances.access.consoleLog(try ctx.name()))
        }
        router.get("/1.0/instances/:name/files") { req, ctx in
            let path = try req.requiredQuery("path")
            let f = try await r.instances.access.readFile(try ctx.name(), path: path)
            return Reply.raw(f.content, headers: [
                ("X-LXD-uid", "\(f.uid)"), ("X-LXD-gid", "\(f.gid)"),
                ("X-LXD-mode", String(f.mode, radix: 8)), ("X-LXD-type", f.type),
            ])
        }
        router.post("/1.0/instances/:name/files") { req, ctx in
            let path = try req.requiredQuery("path")
            var request = req
            let type = req.headers[HTTPField.Name("X-LXD-type")!] ?? "file"
            guard type == "file" || type == "directory" else { throw APIError.badRequest("Unsupported X-LXD-type \"\(type)\": use file or directory") }
            let body = try await request.collectBody(upTo: r.limits.file)
            let mode = try req.fileHeader("X-LXD-mode", radix: 8, max: 0o7777)
            // Ids inside the container: its user namespace maps 0..<65536.
            let uid = try req.fileHeader("X-LXD-uid", radix: 10, max: 65_535) ?? 0
            let gid = try req.fileHeader("X-LXD-gid", radix: 10, max: 65_535) ?? 0
            try await r.instances.access.writeFile(
                try ctx.name(), path: path,
                InstanceFile(content: Array(buffer: body), uid: uid, gid: gid, mode: mode ?? (type == "file" ? 0o644 : 0o755), type: type))
            return Reply.empty()
        }

        // Images
        router.get("/1.0/images") { req, _ in
            let recursion = try req.recursion()
            let list = try await r.images.list()
            if recursion == 0 { return Reply.sync(list.map { "/1.0/images/\($0.fingerprint)" }) }
            return Reply.sync(list)
        }
        router.post("/1.0/images") { req, ctx in
            let filename = req.headers[HTTPField.Name("X-LXD-filename")!] ?? "image.tar"
            let path = try await r.receiveUpload(req)
            return Reply.async(try await r.images.importTarball(at: path, filename: filename))
        }
        router.get("/1.0/images/aliases") { req, _ in
            let recursion = try req.recursion()
            let aliases = try await r.images.aliases()
            if recursion == 0 { return Reply.sync(aliases.map { "/1.0/images/aliases/\($0.name)" }) }
            return Reply.sync(aliases)
        }
        router.post("/1.0/images/aliases") { req, ctx in
            let post: ImageAliasesPost = try await r.decode(req, ctx)
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

        // Operations
        router.get("/1.0/operations") { req, _ in
            let recursion = try req.recursion()
            let forwarded = req.headers[HTTPField.Name(Forwarding.markerHeader)!] != nil
            let ops = await r.clusterOperations(await r.operations.list(), forwarded: forwarded)
            if recursion == 0 {
                return Reply.sync(Dictionary(grouping: ops, by: { $0.status.lowercased() }).mapValues { $0.map { "/1.0/operations/\($0.id)" } })
            }
            return Reply.sync(Dictionary(grouping: ops, by: { $0.status.lowercased() }))
        }
        router.get("/1.0/operations/:id") { _, ctx in
            let id = ctx.parameters.get("id") ?? ""
            guard let op = await r.operations.get(id) else { throw APIError.notFound("APIOperation \(id) not found") }
            return Reply.sync(op)
        }
        router.get("/1.0/operations/:id/wait") { req, ctx in
            let id = ctx.parameters.get("id") ?? ""
            let timeout = try req.waitSeconds("timeout")
            guard let op = await r.operations.wait(id, timeout: timeout) else { throw APIError.notFound("APIOperation \(id) not found") }
            return Reply.sync(op)
        }
        router.ws("/1.0/operations/:id/websocket") { req, ctx in
            let id = ctx.parameters.get("id") ?? ""
            let secret = req.uri.queryParameters.get("secret") ?? ""
            guard !secret.isEmpty else {
                throw APIError.forbidden("Missing secret: connect with ?secret= from the operation's metadata")
            }
            if r.remoteOwner(ofOperation: id) != nil {
                // The owner checks the secret when the proxy connects; a second hop is refused.
                if req.headers[HTTPField.Name(Forwarding.markerHeader)!] != nil { throw ForwardingMiddleware.refusal("operation \(id)") }
                return .upgrade([:])
            }
            // Peek without consuming: the secret is taken on upgrade.
            guard await r.operations.get(id) != nil else { throw APIError.notFound("Operation \(id) not found") }
            return .upgrade([:])
        } onUpgrade: { inbound, outbound, wsContext in
            let id = wsContext.requestContext.parameters.get("id") ?? ""
            let secret = wsContext.request.uri.queryParameters.get("secret") ?? ""
            if let owner = r.remoteOwner(ofOperation: id), let forwarder = r.forwarder {
                let uri = wsContext.request.uri
                let target = uri.query.map { "\(uri.path)?\($0)" } ?? uri.path
                do {
                    let remote = try await forwarder.openWebSocket(target: target, to: .id(owner))
                    await WebSocketBridge.proxy(remote, inbound: inbound, outbound: outbound)
                } catch {
                    r.logger.notice("operation websocket proxy failed", metadata: ["operation": "\(id)", "error": "\(error)"])
                }
                return
            }
            guard let (fd, handler) = await r.operations.webSocket(id: id, secret: secret) else { return }
            await WebSocketBridge.run(fd: fd, handler: handler, inbound: inbound, outbound: outbound)
        }
        Self.checkAgainstTable(router)
        let trust = self.trust, cluster = self.cluster
        var isTrusted: (@Sendable (String) async throws -> Bool)? = nil
        if remote { isTrusted = { @Sendable fingerprint in try await trust.isTrusted(fingerprint: fingerprint) } }
        let isMember: @Sendable (String) async -> Bool = { fingerprint in await cluster.isMember(fingerprint: fingerprint) }
        return GuardedRouter(router: router, endpoints: Endpoints.all, access: AccessControl(isTrusted: isTrusted, isMember: isMember))
    }

    /// The router serves exactly the endpoint table: a route missing from the table would have
    /// no declared access, and a table entry without a route would be documented but not served.
    static func checkAgainstTable(_ router: Router<Context>) {
        let served = Set(router.routes.map { "\($0.method.rawValue) \($0.path.description)" })
        let table = Set(Endpoints.all.map(\.description))
        precondition(served == table, "the router and Endpoints.all disagree: only routed \(served.subtracting(table).sorted()), only in the table \(table.subtracting(served).sorted())")
    }

    /// The member running operation `id` when that is another member (DESIGN "Identity").
    func remoteOwner(ofOperation id: String) -> Int64? {
        guard let forwarder, forwarder.isClustered, let owner = OperationID.memberID(of: id),
              owner != 0, owner != forwarder.localMemberID else { return nil }
        return owner
    }

    func decode<T: Decodable>(_ req: Request, _ ctx: Context) async throws -> T {
        try Self.decodeBody(T.self, try await jsonBody(req))
    }

    /// The JSON body decoded as two types (LXD's fields and our extension fields).
    func decodeTwice<A: Decodable, B: Decodable>(_ req: Request, _ ctx: Context) async throws -> (A, B) {
        let data = try await jsonBody(req)
        return (try Self.decodeBody(A.self, data), try Self.decodeBody(B.self, data))
    }

    /// The request body, refused with 413 past the JSON limit.
    private func jsonBody(_ req: Request) async throws -> Data {
        var request = req
        do {
            return Data(buffer: try await request.collectBody(upTo: limits.json))
        } catch {
            throw APIError.tooLarge("Request body is larger than \(limits.json) bytes")
        }
    }

    static func decodeBody<T: Decodable>(_ type: T.Type, _ data: Data) throws -> T {
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch let error as APIError {
            // A body type's own check (a field out of range) says what is wrong.
            throw error
        } catch let DecodingError.keyNotFound(key, _) {
            throw APIError.badRequest("Invalid request body: missing field \"\(key.stringValue)\"")
        } catch let DecodingError.typeMismatch(_, c) {
            throw APIError.badRequest("Invalid request body: wrong type at \"\(c.codingPath.map(\.stringValue).joined(separator: "."))\"")
        } catch {
            throw APIError.badRequest("Invalid request body: malformed JSON")
        }
    }

    /// Streams an upload to a file in the upload directory, refusing it once it passes the limit.
    fileprivate func receiveUpload(_ req: Request) async throws -> String {
        let path = "\(uploadDirectory)/upload-\(UUID().uuidString)"
        guard FileManager.default.createFile(atPath: path, contents: nil), let handle = FileHandle(forWritingAtPath: path) else {
            throw APIError.internal("Cannot create upload file in \(uploadDirectory): check the data directory is writable")
        }
        var total: Int64 = 0
        do {
            for try await chunk in req.body {
                total += Int64(chunk.readableBytes)
                if total > limits.image { throw APIError.tooLarge("Image upload is larger than \(limits.image) bytes") }
                try handle.write(contentsOf: Data(buffer: chunk))
            }
            try handle.close()
        } catch {
            try? handle.close()
            unlink(path)
            throw error
        }
        return path
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
