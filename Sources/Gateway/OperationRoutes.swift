import APITypes
import HTTPTypes
import Hummingbird
import HummingbirdWebSocket
import Operations

extension APIRoutes {
    /// `/1.0/operations`: list (cluster-wide), show, wait, and the operation websocket (exec
    /// streams), proxied to the member that runs the operation.
    func addOperationRoutes(_ router: Router<Context>) {
        let r = self
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
    }

    /// The member running operation `id` when that is another member (DESIGN "Identity").
    func remoteOwner(ofOperation id: String) -> Int64? {
        guard let forwarder, forwarder.isClustered, let owner = OperationID.memberID(of: id),
              owner != 0, owner != forwarder.localMemberID else { return nil }
        return owner
    }
}
