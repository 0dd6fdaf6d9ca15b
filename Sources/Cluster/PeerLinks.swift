import Dqlite
import Identity
import LXDClient
import Synchronization

/// The members this one knows locally: whom to dial for database links and whose certificates
/// may open one. Kept outside the database on purpose: the database travels over these links.
public final class PeerDirectory: Sendable {
    private let peers: Mutex<[LocalPeer]>

    public init(_ peers: [LocalPeer]) {
        self.peers = Mutex(peers)
    }

    public var all: [LocalPeer] { peers.withLock { $0 } }

    public func fingerprint(address: String) -> String? {
        peers.withLock { list in list.first { $0.address == address }?.fingerprint }
    }

    public func contains(fingerprint: String) -> Bool {
        peers.withLock { list in list.contains { !$0.fingerprint.isEmpty && $0.fingerprint == fingerprint } }
    }

    /// Replaces the list; true when it changed.
    @discardableResult
    public func replace(_ new: [LocalPeer]) -> Bool {
        peers.withLock { list in
            guard list != new else { return false }
            list = new
            return true
        }
    }
}

/// dqlite's dialer for this member: its own node through the abstract socket, other members
/// through a websocket on their HTTPS listener (mutual TLS, their fingerprint pinned).
public struct MemberLinkDialer: DqlitePeerDialer {
    let localAddress: String
    let localBindAddress: String
    let bridged: BridgedPeerDialer

    public init(localAddress: String, localBindAddress: String, directory: PeerDirectory, identity: TLSIdentity) {
        self.localAddress = localAddress
        self.localBindAddress = localBindAddress
        bridged = BridgedPeerDialer { address in
            guard let fingerprint = directory.fingerprint(address: address), !fingerprint.isEmpty else {
                throw ClusterError.cluster("no certificate known for member \(address): it is not (yet) in this member's peer list")
            }
            let transport = try HTTPChannelTransport.https(addresses: [address], serverFingerprint: fingerprint, identity: identity)
            return WebSocketLink(try await transport.openWebSocket(HTTPRequest(.GET, "/internal/database"), masking: .unmasked))
        }
    }

    public func dial(address: String) throws -> Int32 {
        if address == localAddress { return try connectAbstractSocket(localBindAddress) }
        return try bridged.dial(address: address)
    }
}

/// A client websocket as a dqlite `PeerStream`.
struct WebSocketLink: PeerStream {
    let socket: WebSocket
    let received: AsyncStream<[UInt8]>

    init(_ socket: WebSocket) {
        self.socket = socket
        let (stream, continuation) = AsyncStream<[UInt8]>.makeStream(bufferingPolicy: .unbounded)
        received = stream
        Task {
            for await message in socket.messages {
                if case .binary(let bytes) = message { continuation.yield(bytes) }
            }
            continuation.finish()
        }
    }

    func send(_ bytes: [UInt8]) async throws { try await socket.send(binary: bytes) }
    func close() async { await socket.close() }
}
