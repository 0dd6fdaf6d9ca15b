import APITypes
import Hummingbird
import HummingbirdWebSocket

extension APIRoutes {
    /// The members-only call by which the member that placed a launch asks the owner to create
    /// the instances.
    func addInternalInstanceRoutes(_ router: Router<Context>) {
        let r = self
        router.post("/internal/instances/materialise") { req, _ in
            let post: InstancesMaterialisePost = try await r.decode(req)
            return Reply.async(try await r.lifecycle.materialise(post))
        }
        // A move's target side; the source drives it (Instances' MoveShell).
        router.post("/internal/moves") { req, _ in
            let post: MovePrepareRequest = try await r.decode(req)
            return Reply.sync(try await r.lifecycle.acceptMove(post))
        }
        router.put("/internal/moves/:token/:stream") { req, ctx in
            let token = try ctx.moveToken()
            guard let stream = MoveStream(rawValue: ctx.parameters.get("stream") ?? "") else {
                throw APIError.badRequest("Unknown move stream: use rootfs or state")
            }
            let round = try req.integer("round", in: 1...1000)
            let part = try req.integer("part", in: 0...1_000_000)
            let last = try req.flag("last")
            var request = req
            let body = Array(buffer: try await request.collectBody(upTo: r.limits.movePart))
            try await r.lifecycle.receiveMovePart(token: token, stream: stream, round: round, part: part, last: last, bytes: body)
            return Reply.empty()
        }
        // The memory of a live move, CRIU's page-server protocol as binary frames.
        router.ws("/internal/moves/:token/pages") { _, ctx in
            guard case .trusted = ctx.caller else { throw APIError.forbidden("A move's memory is for other members' connections only") }
            _ = try ctx.moveToken()
            return .upgrade([:])
        } onUpgrade: { inbound, outbound, wsContext in
            let token = wsContext.requestContext.parameters.get("token") ?? ""
            await Self.servePeerStream(inbound, outbound) { stream in await r.lifecycle.receivePages(token: token, stream: stream) }
        }
        router.post("/internal/moves/:token/handover") { req, ctx in
            let token = try ctx.moveToken()
            let post: MoveHandOverRequest = try await r.decode(req)
            guard post.token == token else { throw APIError.badRequest("The body's token is not the path's") }
            return Reply.sync(try await r.lifecycle.completeMove(post))
        }
        router.delete("/internal/moves/:token") { _, ctx in
            await r.lifecycle.discardMove(token: try ctx.moveToken())
            return Reply.empty()
        }
    }
}

extension APIContext {
    /// The `:token` of a move route: 32 hex digits, else 400.
    func moveToken() throws -> String {
        let token = parameters.get("token") ?? ""
        guard MoveToken.isValid(token) else { throw APIError.badRequest("Invalid move token") }
        return token
    }
}
