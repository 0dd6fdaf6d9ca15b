import ClusterDB
import Dqlite
import Foundation
import Logging
import Synchronization
import Testing

@Suite("ClusterDB across a leader change")
struct LeaderChangeTests {
    @Test func transactionOnAStaleLeaderConnectionIsRerunOnTheNewLeader() async throws {
        let pid = getpid()
        let base = NSTemporaryDirectory() + "clusterdb-two-\(pid)-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: base) }
        let addresses = ["127.0.0.1:32001", "127.0.0.1:32002"]
        let binds = ["@lxd-swift-test-cdb-two-\(pid)-1", "@lxd-swift-test-cdb-two-\(pid)-2"]
        let dialer = AbstractSocketDialer(bindAddresses: [addresses[0]: binds[0], addresses[1]: binds[1]])
        let nodes = try (0..<2).map { i in
            try DqliteNode(DqliteNode.Configuration(id: UInt64(i + 1), address: addresses[i], dataDir: "\(base)/\(i + 1)",
                                                    bindAddress: binds[i], peerDialer: dialer), logger: Logger(label: "test.two"))
        }
        for node in nodes { try node.start() }
        defer { for node in nodes { try? node.stop() } }

        let logger = Logger(label: "test.two")
        // One connection, so the second transaction must reuse the connection to the old leader.
        let pool = DqlitePool(configuration: .init(seeds: addresses, dialer: dialer, maxConnections: 1,
                                                   sessionStatements: ClusterDB.sessionStatements), logger: logger)
        let db = try await ClusterDB.open(pool: pool, logger: logger)
        let memberID = try await db.transaction { tx in try tx.ensureMember(name: "m1", address: addresses[0]) }
        try await pool.withConnection { c in
            try c.add(id: 2, address: addresses[1])
            try c.assign(id: 2, role: .voter)
            try c.transfer(to: 2)
        }
        let oldLeaderConnections = await pool.openConnections
        #expect(oldLeaderConnections == 1)

        let runs = Mutex(0)
        let row = try await db.transaction { tx in
            runs.withLock { $0 += 1 }
            return try tx.insertInstance(NewInstance(name: "after-transfer", memberID: memberID, imageFingerprint: "", architecture: "x86_64"))
        }
        #expect(row.location == "m1")
        // The first attempt met "not leader" at BEGIN (before the body), so the body ran once, on the new leader.
        #expect(runs.withLock { $0 } == 1)
        let (leader, names) = try await pool.withConnection { c in (c.address, try c.query("SELECT name FROM instances").rows) }
        #expect(leader == addresses[1])
        #expect(names == [[.text("after-transfer")]])
        await db.close()
    }
}
