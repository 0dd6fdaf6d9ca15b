import Dqlite
import Foundation
import Logging
import Synchronization
import Testing

/// An in-memory `PeerStream` pair: what one side sends, the other receives.
final class MemoryPeerStream: PeerStream {
    let received: AsyncStream<[UInt8]>
    private let inbound: AsyncStream<[UInt8]>.Continuation
    private let peer = Mutex<MemoryPeerStream?>(nil)
    private let sentBytes = Mutex(0)

    private init() {
        (received, inbound) = AsyncStream<[UInt8]>.makeStream()
    }

    static func pair() -> (MemoryPeerStream, MemoryPeerStream) {
        let a = MemoryPeerStream(), b = MemoryPeerStream()
        a.peer.withLock { $0 = b }
        b.peer.withLock { $0 = a }
        return (a, b)
    }

    var bytesSent: Int { sentBytes.withLock { $0 } }

    func send(_ bytes: [UInt8]) async throws {
        guard let p = peer.withLock({ $0 }) else { throw CancellationError() }
        sentBytes.withLock { $0 += bytes.count }
        p.inbound.yield(bytes)
    }

    func close() async {
        let p = peer.withLock { p in defer { p = nil }; return p }
        inbound.finish()
        p?.inbound.finish()
    }
}

/// Two nodes whose raft and client traffic crosses `PeerStream`s (as it will cross the agents'
/// TLS links), never the nodes' sockets directly.
@Suite("Dqlite peer bridge")
struct PeerBridgeTests {
    @Test func twoNodesReplicateThroughBridgedStreams() async throws {
        let pid = getpid()
        let base = NSTemporaryDirectory() + "dqlite-bridge-\(pid)-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: base) }
        let addresses = ["127.0.0.1:33001", "127.0.0.1:33002"]
        let binds = ["@lxd-swift-test-bridge-\(pid)-1", "@lxd-swift-test-bridge-\(pid)-2"]
        let logger = Logger(label: "test.bridge")
        let streams = Mutex<[MemoryPeerStream]>([])
        let dialer = BridgedPeerDialer { address in
            guard let i = addresses.firstIndex(of: address) else { throw CancellationError() }
            let (near, far) = MemoryPeerStream.pair()
            streams.withLock { $0.append(near) }
            Task { await DqlitePeerService.serve(far, bindAddress: binds[i], logger: logger) }
            return near
        }
        let nodes = try (0..<2).map { i in
            try DqliteNode(DqliteNode.Configuration(id: UInt64(i + 1), address: addresses[i], dataDir: "\(base)/\(i + 1)",
                                                    bindAddress: binds[i], peerDialer: dialer), logger: logger)
        }
        for node in nodes { try node.start() }
        defer { for node in nodes { try? node.stop() } }

        let pool = DqlitePool(configuration: .init(seeds: addresses, dialer: dialer), logger: logger)
        try await pool.withConnection { c in
            try c.add(id: 2, address: addresses[1])
            try c.assign(id: 2, role: .voter)
            try c.exec("CREATE TABLE t (v TEXT)")
            try c.exec("INSERT INTO t VALUES ('across the bridge')")
            try c.transfer(to: 2)
        }
        await pool.close()

        // Leadership moved to node 2 over bridged raft traffic; a new client is sent there and reads the row.
        let fresh = DqlitePool(configuration: .init(seeds: [addresses[0]], dialer: dialer), logger: logger)
        let (leader, rows) = try await fresh.withConnection { c in (c.address, try c.query("SELECT v FROM t").rows) }
        #expect(leader == addresses[1])
        #expect(rows == [[.text("across the bridge")]])
        await fresh.close()
        let carried = streams.withLock { $0.reduce(0) { $0 + $1.bytesSent } }
        #expect(streams.withLock { $0.count } >= 2 && carried > 0, "raft and client traffic must cross the bridge (\(carried) bytes)")
    }

    @Test func dialFailsWhenTheAgentDoesNotAnswer() throws {
        let dialer = BridgedPeerDialer(timeout: .milliseconds(200)) { _ in
            try await Task.sleep(for: .seconds(10))
            throw CancellationError()
        }
        #expect(throws: DqliteError.self) { _ = try dialer.dial(address: "127.0.0.1:1") }
    }

    /// A link that opens after raft's dial gave up is closed, not left for the peer to serve.
    @Test func aLinkThatOpensAfterTheDialGaveUpIsClosed() async throws {
        let (near, _) = MemoryPeerStream.pair()
        let dialer = BridgedPeerDialer(timeout: .milliseconds(100)) { _ in
            // Ignores cancellation, as a TLS handshake under way does.
            try? await Task.sleep(for: .milliseconds(400))
            return near
        }
        #expect(throws: DqliteError.self) { _ = try dialer.dial(address: "127.0.0.1:1") }
        var ended = false
        let deadline = ContinuousClock.now + .seconds(5)
        while ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
            // Sending fails once the abandoned stream is closed.
            if (try? await near.send([1])) == nil { ended = true; break }
        }
        #expect(ended, "the late link is still open 5 s after the dial gave up")
    }

    @Test func serveClosesTheStreamWhenTheNodeIsMissing() async {
        let (near, far) = MemoryPeerStream.pair()
        await DqlitePeerService.serve(far, bindAddress: "@lxd-swift-no-such-node-\(getpid())", logger: Logger(label: "test"))
        var got: [[UInt8]] = []
        for await chunk in near.received { got.append(chunk) }
        #expect(got.isEmpty, "the dialing side sees the stream end at once")
    }
}
