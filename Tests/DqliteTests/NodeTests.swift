import Dqlite
import Foundation
import Testing

@Suite("Dqlite against a real node")
struct NodeTests {
    @Test func execAndQueryRoundTripAllValueTypes() async throws {
        let t = try TestNode()
        defer { t.shutdown() }
        let pool = t.pool()
        let rows = try await pool.withConnection { c in
            try c.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, i INTEGER, f REAL, s TEXT, b BLOB, n TEXT)")
            let r = try c.exec("INSERT INTO t (i, f, s, b, n) VALUES (?, ?, ?, ?, ?)",
                               [.integer(-42), .float(2.5), .text("héllo"), .blob([0, 1, 2, 255]), .null])
            #expect(r.lastInsertID == 1)
            #expect(r.rowsAffected == 1)
            return try c.query("SELECT id, i, f, s, b, n FROM t")
        }
        #expect(rows.columns == ["id", "i", "f", "s", "b", "n"])
        #expect(rows.rows == [[.integer(1), .integer(-42), .float(2.5), .text("héllo"), .blob([0, 1, 2, 255]), .null]])
        await pool.close()
    }

    @Test func largeResultArrivesInSeveralPartsAndIsMerged() async throws {
        let t = try TestNode()
        defer { t.shutdown() }
        let pool = t.pool()
        let count = try await pool.withConnection { c in
            try c.exec("CREATE TABLE big (id INTEGER PRIMARY KEY, payload TEXT)")
            try c.exec("BEGIN")
            let payload = String(repeating: "x", count: 500)
            for i in 0..<2000 { try c.exec("INSERT INTO big (id, payload) VALUES (?, ?)", [.integer(Int64(i)), .text(payload)]) }
            try c.exec("COMMIT")
            let rows = try c.query("SELECT id, payload FROM big ORDER BY id")
            #expect(rows.rows.enumerated().allSatisfy { $0.element[0] == .integer(Int64($0.offset)) })
            return rows.rows.count
        }
        // ~1 MB of rows exceeds one ROWS message, so this only passes if 0xee continuations are read.
        #expect(count == 2000)
        await pool.close()
    }

    @Test func errorsCarrySQLiteCodes() async throws {
        let t = try TestNode()
        defer { t.shutdown() }
        let pool = t.pool()
        try await pool.withConnection { c in
            try c.exec("CREATE TABLE u (name TEXT UNIQUE)")
            try c.exec("INSERT INTO u VALUES ('a')")
            do {
                try c.exec("INSERT INTO u VALUES ('a')")
                Issue.record("duplicate insert succeeded")
            } catch let error as DqliteError {
                #expect(error.isConstraintViolation)
                #expect(error.isUniqueViolation)
                #expect(!error.invalidatesConnection)
            }
            do {
                _ = try c.query("SELECT * FROM missing")
                Issue.record("query on a missing table succeeded")
            } catch let error as DqliteError {
                #expect(error.code == 1)
                #expect("\(error)".contains("no such table"))
            }
            // The connection is still usable after server-side errors.
            #expect(try c.query("SELECT count(*) FROM u").rows == [[.integer(1)]])
        }
        await pool.close()
    }

    @Test func clusterListsTheSingleVoter() async throws {
        let t = try TestNode()
        defer { t.shutdown() }
        let pool = t.pool()
        let (servers, leader) = try await pool.withConnection { c in (try c.cluster(), try c.leader()) }
        #expect(servers == [DqliteServerInfo(id: 1, address: t.node.address, role: .voter)])
        #expect(leader?.address == t.node.address)
        await pool.close()
    }

    @Test func poolBoundsConnectionsAndRunsConcurrentWork() async throws {
        let t = try TestNode()
        defer { t.shutdown() }
        let pool = t.pool(maxConnections: 3)
        try await pool.withConnection { c in _ = try c.exec("CREATE TABLE k (v INTEGER)") }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<12 {
                group.addTask {
                    try await pool.withConnection { c in _ = try c.query("SELECT ?", [.integer(Int64(i))]) }
                }
            }
            try await group.waitForAll()
        }
        let open = await pool.openConnections
        #expect(open >= 1 && open <= 3)
        await pool.close()
        await #expect(throws: DqliteError.poolClosed) { try await pool.withConnection { _ in 1 } }
    }

    @Test func sequentialInsertThroughput() async throws {
        let t = try TestNode()
        defer { t.shutdown() }
        let pool = t.pool(maxConnections: 1)
        let n = 500
        let clock = ContinuousClock()
        let elapsed = try await pool.withConnection { c in
            try c.exec("CREATE TABLE bench (id INTEGER PRIMARY KEY, v TEXT)")
            return clock.measure {
                for i in 0..<n {
                    _ = try? c.exec("BEGIN")
                    _ = try? c.exec("INSERT INTO bench (v) VALUES (?)", [.text("row \(i)")])
                    _ = try? c.exec("COMMIT")
                }
            }
        }
        let count = try await pool.withConnection { c in try c.query("SELECT count(*) FROM bench").rows }
        #expect(count == [[.integer(Int64(n))]])
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        print("dqlite figure: \(n) sequential single-row INSERT transactions (BEGIN/INSERT/COMMIT, 3 round trips) on one member: \(Int(Double(n) / seconds)) tx/s, \(String(format: "%.2f", seconds * 1000 / Double(n))) ms/tx")
        await pool.close()
    }
}
