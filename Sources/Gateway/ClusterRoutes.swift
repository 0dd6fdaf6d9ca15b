import APITypes
import Dqlite
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTLS
import HummingbirdWebSocket
import Identity
import Logging
import NIOCore
import NIOSSL
import Operations
import ServiceLifecycle

/// Cluster use cases the routes call (Cluster's `ClusterController`, conformed by the agent).
public protocol ClusterService: Sendable {
    func members() async throws -> [ClusterMemberInfo]
    /// `GET /1.0/cluster`: this member's name and whether clustering is enabled.
    func info() async throws -> ClusterInfo
    /// Enables clustering on a member that is not clustered yet, under `serverName` (renaming it if needed).
    func enable(serverName: String) async throws
    /// Replaces a member's config and failure domain (validated against MemberConfigSchema).
    func updateMember(name: String, _ put: ClusterMemberPut) async throws
    /// Changes only the fields sent; config keys are merged into the member's.
    func patchMember(name: String, _ patch: ClusterMemberPut) async throws
    /// One member, as `members()` lists it.
    func member(named name: String) async throws -> ClusterMemberInfo
    /// Issues a join token for a new member called `name` (printable form).
    func issueJoinToken(name: String) async throws -> IssuedJoinToken
    /// On an existing member: admits the caller (which presented `presentedCertificate`).
    func accept(_ request: ClusterAcceptRequest, presentedCertificate: [UInt8]) async throws -> ClusterAcceptResponse
    /// On the new member: joins the cluster described by `token`, as `serverName` when given.
    func join(token: String, serverName: String?) async throws
    /// Removes a member; `force` removes an unreachable one even when it owns instances (their rows go too).
    func remove(name: String, force: Bool) async throws
    /// Whether `fingerprint` is the server certificate of a cluster member: checked against the
    /// list held in memory (the database itself travels over the links this guards), which may
    /// be re-read from the database, at a bounded rate, for an unknown certificate.
    func isMember(fingerprint: String) async -> Bool
    /// A heartbeat from the leader (already checked to come from a member).
    func receiveHeartbeat(_ heartbeat: ClusterHeartbeat) async throws
    /// Hands a peer's byte stream to this member's dqlite node.
    func servePeer(_ stream: any PeerStream) async
}

/// Evacuating and restoring members (Cluster's `MemberEvacuation`, conformed by the agent).
public protocol MemberStateService: Sendable {
    /// Refuses what cannot be done (unknown member, action or mode; evacuating a member that is
    /// EVACUATED or OFFLINE; restoring one that is not EVACUATED), on any member.
    func checkStateChange(member: String, _ post: ClusterMemberStatePost) async throws
    /// On the member itself: starts the evacuation or restore as an operation.
    func changeState(member: String, _ post: ClusterMemberStatePost) async throws -> APIOperation
}

/// A websocket seen as a dqlite `PeerStream`.
struct WebSocketPeerStream: PeerStream {
    let outbound: WebSocketOutboundWriter
    let received: AsyncStream<[UInt8]>
    let finish: @Sendable () -> Void

    func send(_ bytes: [UInt8]) async throws {
        try await outbound.write(.binary(ByteBuffer(bytes: bytes)))
    }

    func close() async {
        finish()
    }
}

extension APIRoutes {
    func addClusterRoutes(_ router: Router<Context>, _ cluster: any ClusterService) {
        let r = self
        router.get("/1.0/cluster") { _, _ in
            Reply.sync(try await cluster.info())
        }
        router.put("/1.0/cluster") { req, ctx in
            let put: ClusterPut = try await r.decode(req)
            if let token = put.clusterToken, !token.isEmpty {
                try await cluster.join(token: token, serverName: put.serverName.flatMap { $0.isEmpty ? nil : $0 })
            } else if put.enabled == true {
                guard let name = put.serverName, !name.isEmpty else {
                    throw APIError.badRequest("server_name is required to enable clustering")
                }
                try await cluster.enable(serverName: name)
            } else if put.enabled == false {
                throw APIError.badRequest("Disabling clustering is not supported: remove this member from the cluster instead")
            } else {
                throw APIError.badRequest("Nothing to do: send enabled=true with server_name, or a cluster_token")
            }
            return Reply.empty()
        }
        router.get("/1.0/cluster/members") { req, _ in
            let recursion = try req.recursion()
            let members = try await cluster.members()
            if recursion == 0 { return Reply.sync(members.map { "/1.0/cluster/members/\($0.serverName)" }) }
            return Reply.sync(members)
        }
        router.get("/1.0/cluster/members/:member") { _, ctx in
            Reply.sync(try await cluster.member(named: ctx.parameters.get("member") ?? ""))
        }
        router.post("/1.0/cluster/members") { req, ctx in
            let post: ClusterMembersPost = try await r.decode(req)
            let token = try await cluster.issueJoinToken(name: post.serverName)
            // LXD's shape: an operation whose metadata holds the token's fields (lxc cluster add
            // encodes the token from them); `token` is the encoded one, for lxdctl.
            let expires = Date(timeIntervalSince1970: Double(token.expiresAt))
            return Reply.async(await r.operations.start(
                class: "token", description: "Requesting a join token",
                resources: ["cluster": ["/1.0/cluster/members/\(token.serverName)"]],
                metadata: ["serverName": .string(token.serverName), "fingerprint": .string(token.fingerprint),
                           "addresses": .array(token.addresses.map(JSONValue.string)), "secret": .string(token.secret),
                           "expiresAt": .string(OperationRegistry.timestamp(expires)), "token": .string(token.encoded)]) { _ in nil })
        }
        router.delete("/1.0/cluster/members/:member") { req, ctx in
            let force = try req.flag("force")
            try await cluster.remove(name: ctx.parameters.get("member") ?? "", force: force)
            return Reply.empty()
        }
        router.put("/1.0/cluster/members/:member") { req, ctx in
            let put: ClusterMemberPut = try await r.decode(req)
            try await cluster.updateMember(name: ctx.parameters.get("member") ?? "", put)
            return Reply.empty()
        }
        router.patch("/1.0/cluster/members/:member") { req, ctx in
            let patch: ClusterMemberPut = try await r.decode(req)
            try await cluster.patchMember(name: ctx.parameters.get("member") ?? "", patch)
            return Reply.empty()
        }
        router.post("/1.0/cluster/members/:member/state") { req, ctx in
            guard let memberState = r.memberState else {
                throw APIError(501, "Evacuating members is not available on this server")
            }
            let name = ctx.parameters.get("member") ?? ""
            let body = try await req.collectJSON(upTo: r.limits.json)
            let post: ClusterMemberStatePost = try Self.decodeBody(ClusterMemberStatePost.self, body)
            try await memberState.checkStateChange(member: name, post)
            // The member being evacuated runs the operation: it owns the instances that move.
            if let forwarder = r.forwarder, forwarder.isClustered, name != forwarder.localMemberName {
                if req.headers[HTTPField.Name(Forwarding.markerHeader)!] != nil {
                    throw ForwardingMiddleware.refusal("member \(name)'s state")
                }
                let answer: ForwardedResponse
                do {
                    answer = try await forwarder.send(
                        ForwardedRequest(method: "POST", target: "/1.0/cluster/members/\(name)/state",
                                         headers: [("Content-Type", "application/json"), (Forwarding.markerHeader, forwarder.localMemberName)],
                                         body: Array(body)),
                        to: .name(name), timeout: .seconds(30))
                } catch let error as APIError {
                    throw error
                } catch {
                    throw APIError.unavailable("Cannot reach member \(name) to change its state: \(error)")
                }
                return Reply.forwarded(answer)
            }
            return Reply.async(try await memberState.changeState(member: name, post))
        }
        router.post("/internal/cluster/accept") { req, ctx in
            // The secret is the credential; the certificate is the one this connection presented.
            guard case .untrusted(let presented) = ctx.caller, let presented else {
                throw APIError.forbidden("a joining member must present its own, not yet trusted, certificate")
            }
            let post: ClusterAcceptRequest = try await r.decode(req)
            return Reply.sync(try await cluster.accept(post, presentedCertificate: presented))
        }
        router.post("/internal/cluster/heartbeat") { req, ctx in
            let beat: ClusterHeartbeat = try await r.decode(req)
            try await cluster.receiveHeartbeat(beat)
            return Reply.empty()
        }
        Self.addDatabaseLinkRoute(router) { stream in await cluster.servePeer(stream) }
    }

    /// `/internal/database`: a member's dqlite peer link, as a websocket of binary frames
    /// (its access is `member`: the front door has checked the caller's certificate).
    static func addDatabaseLinkRoute(_ router: Router<Context>, serve: @escaping @Sendable (any PeerStream) async -> Void) {
        router.ws("/internal/database") { _, ctx in
            guard case .trusted = ctx.caller else { throw APIError.forbidden("The database link is for other members' connections only") }
            return .upgrade([:])
        } onUpgrade: { inbound, outbound, _ in
            await servePeerStream(inbound, outbound, serve: serve)
        }
    }

    /// Hands a websocket of binary frames to `serve` as a `PeerStream`, until `serve` returns.
    static func servePeerStream(_ inbound: WebSocketInboundStream, _ outbound: WebSocketOutboundWriter,
                                serve: @escaping @Sendable (any PeerStream) async -> Void) async {
        let (received, continuation) = AsyncStream<[UInt8]>.makeStream(bufferingPolicy: .unbounded)
        let stream = WebSocketPeerStream(outbound: outbound, received: received, finish: { continuation.finish() })
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                do {
                    for try await message in inbound.messages(maxSize: 1 << 20) {
                        if case .binary(let b) = message { continuation.yield(Array(buffer: b)) }
                    }
                } catch {}
                continuation.finish()
            }
            await serve(stream)
            continuation.finish()
            group.cancelAll()
        }
    }
}

extension APIServer {
    /// A listener on the member's HTTPS address that serves only the database peer links, for the
    /// time between the node's start and the database being open: when a whole cluster starts at
    /// once, no member can open its database before the others' links carry an election, and
    /// the full API listener needs the open database. Stop it before the full listener binds.
    public static func databaseLinkService(isMember: @escaping @Sendable (String) async -> Bool,
                                           serve: @escaping @Sendable (any PeerStream) async -> Void,
                                           identity: TLSIdentity, host: String, port: Int, firstBytes: Duration,
                                           silent: SilentConnections, logger: Logger) throws -> some Service {
        let router = Router(context: APIContext.self)
        router.add(middleware: ErrorReplies())
        APIRoutes.addDatabaseLinkRoute(router, serve: serve)
        let links = GuardedRouter(
            router: router, endpoints: Endpoints.all.filter { $0.path == "/internal/database" },
            access: AccessControl(isTrusted: nil, isMember: isMember),
            unserved: .unavailable("This member is starting: its database is not open yet; retry in a moment"))
        var server = try TLSConfigurations.server(identity)
        // As on the API listener: a closed link must not wait 5 s for the peer's close_notify.
        server.shutdownTimeout = .milliseconds(200)
        let tls = TLSChannelConfiguration(tlsConfiguration: server, customVerificationCallback: TLSConfigurations.acceptAnyCertificate)
        return Application(
            router: links,
            server: try .tlsWebSocket(webSocketRouter: links, configuration: .init(ws: webSocket), tls: tls, firstBytes: firstBytes, silent: silent),
            configuration: .init(address: .hostname(host, port: port), serverName: "lxd-swift"),
            logger: logger)
    }
}
