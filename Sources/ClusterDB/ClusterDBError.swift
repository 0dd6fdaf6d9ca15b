import Dqlite

/// Errors of the schema layer. Lower-level dqlite errors pass through as `DqliteError`.
public enum ClusterDBError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A unique key is taken (instance name, image fingerprint, alias, ...). Nothing was written.
    case alreadyExists(String)
    case notFound(String)
    /// A prefix matched more than one row.
    case ambiguous(String)
    /// A range ran out (uid/gid blocks).
    case exhausted(String)
    case invalidArgument(String)
    /// A row does not hold what the schema promises.
    case corrupt(String)
    /// COMMIT failed in a way that does not say whether it applied (leadership lost, connection dropped).
    case outcomeUnknown(String)
    /// SQLITE_BUSY / not-leader kept coming back.
    case retriesExhausted(attempts: Int, last: String)
    /// The database holds a newer schema than this member knows.
    case schemaTooNew(database: Int, known: Int)
    case migrationFailed(version: Int, reason: String)

    public var description: String {
        switch self {
        case .alreadyExists(let what): return "\(what) already exists"
        case .notFound(let what): return "\(what) not found"
        case .ambiguous(let what): return "\(what) is ambiguous; give more characters"
        case .exhausted(let what): return "\(what) is exhausted; free some or widen the range"
        case .invalidArgument(let what): return "invalid argument: \(what)"
        case .corrupt(let what): return "unexpected database content: \(what)"
        case .outcomeUnknown(let what): return "transaction outcome unknown: \(what); check the state (e.g. by request id) before retrying"
        case .retriesExhausted(let attempts, let last):
            return "transaction gave up after \(attempts) attempts (database busy or leader changing): \(last); retry later"
        case .schemaTooNew(let database, let known):
            return "cluster database schema is version \(database) but this member knows only up to \(known); upgrade this member"
        case .migrationFailed(let version, let reason): return "schema migration to version \(version) failed: \(reason)"
        }
    }
}
