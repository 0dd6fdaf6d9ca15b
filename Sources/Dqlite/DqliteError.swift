#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Everything the dqlite layer can fail with.
///
/// `server` errors are answers from the node (SQLite or dqlite codes) and leave
/// the connection usable unless `invalidatesConnection` says otherwise; the
/// other cases mean the connection (or node) is unusable.
public enum DqliteError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The node answered FAILURE: `code` is a SQLite (possibly extended) or dqlite code.
    case server(code: UInt64, message: String, request: String)
    /// A socket call failed; the connection is dead and must be dropped.
    case io(operation: String, errno: Int32)
    /// The peer closed the connection.
    case connectionClosed(String)
    /// Bytes that do not follow protocol v1: either a bug here or a peer that is not dqlite.
    case malformed(String)
    /// The node answered with a message type we did not expect for this request.
    case unexpectedResponse(expected: String, got: String)
    /// A dqlite_node_* call failed.
    case node(operation: String, code: Int32, message: String)
    /// No leader could be found before the deadline.
    case noLeader(String)
    /// The pool was closed.
    case poolClosed

    public static let sqliteBusy: UInt64 = 5
    public static let sqliteConstraint: UInt64 = 19
    public static let sqliteConstraintUnique: UInt64 = 2067
    public static let sqliteConstraintPrimaryKey: UInt64 = 1555
    /// SQLITE_IOERR_NOT_LEADER: the node refused the request before running it.
    public static let notLeader: UInt64 = 10250
    /// SQLITE_IOERR_LEADERSHIP_LOST: leadership was lost while the statement ran (a COMMIT may or may not have applied).
    public static let leadershipLost: UInt64 = 10506

    /// The node's answer code, if the node answered.
    public var code: UInt64? {
        if case .server(let code, _, _) = self { return code }
        return nil
    }

    /// SQLITE_BUSY or one of its extended codes (BUSY_SNAPSHOT, ...): the statement did not apply.
    public var isBusy: Bool { code.map { $0 & 0xff == Self.sqliteBusy } ?? false }

    public var isNotLeader: Bool { code == Self.notLeader }

    public var isLeadershipLost: Bool { code == Self.leadershipLost }

    /// Raft takes one membership change at a time: another (a role change, a promotion still
    /// catching its member up) is running, and this one may be retried once it is done.
    public var isMembershipChangeInProgress: Bool {
        guard case .server(_, let message, _) = self else { return false }
        return message.contains("configuration change is already in progress")
    }

    public var isConstraintViolation: Bool { code.map { $0 & 0xff == Self.sqliteConstraint } ?? false }

    /// A UNIQUE or PRIMARY KEY violation (the node may send only the primary code 19, so the message is checked too).
    public var isUniqueViolation: Bool {
        guard case .server(let code, let message, _) = self else { return false }
        if code == Self.sqliteConstraintUnique || code == Self.sqliteConstraintPrimaryKey { return true }
        return code == Self.sqliteConstraint && (message.contains("UNIQUE constraint failed") || message.contains("PRIMARY KEY"))
    }

    /// True when the connection must not be reused: socket trouble, protocol
    /// confusion, or an answer that says this node is no longer the leader.
    public var invalidatesConnection: Bool {
        switch self {
        case .server: return isNotLeader || isLeadershipLost
        case .io, .connectionClosed, .malformed, .unexpectedResponse, .noLeader, .poolClosed: return true
        case .node: return false
        }
    }

    public var description: String {
        switch self {
        case .server(let code, let message, let request):
            return "dqlite \(request) failed: \(message) (code \(code))"
        case .io(let operation, let errno):
            return "dqlite socket \(operation) failed: errno \(errno) (\(String(cString: strerror(errno)))); the connection was dropped, retry on a new one"
        case .connectionClosed(let context):
            return "dqlite node closed the connection during \(context); retry on a new connection"
        case .malformed(let what):
            return "malformed dqlite message: \(what)"
        case .unexpectedResponse(let expected, let got):
            return "dqlite protocol error: expected \(expected) response, got \(got)"
        case .node(let operation, let code, let message):
            return "dqlite node \(operation) failed (rv=\(code))\(message.isEmpty ? "" : ": \(message)")"
        case .noLeader(let context):
            return "no dqlite leader: \(context)"
        case .poolClosed:
            return "dqlite connection pool is closed"
        }
    }
}
