import Dqlite
import Foundation
import Logging
import Testing

/// Talks to a real node with the bare codec over a socket, to pin down what the node actually sends.
@Suite("Raw protocol against a real node")
struct RawProtocolTests {
    func send(_ fd: Int32, _ bytes: [UInt8]) throws {
        let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard n == bytes.count else { throw DqliteError.io(operation: "test send", errno: errno) }
    }

    func readExactly(_ fd: Int32, _ count: Int) throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: count)
        var got = 0
        while got < count {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + got, count - got, 0) }
            guard n > 0 else { throw DqliteError.io(operation: "test recv", errno: errno) }
            got += n
        }
        return buffer
    }

    func readResponse(_ fd: Int32) throws -> DqliteResponse {
        let header = try WireCodec.decodeHeader(try readExactly(fd, 8))
        return try WireCodec.decodeResponse(type: header.type, body: try readExactly(fd, header.bodySize))
    }

    @Test func bigQueryArrivesAsSeveralRowsMessagesMarkedWith0xee() async throws {
        let t = try TestNode()
        defer { t.shutdown() }
        let pool = t.pool()
        try await pool.withConnection { c in
            try c.exec("CREATE TABLE big (id INTEGER PRIMARY KEY, payload TEXT)")
            try c.exec("BEGIN")
            for i in 0..<1000 { try c.exec("INSERT INTO big VALUES (?, ?)", [.integer(Int64(i)), .text(String(repeating: "y", count: 400))]) }
            try c.exec("COMMIT")
        }
        await pool.close()

        let fd = try connectAbstractSocket(t.node.bindAddress)
        defer { close(fd) }
        try send(fd, WireCodec.handshake())
        try send(fd, try WireCodec.encode(.open(name: "db")))
        guard case .db(let db) = try readResponse(fd) else { Issue.record("OPEN did not answer DB"); return }
        try send(fd, try WireCodec.encode(.querySQL(db: db, sql: "SELECT id, payload FROM big ORDER BY id", params: [])))
        var parts: [DqliteRowsPart] = []
        repeat {
            guard case .rows(let part) = try readResponse(fd) else { Issue.record("QUERY_SQL did not answer ROWS"); return }
            parts.append(part)
        } while parts.last?.hasMore == true
        #expect(parts.count > 1, "400 KB of rows should not fit one ROWS message")
        #expect(parts.allSatisfy { $0.columns == ["id", "payload"] }, "every part repeats the column names")
        #expect(parts.flatMap(\.rows).map { $0[0] } == (0..<1000).map { .integer(Int64($0)) })
    }

    @Test func secondOpenOnOneConnectionIsBusy() async throws {
        let t = try TestNode()
        defer { t.shutdown() }
        let fd = try connectAbstractSocket(t.node.bindAddress)
        let connection = try DqliteConnection(fd: fd, address: t.node.address)
        defer { connection.close() }
        // A fresh node needs an election timeout before it leads; OPEN works before that.
        try connection.open("db")
        #expect(throws: DqliteError.self) { try connection.open("other") }
        do {
            try connection.open("db")
            Issue.record("second OPEN succeeded")
        } catch {
            #expect(error.isBusy, "\(error)")
        }
    }

    @Test func unreachableSocketAndMissingLeaderAreReportedNotHung() async throws {
        #expect(throws: DqliteError.self) { try connectAbstractSocket("@lxd-swift-test-nobody-\(getpid())") }
        #expect(throws: DqliteError.self) { try connectAbstractSocket("not-abstract") }
        let pool = DqlitePool(configuration: .init(seeds: ["10.9.9.9:1"], dialer: AbstractSocketDialer(bindAddresses: [:]),
                                                   leaderTimeout: .milliseconds(300)), logger: Logger(label: "test"))
        await #expect(throws: DqliteError.self) { try await pool.withConnection { _ in 1 } }
    }
}
