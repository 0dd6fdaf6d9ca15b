import Dispatch
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// One client connection to a dqlite node, speaking protocol v1 over a blocking socket.
///
/// Every method blocks the calling thread for a network round trip: call them
/// from `DqlitePool.withConnection` (a dedicated queue), never from Swift's
/// cooperative pool. Requests are serialised by an internal lock, so the
/// object is safe to share, but a transaction belongs to one caller at a time.
public final class DqliteConnection: Sendable {
    private struct Socket: ~Copyable {
        var fd: Int32
        var db: UInt32?
    }

    private let socket: Mutex<Socket>
    /// The cluster address of the node this connection talks to.
    public let address: String
    /// Serial queue that runs this connection's blocking work (see `DqlitePool`).
    let queue: DispatchQueue

    /// Takes ownership of a connected stream socket `fd`, sends the protocol handshake,
    /// and sets a receive timeout so a node that hangs surfaces as an error.
    public init(fd: Int32, address: String, timeoutSeconds: Int = 30) throws(DqliteError) {
        self.address = address
        self.queue = DispatchQueue(label: "dqlite.connection.\(address)")
        Self.setTimeouts(fd, seconds: timeoutSeconds)
        self.socket = Mutex(Socket(fd: fd, db: nil))
        try socket.withLock { (s: inout Socket) throws(DqliteError) in
            try Self.writeAll(s.fd, WireCodec.handshake(), context: "handshake")
        }
    }

    deinit {
        socket.withLock { s in
            if s.fd >= 0 { closeDescriptor(s.fd) }
            s.fd = -1
        }
    }

    /// Changes the per-call timeout (a leader search probes with a short one, then keeps the connection).
    public func setTimeout(seconds: Int) {
        socket.withLock { s in
            if s.fd >= 0 { Self.setTimeouts(s.fd, seconds: seconds) }
        }
    }

    private static func setTimeouts(_ fd: Int32, seconds: Int) {
        var tv = timeval(tv_sec: seconds, tv_usec: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    /// False once closed, by `close()` or after a socket/protocol error.
    public var isOpen: Bool { socket.withLock { $0.fd >= 0 } }

    /// Closes the socket; later calls fail with `.connectionClosed`.
    public func close() {
        socket.withLock { s in
            if s.fd >= 0 { closeDescriptor(s.fd) }
            s.fd = -1
        }
    }

    // MARK: Requests

    /// Sends one request and returns the decoded final response. A FAILURE answer
    /// is thrown as `.server`; ROWS continuations (0xee) are read and merged.
    public func roundTrip(_ request: DqliteRequest) throws(DqliteError) -> DqliteResponse {
        let frame = try WireCodec.encode(request)
        let format: DqliteRequest.ClusterFormat = if case .cluster(let f) = request { f } else { .withRole }
        return try socket.withLock { (s: inout Socket) throws(DqliteError) -> DqliteResponse in
            guard s.fd >= 0 else { throw .connectionClosed(request.name) }
            do throws(DqliteError) {
                try Self.writeAll(s.fd, frame, context: request.name)
                var response = try Self.readResponse(s.fd, context: request.name, serversFormat: format)
                if case .rows(var merged) = response, merged.hasMore {
                    while merged.hasMore {
                        switch try Self.readResponse(s.fd, context: request.name, serversFormat: format) {
                        case .rows(let next):
                            merged.rows.append(contentsOf: next.rows)
                            merged.hasMore = next.hasMore
                        case .failure(let code, let message):
                            // The statement failed mid-way (e.g. interrupted): the stream is still in step.
                            throw DqliteError.server(code: code, message: message, request: request.name)
                        case let other:
                            throw .unexpectedResponse(expected: "ROWS continuation", got: Self.describe(other))
                        }
                    }
                    response = .rows(merged)
                }
                if case .failure(let code, let message) = response {
                    throw DqliteError.server(code: code, message: message, request: request.name)
                }
                return response
            } catch {
                // After a socket or framing error the stream position is unknown: poison the connection.
                if case .server = error {} else {
                    closeDescriptor(s.fd)
                    s.fd = -1
                }
                throw error
            }
        }
    }

    /// The leader as this node knows it; nil while there is none (election in progress).
    public func leader() throws(DqliteError) -> DqliteServerInfo? {
        let response = try roundTrip(.leader)
        guard case .server(let id, let address) = response else {
            throw .unexpectedResponse(expected: "SERVER", got: Self.describe(response))
        }
        return address.isEmpty ? nil : DqliteServerInfo(id: id, address: address, role: .voter)
    }

    /// Opens the database `name` on this connection (one per connection; ids are per connection).
    public func open(_ name: String) throws(DqliteError) {
        let response = try roundTrip(.open(name: name))
        guard case .db(let id) = response else {
            throw .unexpectedResponse(expected: "DB", got: Self.describe(response))
        }
        socket.withLock { $0.db = id }
    }

    private func databaseID(for what: String) throws(DqliteError) -> UInt32 {
        guard let id = socket.withLock({ $0.db }) else {
            throw .malformed("\(what) before OPEN: call open(_:) first")
        }
        return id
    }

    /// Runs statement(s) that return no rows.
    @discardableResult
    public func exec(_ sql: String, _ params: [DqliteValue] = []) throws(DqliteError) -> DqliteExecResult {
        let response = try roundTrip(.execSQL(db: try databaseID(for: "EXEC_SQL"), sql: sql, params: params))
        guard case .result(let result) = response else {
            throw .unexpectedResponse(expected: "RESULT", got: Self.describe(response))
        }
        return result
    }

    /// Runs a query and returns all its rows (multi-part answers merged).
    public func query(_ sql: String, _ params: [DqliteValue] = []) throws(DqliteError) -> DqliteRows {
        let response = try roundTrip(.querySQL(db: try databaseID(for: "QUERY_SQL"), sql: sql, params: params))
        guard case .rows(let part) = response else {
            throw .unexpectedResponse(expected: "ROWS", got: Self.describe(response))
        }
        return DqliteRows(columns: part.columns, rows: part.rows)
    }

    /// Raft members as the leader sees them.
    public func cluster() throws(DqliteError) -> [DqliteServerInfo] {
        let response = try roundTrip(.cluster(format: .withRole))
        guard case .servers(let servers) = response else {
            throw .unexpectedResponse(expected: "SERVERS", got: Self.describe(response))
        }
        return servers
    }

    /// ADD, ASSIGN, REMOVE, TRANSFER: membership changes, sent to the leader.
    public func add(id: UInt64, address: String) throws(DqliteError) { try expectEmpty(.add(id: id, address: address)) }
    public func assign(id: UInt64, role: DqliteRole) throws(DqliteError) { try expectEmpty(.assign(id: id, role: role)) }
    public func remove(id: UInt64) throws(DqliteError) { try expectEmpty(.remove(id: id)) }
    public func transfer(to id: UInt64) throws(DqliteError) { try expectEmpty(.transfer(id: id)) }

    private func expectEmpty(_ request: DqliteRequest) throws(DqliteError) {
        let response = try roundTrip(request)
        guard case .empty = response else {
            throw .unexpectedResponse(expected: "EMPTY", got: Self.describe(response))
        }
    }

    static func describe(_ response: DqliteResponse) -> String {
        DqliteResponse.name(ofType: response.type)
    }

    // MARK: Socket I/O

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8], context: String) throws(DqliteError) {
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { buf in
                send(fd, buf.baseAddress! + sent, buf.count - sent, Int32(MSG_NOSIGNAL))
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw .io(operation: "send (\(context))", errno: errno)
            }
            sent += n
        }
    }

    private static func readExactly(_ fd: Int32, _ count: Int, context: String) throws(DqliteError) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: count)
        var got = 0
        while got < count {
            let n = buffer.withUnsafeMutableBytes { buf in
                recv(fd, buf.baseAddress! + got, count - got, 0)
            }
            if n < 0 {
                if errno == EINTR { continue }
                let e = errno
                throw .io(operation: "recv (\(context))\(e == EAGAIN ? ": timed out waiting for the node" : "")", errno: e)
            }
            if n == 0 { throw .connectionClosed(context) }
            got += n
        }
        return buffer
    }

    private static func readResponse(_ fd: Int32, context: String, serversFormat: DqliteRequest.ClusterFormat) throws(DqliteError) -> DqliteResponse {
        let header = try WireCodec.decodeHeader(try readExactly(fd, WireCodec.headerSize, context: context))
        let body = try readExactly(fd, header.bodySize, context: context)
        return try WireCodec.decodeResponse(type: header.type, body: body, serversFormat: serversFormat)
    }
}

private func closeDescriptor(_ fd: Int32) {
    _ = close(fd)
}
