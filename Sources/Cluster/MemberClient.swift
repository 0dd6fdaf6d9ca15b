import APITypes
import ClusterDB
import Foundation
import Identity
import Instances
import LXDClient
import Logging
import NIOCore
import Operations
import Synchronization

/// The one client for member-to-member calls: forwarded requests and websockets (Gateway's
/// proxy, whose `MemberForwarder` port the agent conforms this to), image tarball fetches
/// (Instances) and materialise requests to an instance's owner (Instances' placement). It speaks
/// mutual TLS, presenting this member's certificate and pinning the peer's (as the database links
/// do); members are looked up in ClusterDB by name or id.
public final class MemberClient: Sendable {
    let db: ClusterDB
    let identity: TLSIdentity
    public let localMemberID: Int64
    public let localMemberName: String
    let clustered: @Sendable () -> Bool
    let logger: Logger
    /// One client per member address and certificate.
    private let clients = Mutex<[String: LXDClient]>([:])
    static let idleConnectionsPerMember = 4
    /// Below the server's idle timeout (60 s, APIServer.channel), so the server rarely closes one under us.
    static let idleTimeout = TimeAmount.seconds(20)

    public init(db: ClusterDB, identity: TLSIdentity, localMemberID: Int64, localMemberName: String,
                clustered: @escaping @Sendable () -> Bool, logger: Logger) {
        self.clustered = clustered
        self.db = db
        self.identity = identity
        self.localMemberID = localMemberID
        self.localMemberName = localMemberName
        self.logger = logger
    }

    public var isClustered: Bool { clustered() }

    public func otherMembers() async throws -> [String] {
        try await db.transaction { tx in try tx.memberPeers() }.map(\.name).filter { $0 != localMemberName }
    }

    /// Opens a websocket on `member` (`target` is path and query, already escaped).
    public func webSocket(_ target: String, on member: MemberReference) async throws -> MemberWebSocket {
        let started = ContinuousClock.now
        let (peer, client) = try await resolve(member)
        do {
            let socket = try await client.transport.openWebSocket(
                HTTPRequest(.GET, target, headers: [(ForwardedRequest.markerHeader, localMemberName)]), masking: .unmasked)
            logger.debug("websocket to member opened", metadata: ["peer": "\(peer.name)", "took": "\(ContinuousClock.now - started)"])
            return MemberWebSocket(socket)
        } catch let error as APIError {
            throw error
        } catch {
            throw ClusterUseCaseError.unavailable("Cannot open the websocket on member \(peer.name): \(error)")
        }
    }

    func resolve(_ member: MemberReference) async throws -> (MemberPeer, LXDClient) {
        let peers = try await db.transaction { tx in try tx.memberPeers() }
        let peer: MemberPeer? = switch member {
        case .name(let name): peers.first { $0.name == name }
        case .id(let id): peers.first { $0.id == id }
        }
        guard let peer else {
            throw ClusterUseCaseError.notFound("Cluster member \(member) not found: see lxdctl cluster list")
        }
        guard !peer.fingerprint.isEmpty else {
            throw ClusterUseCaseError.unavailable("No certificate known for member \(peer.name): it has not finished joining")
        }
        return (peer, try client(for: peer))
    }

    public func send(_ request: ForwardedRequest, to member: MemberReference, timeout: Duration?) async throws -> ForwardedResponse {
        let (peer, client) = try await resolve(member)
        guard let method = RequestMethod(rawValue: request.method) else {
            throw ClusterUseCaseError.invalid("Method \(request.method) cannot be forwarded")
        }
        let outgoing = HTTPRequest(method, request.target, headers: request.headers, body: request.body)
        let answer: HTTPResponse
        if let timeout {
            let pending = Task { try await client.transport.send(outgoing) }
            guard let first = await Deadline.first(pending, within: timeout) else {
                pending.cancel()
                throw ClusterUseCaseError.unavailable("Member \(peer.name) did not answer \(request.method) \(request.target) within \(timeout)")
            }
            answer = try first.get()
        } else {
            answer = try await client.transport.send(outgoing)
        }
        return ForwardedResponse(status: answer.status, headers: answer.headers, body: answer.body)
    }

    /// Closes the pooled connections to every member (the agent is stopping).
    public func closeConnections() async {
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

/// A client websocket to another member, in the frames Gateway's proxy relays.
public struct MemberWebSocket: Sendable {
    let socket: WebSocket
    /// Messages from the member; finishes when it closes.
    public let frames: AsyncStream<ForwardedFrame>

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

    public func send(_ frame: ForwardedFrame) async throws {
        switch frame {
        case .binary(let b): try await socket.send(binary: b)
        case .text(let t): try await socket.send(text: t)
        }
    }

    public func close() async { await socket.close() }
    /// Sends a websocket ping without waiting; the answer moves `lastHeard`.
    public func ping() { socket.ping() }
    /// When a frame of any kind (data, ping, pong) last arrived from the member.
    public var lastHeard: ContinuousClock.Instant { socket.lastHeard }
}

extension MemberClient: ImageTarballFetcher {
    /// GET /1.0/images/<fp>/export on `member`; only a 200 counts (the caller verifies the hash).
    public func fetchTarball(fingerprint: String, from member: String, timeout: Duration) async throws -> [UInt8] {
        let request = ForwardedRequest(method: "GET", target: "/1.0/images/\(fingerprint)/export",
                                       headers: [(ForwardedRequest.markerHeader, localMemberName)], body: [])
        let answer = try await send(request, to: .name(member), timeout: timeout)
        guard answer.status == 200 else {
            let detail = String(decoding: answer.body.prefix(300), as: UTF8.self)
            throw ClusterUseCaseError.unavailable("Member \(member) answered \(answer.status) to the image export: \(detail)")
        }
        return answer.body
    }
}

/// Asks the owner of placed instances to create them.
extension MemberClient: InstanceMaterialiser {
    /// How long an owner may take to accept the work (it answers with an operation at once).
    public static let acceptTimeout: Duration = .seconds(15)

    public func materialise(_ post: InstancesMaterialisePost, on member: String) async throws -> APIOperation {
        let body = try JSONEncoder().encode(post)
        let answer = try await send(
            ForwardedRequest(method: "POST", target: "/internal/instances/materialise",
                             headers: [("Content-Type", "application/json"), (ForwardedRequest.markerHeader, localMemberName)],
                             body: Array(body)),
            to: .name(member), timeout: Self.acceptTimeout)
        return try Self.operation(from: answer, member: member)
    }

    /// How long an owner may take to report an operation: as long as a member may take to report
    /// its instances in a cluster-wide list (Gateway's `Forwarding.stateTimeout`).
    static let operationTimeout: Duration = .seconds(2)

    public func operation(_ id: String, on member: String) async throws -> APIOperation {
        let answer = try await send(
            ForwardedRequest(method: "GET", target: "/1.0/operations/\(id)",
                             headers: [(ForwardedRequest.markerHeader, localMemberName)], body: []),
            to: .name(member), timeout: Self.operationTimeout)
        return try Self.operation(from: answer, member: member)
    }

    /// The operation in an answer (sync or async envelope), or the member's error as `APIError`.
    static func operation(from answer: ForwardedResponse, member: String) throws -> APIOperation {
        guard (200..<300).contains(answer.status),
              let op = try? JSONDecoder().decode(SyncEnvelope<APIOperation>.self, from: Data(answer.body)).metadata else {
            throw failure(answer, member: member, status: answer.status >= 400 ? answer.status : 500)
        }
        return op
    }

    /// A member's answer that is not what was asked for, as `APIError`: its error message
    /// (LXD's shape), else the start of its body.
    static func failure(_ answer: ForwardedResponse, member: String, status: Int) -> APIError {
        struct Failure: Decodable { var error: String? }
        let message = (try? JSONDecoder().decode(Failure.self, from: Data(answer.body)))?.error.flatMap { $0.isEmpty ? nil : $0 }
            ?? String(decoding: answer.body.prefix(300), as: UTF8.self)
        return APIError(status, "member \(member): \(message)")
    }
}

/// LXD's envelope around a member's answer.
struct SyncEnvelope<Metadata: Decodable>: Decodable {
    var metadata: Metadata?
}
