/// Pure encoder/decoder for dqlite wire protocol version 1 (no I/O).
///
/// A message is an 8-byte header — body length in 8-byte words (u32 LE),
/// type (u8), schema (u8, always 0 here), extra (u16) — followed by the body.
/// Integers and doubles are little endian; text is UTF-8, NUL-terminated and
/// zero-padded to a word boundary.
public enum WireCodec {
    public static let protocolVersion: UInt64 = 1
    public static let headerSize = 8
    public static let wordSize = 8
    /// The last word of a ROWS body: no more rows.
    public static let rowsDone: UInt64 = 0xffff_ffff_ffff_ffff
    /// The last word of a ROWS body: another ROWS message follows.
    public static let rowsPart: UInt64 = 0xeeee_eeee_eeee_eeee

    /// Bytes a client sends first on a new connection (the server replies nothing).
    public static func handshake() -> [UInt8] {
        var w = WireWriter()
        w.u64(protocolVersion)
        return w.bytes
    }

    // MARK: Framing

    public struct Header: Sendable, Equatable {
        public var words: UInt32
        public var type: UInt8
        public var schema: UInt8
        public var extra: UInt16

        public init(words: UInt32, type: UInt8, schema: UInt8 = 0, extra: UInt16 = 0) {
            self.words = words
            self.type = type
            self.schema = schema
            self.extra = extra
        }

        public var bodySize: Int { Int(words) * WireCodec.wordSize }
    }

    public static func decodeHeader(_ bytes: [UInt8]) throws(DqliteError) -> Header {
        guard bytes.count >= headerSize else {
            throw .malformed("header needs \(headerSize) bytes, got \(bytes.count)")
        }
        var r = WireReader(bytes[0..<headerSize])
        return Header(words: try r.u32(), type: try r.u8(), schema: try r.u8(), extra: try r.u16())
    }

    /// Header + body. The body must already be word aligned (all encoders here guarantee it).
    public static func frame(type: UInt8, body: [UInt8]) -> [UInt8] {
        precondition(body.count % wordSize == 0, "dqlite message body must be word aligned")
        var w = WireWriter()
        w.u32(UInt32(body.count / wordSize))
        w.u8(type)
        w.u8(0)
        w.u16(0)
        return w.bytes + body
    }

    // MARK: Requests

    public static func encode(_ request: DqliteRequest) throws(DqliteError) -> [UInt8] {
        var w = WireWriter()
        switch request {
        case .leader:
            w.u64(0)
        case .client(let id):
            w.u64(id)
        case .heartbeat(let timestamp):
            w.u64(timestamp)
        case .open(let name, let flags, let vfs):
            try w.text(name)
            w.u64(flags)
            try w.text(vfs)
        case .prepare(let db, let sql):
            w.u64(UInt64(db))
            try w.text(sql)
        case .exec(let db, let stmt, let params), .query(let db, let stmt, let params):
            w.u32(db)
            w.u32(stmt)
            try w.params(params)
        case .finalize(let db, let stmt):
            w.u32(db)
            w.u32(stmt)
        case .execSQL(let db, let sql, let params), .querySQL(let db, let sql, let params):
            w.u64(UInt64(db))
            try w.text(sql)
            try w.params(params)
        case .interrupt(let db):
            w.u64(UInt64(db))
        case .add(let id, let address):
            w.u64(id)
            try w.text(address)
        case .assign(let id, let role):
            w.u64(id)
            w.u64(role.rawValue)
        case .remove(let id), .transfer(let id):
            w.u64(id)
        case .cluster(let format):
            w.u64(format.rawValue)
        }
        return frame(type: request.type, body: w.bytes)
    }

    /// Decodes a request body (the server side; used by tests and fakes).
    public static func decodeRequest(type: UInt8, body: [UInt8]) throws(DqliteError) -> DqliteRequest {
        var r = WireReader(body[...])
        let request: DqliteRequest
        switch type {
        case 0: _ = try r.u64(); request = .leader
        case 1: request = .client(id: try r.u64())
        case 2: request = .heartbeat(timestamp: try r.u64())
        case 3: request = .open(name: try r.text(), flags: try r.u64(), vfs: try r.text())
        case 4: request = .prepare(db: try r.u32Word(), sql: try r.text())
        case 5: request = .exec(db: try r.u32(), stmt: try r.u32(), params: try r.params())
        case 6: request = .query(db: try r.u32(), stmt: try r.u32(), params: try r.params())
        case 7: request = .finalize(db: try r.u32(), stmt: try r.u32())
        case 8: request = .execSQL(db: try r.u32Word(), sql: try r.text(), params: try r.params())
        case 9: request = .querySQL(db: try r.u32Word(), sql: try r.text(), params: try r.params())
        case 10: request = .interrupt(db: try r.u32Word())
        case 12: request = .add(id: try r.u64(), address: try r.text())
        case 13:
            let id = try r.u64()
            let raw = try r.u64()
            guard let role = DqliteRole(rawValue: raw) else { throw .malformed("ASSIGN with unknown role \(raw)") }
            request = .assign(id: id, role: role)
        case 14: request = .remove(id: try r.u64())
        case 16:
            let raw = try r.u64()
            guard let format = DqliteRequest.ClusterFormat(rawValue: raw) else { throw .malformed("CLUSTER with unknown format \(raw)") }
            request = .cluster(format: format)
        case 17: request = .transfer(id: try r.u64())
        default: throw .malformed("unsupported request type \(type)")
        }
        return request
    }

    // MARK: Responses

    /// Decodes a response body. `serversFormat` must match the CLUSTER request's format.
    public static func decodeResponse(type: UInt8, body: [UInt8], serversFormat: DqliteRequest.ClusterFormat = .withRole) throws(DqliteError) -> DqliteResponse {
        var r = WireReader(body[...])
        switch type {
        case 0: return .failure(code: try r.u64(), message: try r.text())
        case 1: return .server(id: try r.u64(), address: try r.text())
        case 2: return .welcome(heartbeatTimeout: try r.u64())
        case 3:
            let count = try r.u64()
            // Each entry is at least two words: refuse counts the body cannot hold before allocating.
            guard count <= UInt64(r.remaining / 16) else { throw .malformed("SERVERS claims \(count) entries in \(body.count) bytes") }
            var servers: [DqliteServerInfo] = []
            for _ in 0..<count {
                let id = try r.u64()
                let address = try r.text()
                var role = DqliteRole.voter
                if serversFormat == .withRole {
                    let raw = try r.u64()
                    guard let decoded = DqliteRole(rawValue: raw) else { throw .malformed("SERVERS entry with unknown role \(raw)") }
                    role = decoded
                }
                servers.append(DqliteServerInfo(id: id, address: address, role: role))
            }
            return .servers(servers)
        case 4:
            let id = try r.u32()
            _ = try r.u32()
            return .db(id: id)
        case 5: return .stmt(db: try r.u32(), id: try r.u32(), paramCount: try r.u64())
        case 6: return .result(DqliteExecResult(lastInsertID: Int64(bitPattern: try r.u64()), rowsAffected: Int64(bitPattern: try r.u64())))
        case 7: return .rows(try r.rows())
        case 8: return .empty
        default: throw .malformed("unsupported response type \(type)")
        }
    }

    /// Encodes a response as a node would (used by tests and fakes).
    public static func encode(_ response: DqliteResponse, serversFormat: DqliteRequest.ClusterFormat = .withRole) throws(DqliteError) -> [UInt8] {
        var w = WireWriter()
        switch response {
        case .failure(let code, let message):
            w.u64(code)
            try w.text(message)
        case .server(let id, let address):
            w.u64(id)
            try w.text(address)
        case .welcome(let timeout):
            w.u64(timeout)
        case .servers(let servers):
            w.u64(UInt64(servers.count))
            for s in servers {
                w.u64(s.id)
                try w.text(s.address)
                if serversFormat == .withRole { w.u64(s.role.rawValue) }
            }
        case .db(let id):
            w.u32(id)
            w.u32(0)
        case .stmt(let db, let id, let paramCount):
            w.u32(db)
            w.u32(id)
            w.u64(paramCount)
        case .result(let result):
            w.u64(UInt64(bitPattern: result.lastInsertID))
            w.u64(UInt64(bitPattern: result.rowsAffected))
        case .rows(let part):
            try w.rows(part)
        case .empty:
            w.u64(0)
        }
        return frame(type: response.type, body: w.bytes)
    }
}

/// Node roles as numbered on the wire (raft.h numbers them differently).
public enum DqliteRole: UInt64, Sendable, Equatable {
    case voter = 0
    case standby = 1
    case spare = 2
}

public struct DqliteServerInfo: Sendable, Equatable {
    public var id: UInt64
    public var address: String
    public var role: DqliteRole

    public init(id: UInt64, address: String, role: DqliteRole) {
        self.id = id
        self.address = address
        self.role = role
    }
}

public enum DqliteRequest: Sendable, Equatable {
    public enum ClusterFormat: UInt64, Sendable {
        case idAndAddress = 0
        case withRole = 1
    }

    case leader
    case client(id: UInt64)
    case heartbeat(timestamp: UInt64)
    case open(name: String, flags: UInt64 = 0, vfs: String = "")
    case prepare(db: UInt32, sql: String)
    case exec(db: UInt32, stmt: UInt32, params: [DqliteValue])
    case query(db: UInt32, stmt: UInt32, params: [DqliteValue])
    case finalize(db: UInt32, stmt: UInt32)
    case execSQL(db: UInt32, sql: String, params: [DqliteValue])
    case querySQL(db: UInt32, sql: String, params: [DqliteValue])
    case interrupt(db: UInt32)
    case add(id: UInt64, address: String)
    case assign(id: UInt64, role: DqliteRole)
    case remove(id: UInt64)
    case cluster(format: ClusterFormat)
    case transfer(id: UInt64)

    public var type: UInt8 {
        switch self {
        case .leader: 0
        case .client: 1
        case .heartbeat: 2
        case .open: 3
        case .prepare: 4
        case .exec: 5
        case .query: 6
        case .finalize: 7
        case .execSQL: 8
        case .querySQL: 9
        case .interrupt: 10
        case .add: 12
        case .assign: 13
        case .remove: 14
        case .cluster: 16
        case .transfer: 17
        }
    }

    /// Short name for error messages (never includes SQL parameters).
    public var name: String {
        switch self {
        case .leader: "LEADER"
        case .client: "CLIENT"
        case .heartbeat: "HEARTBEAT"
        case .open(let name, _, _): "OPEN \(name)"
        case .prepare: "PREPARE"
        case .exec: "EXEC"
        case .query: "QUERY"
        case .finalize: "FINALIZE"
        case .execSQL(_, let sql, _): "EXEC_SQL \(sql.prefix(80))"
        case .querySQL(_, let sql, _): "QUERY_SQL \(sql.prefix(80))"
        case .interrupt: "INTERRUPT"
        case .add(let id, _): "ADD \(id)"
        case .assign(let id, _): "ASSIGN \(id)"
        case .remove(let id): "REMOVE \(id)"
        case .cluster: "CLUSTER"
        case .transfer(let id): "TRANSFER \(id)"
        }
    }
}

/// One ROWS message: column names, its rows, and whether another ROWS message follows (0xee).
public struct DqliteRowsPart: Sendable, Equatable {
    public var columns: [String]
    public var rows: [[DqliteValue]]
    public var hasMore: Bool

    public init(columns: [String], rows: [[DqliteValue]], hasMore: Bool) {
        self.columns = columns
        self.rows = rows
        self.hasMore = hasMore
    }
}

public enum DqliteResponse: Sendable, Equatable {
    case failure(code: UInt64, message: String)
    case server(id: UInt64, address: String)
    case welcome(heartbeatTimeout: UInt64)
    case servers([DqliteServerInfo])
    case db(id: UInt32)
    case stmt(db: UInt32, id: UInt32, paramCount: UInt64)
    case result(DqliteExecResult)
    case rows(DqliteRowsPart)
    case empty

    public var type: UInt8 {
        switch self {
        case .failure: 0
        case .server: 1
        case .welcome: 2
        case .servers: 3
        case .db: 4
        case .stmt: 5
        case .result: 6
        case .rows: 7
        case .empty: 8
        }
    }

    public static func name(ofType type: UInt8) -> String {
        switch type {
        case 0: "FAILURE"
        case 1: "SERVER"
        case 2: "WELCOME"
        case 3: "SERVERS"
        case 4: "DB"
        case 5: "STMT"
        case 6: "RESULT"
        case 7: "ROWS"
        case 8: "EMPTY"
        case 9: "FILES"
        case 10: "METADATA"
        default: "type \(type)"
        }
    }
}

// MARK: - Primitive writer/reader

/// Value type codes inside tuples.
enum WireType {
    static let integer: UInt8 = 1
    static let float: UInt8 = 2
    static let text: UInt8 = 3
    static let blob: UInt8 = 4
    static let null: UInt8 = 5
    static let unixTime: UInt8 = 9
    static let iso8601: UInt8 = 10
    static let boolean: UInt8 = 11
}

public struct WireWriter: Sendable {
    public private(set) var bytes: [UInt8] = []

    public init() {}

    public mutating func u8(_ v: UInt8) { bytes.append(v) }
    public mutating func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    public mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    public mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    public mutating func f64(_ v: Double) { u64(v.bitPattern) }

    /// Zero bytes up to the next word boundary.
    public mutating func pad() {
        let rem = bytes.count % WireCodec.wordSize
        if rem != 0 { bytes.append(contentsOf: repeatElement(0, count: WireCodec.wordSize - rem)) }
    }

    /// NUL-terminated, padded UTF-8. Text with an embedded NUL cannot be represented.
    public mutating func text(_ s: String) throws(DqliteError) {
        let utf8 = Array(s.utf8)
        if utf8.contains(0) { throw .malformed("text contains a NUL byte and cannot be sent: \(s.prefix(40).debugDescription)") }
        bytes.append(contentsOf: utf8)
        bytes.append(0)
        pad()
    }

    public mutating func blob(_ b: [UInt8]) {
        u64(UInt64(b.count))
        bytes.append(contentsOf: b)
        pad()
    }

    mutating func value(_ v: DqliteValue) throws(DqliteError) {
        switch v {
        case .integer(let i): u64(UInt64(bitPattern: i))
        case .float(let d): f64(d)
        case .text(let s): try text(s)
        case .blob(let b): blob(b)
        case .null: u64(0)
        }
    }

    static func typeCode(_ v: DqliteValue) -> UInt8 {
        switch v {
        case .integer: WireType.integer
        case .float: WireType.float
        case .text: WireType.text
        case .blob: WireType.blob
        case .null: WireType.null
        }
    }

    /// Statement parameters: u8 count, one type byte each, padding, then the values.
    public mutating func params(_ values: [DqliteValue]) throws(DqliteError) {
        guard values.count <= 255 else { throw .malformed("\(values.count) parameters; protocol v1 allows at most 255 per statement") }
        u8(UInt8(values.count))
        for v in values { u8(Self.typeCode(v)) }
        pad()
        for v in values { try value(v) }
    }

    /// A ROWS body: column count, names, rows (4-bit type header, low nibble first), end marker.
    public mutating func rows(_ part: DqliteRowsPart) throws(DqliteError) {
        u64(UInt64(part.columns.count))
        for c in part.columns { try text(c) }
        for row in part.rows {
            guard row.count == part.columns.count else {
                throw .malformed("row has \(row.count) values for \(part.columns.count) columns")
            }
            var header = [UInt8](repeating: 0, count: (row.count + 1) / 2)
            for (i, v) in row.enumerated() {
                header[i / 2] |= Self.typeCode(v) << (i % 2 == 0 ? 0 : 4)
            }
            bytes.append(contentsOf: header)
            pad()
            for v in row { try value(v) }
        }
        u64(part.hasMore ? WireCodec.rowsPart : WireCodec.rowsDone)
    }
}

/// Bounds-checked reader: every read past the end throws instead of trapping.
public struct WireReader: Sendable {
    private let bytes: ArraySlice<UInt8>
    private var offset: Int

    public init(_ bytes: ArraySlice<UInt8>) {
        self.bytes = bytes
        self.offset = bytes.startIndex
    }

    public var remaining: Int { bytes.endIndex - offset }

    private mutating func take(_ n: Int, _ what: String) throws(DqliteError) -> ArraySlice<UInt8> {
        guard n >= 0, remaining >= n else {
            throw .malformed("truncated: \(what) needs \(n) bytes, \(remaining) left")
        }
        defer { offset += n }
        return bytes[offset..<offset + n]
    }

    private mutating func le<T: FixedWidthInteger>(_: T.Type, _ what: String) throws(DqliteError) -> T {
        let slice = try take(MemoryLayout<T>.size, what)
        var v: T = 0
        for (i, b) in slice.enumerated() { v |= T(b) << (8 * i) }
        return v
    }

    public mutating func u8() throws(DqliteError) -> UInt8 { try le(UInt8.self, "u8") }
    public mutating func u16() throws(DqliteError) -> UInt16 { try le(UInt16.self, "u16") }
    public mutating func u32() throws(DqliteError) -> UInt32 { try le(UInt32.self, "u32") }
    public mutating func u64() throws(DqliteError) -> UInt64 { try le(UInt64.self, "u64") }
    public mutating func f64() throws(DqliteError) -> Double { Double(bitPattern: try u64()) }

    /// A u64 field whose value must fit a u32 (db ids sent as a whole word).
    mutating func u32Word() throws(DqliteError) -> UInt32 {
        let v = try u64()
        guard let small = UInt32(exactly: v) else { throw .malformed("id \(v) does not fit 32 bits") }
        return small
    }

    func peekU64() throws(DqliteError) -> UInt64 {
        var copy = self
        return try copy.u64()
    }

    /// Skips to the next word boundary (relative to the start of the body).
    public mutating func align() throws(DqliteError) {
        let rem = (offset - bytes.startIndex) % WireCodec.wordSize
        if rem != 0 { _ = try take(WireCodec.wordSize - rem, "padding") }
    }

    public mutating func text() throws(DqliteError) -> String {
        guard let nul = bytes[offset...].firstIndex(of: 0) else {
            throw .malformed("truncated: text without NUL terminator")
        }
        let utf8 = bytes[offset..<nul]
        offset = nul + 1
        try align()
        guard let s = String(validating: utf8, as: UTF8.self) else { throw .malformed("text is not valid UTF-8") }
        return s
    }

    public mutating func blob() throws(DqliteError) -> [UInt8] {
        let n = try u64()
        guard n <= UInt64(remaining) else { throw .malformed("truncated: blob of \(n) bytes, \(remaining) left") }
        let data = Array(try take(Int(n), "blob"))
        try align()
        return data
    }

    mutating func value(type: UInt8) throws(DqliteError) -> DqliteValue {
        switch type {
        case WireType.integer, WireType.unixTime: return .integer(Int64(bitPattern: try u64()))
        case WireType.boolean: return .integer(try u64() == 0 ? 0 : 1)
        case WireType.float: return .float(try f64())
        case WireType.text, WireType.iso8601: return .text(try text())
        case WireType.blob: return .blob(try blob())
        case WireType.null: _ = try u64(); return .null
        default: throw .malformed("unknown value type \(type)")
        }
    }

    mutating func params() throws(DqliteError) -> [DqliteValue] {
        let count = Int(try u8())
        var types: [UInt8] = []
        for _ in 0..<count { types.append(try u8()) }
        try align()
        var values: [DqliteValue] = []
        for t in types { values.append(try value(type: t)) }
        return values
    }

    mutating func rows() throws(DqliteError) -> DqliteRowsPart {
        let columnCount = try u64()
        // A column name takes at least one word: refuse counts the body cannot hold.
        guard columnCount <= UInt64(remaining / WireCodec.wordSize) else {
            throw .malformed("ROWS claims \(columnCount) columns in \(remaining) bytes")
        }
        let n = Int(columnCount)
        var columns: [String] = []
        for _ in 0..<n { columns.append(try text()) }
        var rows: [[DqliteValue]] = []
        while true {
            let marker = try peekU64()
            if marker == WireCodec.rowsDone || marker == WireCodec.rowsPart {
                _ = try u64()
                return DqliteRowsPart(columns: columns, rows: rows, hasMore: marker == WireCodec.rowsPart)
            }
            if n == 0 { throw .malformed("ROWS without columns and without an end marker") }
            let header = try take((n + 1) / 2, "row header")
            try align()
            var row: [DqliteValue] = []
            row.reserveCapacity(n)
            for i in 0..<n {
                let byte = header[header.startIndex + i / 2]
                let type = i % 2 == 0 ? byte & 0x0f : byte >> 4
                row.append(try value(type: type))
            }
            rows.append(row)
        }
    }
}
