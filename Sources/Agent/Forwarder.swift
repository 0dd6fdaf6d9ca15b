import APITypes
import ClusterDB
import Foundation
import Gateway
import Identity
import Instances
import LXDClient
import Logging
import NIOCore
import Synchronization

/// Sends requests to other members over mutual TLS, presenting this member's certificate and
/// pinning theirs (as the database links do). Members are looked up in ClusterDB by name or id.
final class MemberRequestForwarder: MemberForwarder {
    let db: ClusterDB
    let identity: TLSIdentity
    let localMemberID: Int64
    let localMemberName: String
    let clustered: @Sendable () -> Bool
    let logger: Logger
    /// One client per member address and certificate.
    private let clients = Mutex<[String: LXDClient]>([:])
    static let idleConnectionsPerMember = 4
    /// Below the server's idle timeout (60 s, APIServer.channel), so the server rarely closes one under us.
    static let idleTimeout = TimeAmount.seconds(20)

    init(db: ClusterDB, identity: TLSIdentity, localMemberID: Int64, localMemberName: String, clustered: @escaping @Sendable () -> Bool, logger: Logger) {
        self.clustered = clustered
        self.db = db
        self.identity = identity
        self.localMemberID = localMemberID
        self.localMemberName = localMemberName
        self.logger = logger
    }

    var isClustered: Bool { clustered() }

    func otherMembers() async throws -> [String] {
        try await db.transaction { tx in try tx.memberPeers() }.map(\.name).filter { $0 != localMemberName }
    }

    func openWebSocket(target: String, to member: MemberReference) async throws -> any ForwardedWebSocket {
        let started = ContinuousClock.now
        let (peer, client) = try await resolve(member)
        do {
            let socket = try await client.transport.openWebSocket(HTTPRequest(.GET, target, headers: [(Forwarding.markerHeader, localMemberName)]))
            logger.debug("websocket to member opened", metadata: ["peer": "\(peer.name)", "took": "\(ContinuousClock.now - started)"])
            return ProxiedWebSocket(socket)
        } catch let error as APIError {
            throw error
        } catch {
            throw APIError.unavailable("Cannot open the websocket on member \(peer.name): \(error)")
        }
    }

    private func resolve(_ member: MemberReference) async throws -> (MemberPeer, LXDClient) {
        let peers = try await db.transaction { tx in try tx.memberPeers() }
        let peer: MemberPeer? = switch member {
        case .name(let name): peers.first { $0.name == name }
        case .id(let id): peers.first { $0.id == id }
        }
        guard let peer else {
            throw APIError.notFound("Cluster member \(member) not found: see lxdctl cluster list")
        }
        guard !peer.fingerprint.isEmpty else {
            throw APIError.unavailable("No certificate known for member \(peer.name): it has not finished joining")
        }
        return (peer, try client(for: peer))
    }

    func send(_ request: ForwardedRequest, to member: MemberReference, timeout: Duration?) async throws -> ForwardedResponse {
        let (peer, client) = try await resolve(member)
        guard let method = RequestMethod(rawValue: request.method) else {
            throw APIError.badRequest("Method \(request.method) cannot be forwarded")
        }
        let outgoing = HTTPRequest(method, request.target, headers: request.headers, body: request.body)
        let answer: HTTPResponse
        if let timeout {
            let pending = Task { try await client.transport.send(outgoing) }
            guard let first = await Forwarding.first(pending, within: timeout) else {
                pending.cancel()
                throw APIError.unavailable("Member \(peer.name) did not answer \(request.method) \(request.target) within \(timeout)")
            }
            answer = try first.get()
        } else {
            answer = try await client.transport.send(outgoing)
        }
        return ForwardedResponse(status: answer.status, headers: answer.headers, body: answer.body)
    }

    /// Closes the pooled connections to every member (the agent is stopping).
    func closeConnections() async {
        let all = clients.withLock { all in defer { all = [:] }; return Array(all.values) }
        for client in all { await client.transport.shutdown() }
    }

    private func client(for peer: MemberPeer) throws -> LXDClient {
        let key = peer.address + "/" + peer.fingerprint
        if let known = clients.withLock({ $0[key] }) { return known }
        let connector = try TLSConnector(addresses: [peer.address], serverFingerprint: peer.fingerprint, identity: identity,
                                         connectTimeout: .seconds(2))
        // Pooled: a mutual-TLS handshake per request cost 10-50 ms. The peer closes idle connections
        // when it shuts down (quiescing) or after its own idle timeout, longer than ours.
        let client = LXDClient(transport: HTTPChannelTransport(connector: connector, maxIdleConnections: Self.idleConnectionsPerMember,
                                                               idleTimeout: Self.idleTimeout))
        return clients.withLock { all in
            if let raced = all[key] { return raced }
            all[key] = client
            return client
        }
    }
}

/// A client websocket to the owner, as the Gateway's proxy sees it.
struct ProxiedWebSocket: ForwardedWebSocket {
    let socket: WebSocket
    let frames: AsyncStream<ForwardedFrame>

    init(_ socket: WebSocket) {
        self.socket = socket
        // Unbounded: a client slower than the owner's output buffers here (no backpressure yet).
        // The reader task ends with the socket.
        let (stream, continuation) = AsyncStream<ForwardedFrame>.makeStream(bufferingPolicy: .unbounded)
        frames = stream
        Task {
            for await message in socket.messages {
                switch message {
                case .binary(let b): continuation.yield(.binary(b))
                case .text(let t): continuation.yield(.text(t))
                }
            }
            continuation.finish()
        }
    }

    func send(_ frame: ForwardedFrame) async throws {
        switch frame {
        case .binary(let b): try await socket.send(binary: b)
        case .text(let t): try await socket.send(text: t)
        }
    }

    func close() async { await socket.close() }
    func ping() { socket.ping() }
    var lastHeard: ContinuousClock.Instant { socket.lastHeard }
}

extension MemberRequestForwarder: ImageTarballFetcher {
    /// GET /1.0/images/<fp>/export on `member`; only a 200 counts (the caller verifies the hash).
    func fetchTarball(fingerprint: String, from member: String, timeout: Duration) async throws -> [UInt8] {
        let request = ForwardedRequest(method: "GET", target: "/1.0/images/\(fingerprint)/export",
                                       headers: [(Forwarding.markerHeader, localMemberName)], body: [])
        let answer = try await send(request, to: .name(member), timeout: timeout)
        guard answer.status == 200 else {
            let detail = String(decoding: answer.body.prefix(300), as: UTF8.self)
            throw APIError.unavailable("Member \(member) answered \(answer.status) to the image export: \(detail)")
        }
        return answer.body
    }
}
