@testable import Dqlite
import Testing

@Suite("Wire codec (protocol v1)")
struct WireCodecTests {
    /// Little-endian bytes of a u64.
    func le(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }

    func body(of frame: [UInt8]) -> [UInt8] { Array(frame.dropFirst(WireCodec.headerSize)) }

    // MARK: exact bytes

    @Test func handshakeIsVersionOneAsU64() {
        #expect(WireCodec.handshake() == [1, 0, 0, 0, 0, 0, 0, 0])
    }

    @Test func leaderRequestIsOneZeroWord() throws {
        #expect(try WireCodec.encode(.leader) == [1, 0, 0, 0, 0, 0, 0, 0] + [UInt8](repeating: 0, count: 8))
    }

    @Test func openPadsNameAndEmptyVFS() throws {
        let frame = try WireCodec.encode(.open(name: "db"))
        #expect(Array(frame.prefix(8)) == [3, 0, 0, 0, 3, 0, 0, 0])
        #expect(body(of: frame) == Array("db".utf8) + [0, 0, 0, 0, 0, 0] + le(0) + [UInt8](repeating: 0, count: 8))
    }

    @Test(arguments: [(0, 8), (1, 8), (7, 8), (8, 16), (15, 16), (16, 24)])
    func textIsNulTerminatedAndWordPadded(length: Int, encodedSize: Int) throws {
        var w = WireWriter()
        try w.text(String(repeating: "a", count: length))
        #expect(w.bytes.count == encodedSize)
        #expect(w.bytes[length] == 0)
        #expect(w.bytes[length...].allSatisfy { $0 == 0 })
    }

    @Test func execSQLWithParamsHasTupleHeaderThenValues() throws {
        let frame = try WireCodec.encode(.execSQL(db: 0, sql: "SELECT 1", params: [.integer(7), .null, .text("ab")]))
        let expected: [UInt8] = le(0)
            + Array("SELECT 1".utf8) + [0] + [UInt8](repeating: 0, count: 7)
            + [3, 1, 5, 3, 0, 0, 0, 0]
            + le(7)
            + le(0)
            + Array("ab".utf8) + [0, 0, 0, 0, 0, 0]
        #expect(body(of: frame) == expected)
        #expect(Array(frame.prefix(8)) == [UInt8(expected.count / 8), 0, 0, 0, 8, 0, 0, 0])
    }

    @Test func emptyParamsStillSendAHeaderWord() throws {
        var w = WireWriter()
        try w.params([])
        #expect(w.bytes == [0, 0, 0, 0, 0, 0, 0, 0])
    }

    @Test func eightParamsNeedTwoHeaderWords() throws {
        var w = WireWriter()
        try w.params(Array(repeating: .integer(1), count: 8))
        #expect(w.bytes.count == 16 + 8 * 8)
        #expect(Array(w.bytes.prefix(16)) == [8, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    }

    @Test func floatsAndNegativeIntegersAreBitPatterns() throws {
        var w = WireWriter()
        try w.params([.float(-1.5), .integer(-2)])
        #expect(Array(w.bytes[8..<16]) == le((-1.5 as Double).bitPattern))
        #expect(Array(w.bytes[16..<24]) == le(UInt64(bitPattern: -2)))
    }

    @Test func blobIsLengthThenPaddedBytes() throws {
        var w = WireWriter()
        w.blob([1, 2, 3, 4, 5, 6, 7, 8, 9])
        #expect(w.bytes == le(9) + [1, 2, 3, 4, 5, 6, 7, 8, 9] + [0, 0, 0, 0, 0, 0, 0])
    }

    @Test func execAndQueryPackDbAndStatementIntoOneWord() throws {
        let frame = try WireCodec.encode(.exec(db: 2, stmt: 9, params: []))
        #expect(Array(body(of: frame).prefix(8)) == [2, 0, 0, 0, 9, 0, 0, 0])
        #expect(frame[4] == 5)
        #expect(try WireCodec.encode(.query(db: 2, stmt: 9, params: []))[4] == 6)
        #expect(body(of: try WireCodec.encode(.finalize(db: 2, stmt: 9))) == [2, 0, 0, 0, 9, 0, 0, 0])
    }

    @Test func requestTypeNumbersMatchTheProtocol() throws {
        let cases: [(DqliteRequest, UInt8)] = [
            (.leader, 0), (.client(id: 1), 1), (.open(name: "db"), 3), (.prepare(db: 0, sql: "x"), 4),
            (.exec(db: 0, stmt: 0, params: []), 5), (.query(db: 0, stmt: 0, params: []), 6), (.finalize(db: 0, stmt: 0), 7),
            (.execSQL(db: 0, sql: "x", params: []), 8), (.querySQL(db: 0, sql: "x", params: []), 9),
            (.add(id: 2, address: "a"), 12), (.assign(id: 2, role: .spare), 13), (.remove(id: 2), 14),
            (.cluster(format: .withRole), 16), (.transfer(id: 2), 17),
        ]
        for (request, type) in cases {
            #expect(try WireCodec.encode(request)[4] == type, "\(request)")
        }
    }

    @Test func rowsHeaderPacksTypeNibblesLowFirst() throws {
        let part = DqliteRowsPart(columns: ["a", "b", "c"], rows: [[.integer(1), .null, .text("x")]], hasMore: false)
        let encoded = body(of: try WireCodec.encode(.rows(part)))
        let expected: [UInt8] = le(3)
            + [97, 0, 0, 0, 0, 0, 0, 0] + [98, 0, 0, 0, 0, 0, 0, 0] + [99, 0, 0, 0, 0, 0, 0, 0]
            + [0x51, 0x03, 0, 0, 0, 0, 0, 0]
            + le(1) + le(0) + [120, 0, 0, 0, 0, 0, 0, 0]
            + [UInt8](repeating: 0xff, count: 8)
        #expect(encoded == expected)
    }

    @Test func rowsContinuationMarkerSetsHasMore() throws {
        let part = DqliteRowsPart(columns: ["n"], rows: [[.integer(1)], [.integer(2)]], hasMore: true)
        let encoded = body(of: try WireCodec.encode(.rows(part)))
        #expect(Array(encoded.suffix(8)) == [UInt8](repeating: 0xee, count: 8))
        #expect(try WireCodec.decodeResponse(type: 7, body: encoded) == .rows(part))
    }

    @Test func rowsDecodeExtraWireTypes() throws {
        // Columns: unix time (9), ISO-8601 (10), boolean (11), float (2).
        let bytes: [UInt8] = le(4)
            + [116, 0, 0, 0, 0, 0, 0, 0] + [105, 0, 0, 0, 0, 0, 0, 0] + [98, 0, 0, 0, 0, 0, 0, 0] + [102, 0, 0, 0, 0, 0, 0, 0]
            + [0xa9, 0x2b, 0, 0, 0, 0, 0, 0]
            + le(1_700_000_000) + Array("2026-11-27".utf8) + [0] + [UInt8](repeating: 0, count: 5) + le(5) + le((0.25 as Double).bitPattern)
            + [UInt8](repeating: 0xff, count: 8)
        let decoded = try WireCodec.decodeResponse(type: 7, body: bytes)
        #expect(decoded == .rows(DqliteRowsPart(columns: ["t", "i", "b", "f"],
                                                rows: [[.integer(1_700_000_000), .text("2026-11-27"), .integer(1), .float(0.25)]],
                                                hasMore: false)))
    }

    @Test func failureCarriesCodeAndMessage() throws {
        let bytes = le(2067) + Array("UNIQUE constraint failed: t.a".utf8) + [0, 0, 0]
        #expect(try WireCodec.decodeResponse(type: 0, body: bytes) == .failure(code: 2067, message: "UNIQUE constraint failed: t.a"))
    }

    @Test func resultIsTwoSignedWords() throws {
        #expect(try WireCodec.decodeResponse(type: 6, body: le(42) + le(3)) == .result(DqliteExecResult(lastInsertID: 42, rowsAffected: 3)))
    }

    @Test func headerDecodes() throws {
        #expect(try WireCodec.decodeHeader([2, 0, 0, 0, 7, 0, 0x34, 0x12]) == WireCodec.Header(words: 2, type: 7, schema: 0, extra: 0x1234))
        #expect(throws: DqliteError.self) { try WireCodec.decodeHeader([2, 0, 0]) }
    }

    // MARK: round trips

    static let requests: [DqliteRequest] = [
        .leader, .client(id: 77), .heartbeat(timestamp: 123), .open(name: "db", flags: 6, vfs: "test"),
        .prepare(db: 1, sql: "SELECT ?"),
        .exec(db: 1, stmt: 2, params: [.integer(.min), .float(3.25), .text(""), .blob([]), .null]),
        .query(db: 1, stmt: 2, params: [.blob([0, 255, 7]), .text("üñí")]),
        .finalize(db: 1, stmt: 2),
        .execSQL(db: 0, sql: "INSERT INTO t VALUES (?, ?)", params: [.integer(.max), .text("12345678")]),
        .querySQL(db: 0, sql: "SELECT * FROM t", params: []),
        .interrupt(db: 0), .add(id: 3, address: "10.0.0.3:8443"), .assign(id: 3, role: .standby), .remove(id: 3),
        .cluster(format: .idAndAddress), .cluster(format: .withRole), .transfer(id: 2),
    ]

    @Test(arguments: requests)
    func requestRoundTrips(_ request: DqliteRequest) throws {
        let frame = try WireCodec.encode(request)
        let header = try WireCodec.decodeHeader(frame)
        #expect(header.bodySize == frame.count - 8)
        #expect(frame.count % 8 == 0)
        #expect(try WireCodec.decodeRequest(type: header.type, body: body(of: frame)) == request)
    }

    static let responses: [DqliteResponse] = [
        .failure(code: 10250, message: "not leader"), .server(id: 1, address: "127.0.0.1:8443"), .welcome(heartbeatTimeout: 15000),
        .servers([DqliteServerInfo(id: 1, address: "a:1", role: .voter), DqliteServerInfo(id: 2, address: "b:22", role: .spare)]),
        .servers([]), .db(id: 0), .stmt(db: 0, id: 4, paramCount: 2),
        .result(DqliteExecResult(lastInsertID: -1, rowsAffected: 0)),
        .rows(DqliteRowsPart(columns: [], rows: [], hasMore: false)),
        .rows(DqliteRowsPart(columns: ["a", "b"], rows: [], hasMore: true)),
        .rows(DqliteRowsPart(columns: ["a", "bb", "ccc"], rows: [
            [.integer(1), .float(-0.5), .text("x")],
            [.null, .blob([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]), .null],
            [.text(String(repeating: "z", count: 100)), .integer(0), .blob([])],
        ], hasMore: false)),
        .empty,
    ]

    @Test(arguments: responses)
    func responseRoundTrips(_ response: DqliteResponse) throws {
        let frame = try WireCodec.encode(response)
        let header = try WireCodec.decodeHeader(frame)
        #expect(header.type == response.type)
        #expect(try WireCodec.decodeResponse(type: header.type, body: body(of: frame)) == response)
    }

    @Test func serversWithoutRoleFormat() throws {
        let servers = DqliteResponse.servers([DqliteServerInfo(id: 9, address: "x", role: .voter)])
        let frame = try WireCodec.encode(servers, serversFormat: .idAndAddress)
        #expect(body(of: frame) == le(1) + le(9) + [120, 0, 0, 0, 0, 0, 0, 0])
        #expect(try WireCodec.decodeResponse(type: 3, body: body(of: frame), serversFormat: .idAndAddress) == servers)
    }

    // MARK: bad input: errors, never crashes

    /// EMPTY's body carries nothing and is ignored on decode, so it has no truncated form.
    @Test(arguments: responses.filter { $0 != .empty })
    func everyTruncationOfAResponseThrows(_ response: DqliteResponse) throws {
        let full = body(of: try WireCodec.encode(response))
        for length in 0..<full.count {
            #expect(throws: DqliteError.self, "\(response) cut at \(length)") {
                try WireCodec.decodeResponse(type: response.type, body: Array(full.prefix(length)))
            }
        }
    }

    @Test(arguments: requests)
    func everyTruncationOfARequestThrows(_ request: DqliteRequest) throws {
        let frame = try WireCodec.encode(request)
        let full = body(of: frame)
        for length in 0..<full.count {
            #expect(throws: DqliteError.self, "\(request) cut at \(length)") {
                try WireCodec.decodeRequest(type: frame[4], body: Array(full.prefix(length)))
            }
        }
    }

    @Test func hostileLengthsAreRejectedBeforeAllocating() {
        #expect(throws: DqliteError.self) { try WireCodec.decodeResponse(type: 7, body: le(UInt64.max)) }
        #expect(throws: DqliteError.self) { try WireCodec.decodeResponse(type: 3, body: le(1 << 40)) }
        let blobRow: [UInt8] = le(1) + [98, 0, 0, 0, 0, 0, 0, 0] + [4, 0, 0, 0, 0, 0, 0, 0] + le(UInt64.max)
        #expect(throws: DqliteError.self) { try WireCodec.decodeResponse(type: 7, body: blobRow) }
    }

    @Test func malformedValuesAreErrors() {
        // Unknown value type 7 in a row header.
        let badType: [UInt8] = le(1) + [97, 0, 0, 0, 0, 0, 0, 0] + [7, 0, 0, 0, 0, 0, 0, 0] + le(0) + [UInt8](repeating: 0xff, count: 8)
        #expect(throws: DqliteError.self) { try WireCodec.decodeResponse(type: 7, body: badType) }
        // Invalid UTF-8 in text.
        #expect(throws: DqliteError.self) { try WireCodec.decodeResponse(type: 0, body: le(1) + [0xc3, 0x28, 0, 0, 0, 0, 0, 0]) }
        // Unknown response type.
        #expect(throws: DqliteError.self) { try WireCodec.decodeResponse(type: 99, body: le(0)) }
        // ROWS with rows but no end marker.
        #expect(throws: DqliteError.self) { try WireCodec.decodeResponse(type: 7, body: le(1) + [97, 0, 0, 0, 0, 0, 0, 0] + [1, 0, 0, 0, 0, 0, 0, 0] + le(5)) }
    }

    @Test func unrepresentableRequestsThrow() {
        #expect(throws: DqliteError.self) { try WireCodec.encode(.execSQL(db: 0, sql: "a\u{0}b", params: [])) }
        #expect(throws: DqliteError.self) { try WireCodec.encode(.execSQL(db: 0, sql: "x", params: Array(repeating: .null, count: 256))) }
        #expect(throws: DqliteError.self) { try WireCodec.encode(.rows(DqliteRowsPart(columns: ["a"], rows: [[]], hasMore: false))) }
    }

    @Test func randomBytesNeverCrashTheDecoder() {
        // Deterministic LCG so a failure reproduces.
        var state: UInt64 = 0x9e37_79b9_7f4a_7c15
        func next() -> UInt8 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return UInt8(truncatingIfNeeded: state >> 33)
        }
        var decoded = 0
        for i in 0..<4000 {
            let bytes = (0..<(i % 96)).map { _ in next() }
            for type in UInt8(0)...10 {
                if (try? WireCodec.decodeResponse(type: type, body: bytes)) != nil { decoded += 1 }
                _ = try? WireCodec.decodeRequest(type: type, body: bytes)
            }
        }
        // Some random inputs are valid (e.g. EMPTY ignores its body); the point is reaching here.
        #expect(decoded > 0)
    }
}
