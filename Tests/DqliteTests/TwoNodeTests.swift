import Dqlite
import Foundation
import Logging
import Synchronization
import Testing

/// Two nodes in this process whose raft traffic goes through our connect-func hook.
@Suite("Peer dialer hook with two nodes")
struct TwoNodeTests {
    /// Counts dials so the test proves dqlite really used the hook.
    final class CountingDialer: DqlitePeerDialer {
        let inner: AbstractSocketDialer
        let dials = Mutex<Int>(0)
        init(_ inner: AbstractSocketDialer) { self.inner = inner }
        func dial(address: String) throws -> Int32 {
            dials.withLock { $0 += 1 }
            return try inner.dial(address: address)
        }
    }

    @Test func secondVoterJoinsReplicatesAndTakesLeadership() async throws {
        let pid = getpid()
        let base = NSTemporaryDirectory() + "dqlite-two-\(pid)-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: base) }
        let addresses = ["127.0.0.1:31001", "127.0.0.1:31002"]
        let binds = ["@lxd-swift-test-two-\(pid)-1", "@lxd-swift-test-two-\(pid)-2"]
        let dialer = CountingDialer(AbstractSocketDialer(bindAddresses: [addresses[0]: binds[0], addresses[1]: binds[1]]))
        let nodes = try (0..<2).map { i in
            try DqliteNode(DqliteNode.Configuration(id: UInt64(i + 1), address: addresses[i], dataDir: "\(base)/\(i + 1)",
                                                    bindAddress: binds[i], peerDialer: dialer), logger: Logger(label: "test.two"))
        }
        for node in nodes { try node.start() }
        defer { for node in nodes { try? node.stop() } }

        let pool = DqlitePool(configuration: .init(seeds: addresses, dialer: dialer), logger: Logger(label: "test.two"))
        let servers = try await pool.withConnection { c in
            try c.add(id: 2, address: addresses[1])
            try c.assign(id: 2, role: .voter)
            try c.exec("CREATE TABLE t (v TEXT)")
            try c.exec("INSERT INTO t VALUES ('replicated')")
            return try c.cluster()
        }
        #expect(servers.map(\.id) == [1, 2])
        #expect(servers.allSatisfy { $0.role == .voter })
        #expect(dialer.dials.withLock { $0 } > 0, "raft traffic must go through the connect func")

        try await pool.withConnection { c in try c.transfer(to: 2) }
        await pool.close()

        // A new pool asks node 1 for the leader and is sent to node 2, which has the row.
        let fresh = DqlitePool(configuration: .init(seeds: [addresses[0]], dialer: dialer), logger: Logger(label: "test.two"))
        let (leader, rows) = try await fresh.withConnection { c in (c.address, try c.query("SELECT v FROM t").rows) }
        #expect(leader == addresses[1])
        #expect(rows == [[.text("replicated")]])
        await fresh.close()
    }
}
