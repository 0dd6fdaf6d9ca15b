import Dqlite
import Foundation
import Logging
import Synchronization

/// The cluster's replicated state: our schema on a dqlite database, reached through a pool of leader connections.
/// Callers see typed operations only (transactions of `Transaction` methods, raft membership in
/// `DatabaseMembership.swift`), never the pool or SQL.
public final class ClusterDB: Sendable {
    let pool: DqlitePool
    public let retry: RetryPolicy
    private let logger: Logger
    /// Whether the schema has `transaction_marks` (set once migrated; older schemas, and test
    /// schemas without it, throw `outcomeUnknown` as before).
    private let marksAvailable = Atomic<Bool>(false)

    private init(pool: DqlitePool, retry: RetryPolicy, logger: Logger) {
        self.pool = pool
        self.retry = retry
        self.logger = logger
    }

    /// Connects through `pool` and brings the schema up to the newest of `migrations`.
    /// Throws `schemaTooNew` when another member already migrated further than this one knows.
    public static func open(pool: DqlitePool, logger: Logger, migrations: [SchemaMigration] = SchemaMigration.all,
                            retry: RetryPolicy = RetryPolicy()) async throws -> ClusterDB {
        let db = try await openUnmigrated(pool: pool, logger: logger, retry: retry)
        try await db.migrate(migrations)
        return db
    }

    /// Connects and checks the session settings, leaving the schema as it is.
    static func openUnmigrated(pool: DqlitePool, logger: Logger, retry: RetryPolicy = RetryPolicy()) async throws -> ClusterDB {
        let db = ClusterDB(pool: pool, retry: retry, logger: logger)
        let foreignKeys = try await db.idempotentTransaction { tx in try tx.query("PRAGMA foreign_keys").rows }
        guard foreignKeys == [[.integer(1)]] else {
            throw ClusterDBError.invalidArgument("the pool's connections do not enforce foreign keys; create it with sessionStatements: ClusterDB.sessionStatements")
        }
        return db
    }

    /// Per-connection settings our schema relies on: pass them to the pool (`DqlitePool.Configuration.sessionStatements`).
    public static let sessionStatements = ["PRAGMA foreign_keys = ON"]

    /// Convenience for a node in this process: a pool of `maxConnections` to it.
    public static func open(node: DqliteNode, maxConnections: Int = 4, logger: Logger,
                            migrations: [SchemaMigration] = SchemaMigration.all) async throws -> ClusterDB {
        let pool = DqlitePool(node: node, maxConnections: maxConnections, sessionStatements: sessionStatements, logger: logger)
        return try await open(pool: pool, logger: logger, migrations: migrations)
    }

    public func close() async {
        await pool.close()
    }

    /// Runs `body` between BEGIN and COMMIT on one leader connection, on a dedicated thread.
    ///
    /// Any error thrown by `body` rolls back and is rethrown. The whole body is
    /// run again (so it must be free of side effects outside the transaction)
    /// when the attempt provably did not apply: SQLITE_BUSY, a not-leader answer,
    /// or a lost connection before COMMIT.
    ///
    /// A COMMIT cut by a leadership change or a dropped connection may or may not have applied.
    /// Each attempt writes a random mark in the same transaction (`transaction_marks`), so the
    /// leader that follows answers which: applied → the attempt's value is returned; not applied →
    /// the body runs again. Only when that question cannot be answered either is
    /// `ClusterDBError.outcomeUnknown` thrown.
    @discardableResult
    public func transaction<T: Sendable>(_ body: @Sendable (Transaction) throws -> T) async throws -> T {
        try await transaction(rerunWhenOutcomeUnknown: false, body)
    }

    /// A transaction whose second run leaves the same state as one run (reads, upserts, guarded
    /// migrations): a COMMIT with unknown outcome is simply run again, without a mark. Usable
    /// before the schema is migrated.
    @discardableResult
    public func idempotentTransaction<T: Sendable>(_ body: @Sendable (Transaction) throws -> T) async throws -> T {
        try await transaction(rerunWhenOutcomeUnknown: true, body)
    }

    private func transaction<T: Sendable>(rerunWhenOutcomeUnknown: Bool, _ body: @Sendable (Transaction) throws -> T) async throws -> T {
        let marked = !rerunWhenOutcomeUnknown && marksAvailable.load(ordering: .relaxed)
        var attempt = 0
        while true {
            attempt += 1
            let mark = marked ? TransactionMark.new() : nil
            // The value of an attempt whose COMMIT outcome turns out unknown.
            let pending = PendingValue<T>()
            do {
                return try await pool.withConnection { connection in
                    try Self.runOnce(connection, body, mark: mark, pending: pending)
                }
            } catch ClusterDBError.outcomeUnknown(let what) where rerunWhenOutcomeUnknown && attempt < retry.maxAttempts {
                logger.debug("re-running an idempotent transaction whose COMMIT outcome is unknown", metadata: ["error": "\(what)"])
                try await Task.sleep(for: retry.maxDelay)
            } catch ClusterDBError.outcomeUnknown(let what) where mark != nil && attempt < retry.maxAttempts {
                // Only a transaction that wrote left a mark (and a value to return).
                guard pending.value.withLock({ $0 != nil }) else { throw ClusterDBError.outcomeUnknown(what) }
                let token = mark!.token
                let applied: Bool
                do {
                    applied = try await answerWithin(Self.markLookupLimit) {
                        try await self.idempotentTransaction { tx in try tx.transactionMarkExists(token) }
                    }
                } catch {
                    throw ClusterDBError.outcomeUnknown("\(what); asking the next leader whether it applied failed too: \(error)")
                }
                logger.notice("transaction COMMIT outcome was unknown; the next leader answered", metadata: [
                    "applied": "\(applied)", "error": "\(what)"])
                if applied, let value = pending.value.withLock({ $0 }) { return value }
            } catch {
                switch retry.decision(after: error, attempt: attempt, jitter: Double.random(in: 0...1)) {
                case .retry(let delay):
                    logger.trace("retrying transaction", metadata: ["attempt": "\(attempt)", "error": "\(error)"])
                    try await Task.sleep(for: delay)
                case .fail:
                    if RetryPolicy.isRetryable(error) {
                        throw ClusterDBError.retriesExhausted(attempts: attempt, last: "\(error)")
                    }
                    throw error
                }
            }
        }
    }

    /// How long a writer waits for a next leader to say whether its cut COMMIT applied: an
    /// election takes about a second here; without a quorum none will answer, and the writer
    /// should hear so rather than wait the pool's whole leader timeout.
    static let markLookupLimit: Duration = .seconds(5)

    /// `work`'s result, or `ClusterDBError.outcomeUnknown` once `limit` passes (work is cancelled).
    private func answerWithin<V: Sendable>(_ limit: Duration, _ work: @escaping @Sendable () async throws -> V) async throws -> V {
        try await withThrowingTaskGroup(of: V?.self) { group in
            group.addTask { try await work() }
            group.addTask {
                try await Task.sleep(for: limit)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let value = first else {
                throw ClusterDBError.outcomeUnknown("no leader answered within \(limit)")
            }
            return value
        }
    }

    private static func runOnce<T>(_ connection: DqliteConnection, _ body: (Transaction) throws -> T,
                                   mark: TransactionMark?, pending: PendingValue<T>) throws -> T {
        let value: T
        var marked = false
        do {
            try connection.exec("BEGIN")
            let tx = Transaction(connection: connection)
            value = try body(tx)
            if let mark, tx.writes.wrote {
                try tx.writeTransactionMark(mark)
                marked = true
            }
        } catch let error as DqliteError where error.isLeadershipLost {
            // Before COMMIT nothing was replicated: the attempt did not apply and may run again.
            rollback(connection)
            throw LeadershipLostBeforeCommit(error: error)
        } catch {
            rollback(connection)
            throw error
        }
        do {
            try connection.exec("COMMIT")
        } catch {
            if error.isBusy || error.isNotLeader {
                rollback(connection)
                throw error
            }
            switch error {
            case .server where !error.isLeadershipLost:
                // The node refused the COMMIT (e.g. a deferred constraint): nothing applied.
                rollback(connection)
                throw error
            default:
                connection.close()
                if marked { pending.value.withLock { $0 = value } }
                throw ClusterDBError.outcomeUnknown("COMMIT on \(connection.address) failed: \(error)")
            }
        }
        return value
    }

    private static func rollback(_ connection: DqliteConnection) {
        // Fails harmlessly when SQLite already rolled back or the connection is gone.
        _ = try? connection.exec("ROLLBACK")
    }

    /// The schema version currently in the database.
    public func schemaVersion() async throws -> Int {
        try await idempotentTransaction { tx in try tx.schemaVersion() }
    }

    func migrate(_ migrations: [SchemaMigration]) async throws {
        let ordered = migrations.sorted { $0.version < $1.version }
        let known = ordered.last?.version ?? 0
        let current = try await idempotentTransaction { tx in
            try tx.exec(SchemaMigration.createSchemaTable)
            return try tx.schemaVersion()
        }
        if current > known { throw ClusterDBError.schemaTooNew(database: current, known: known) }
        for migration in ordered where migration.version > current {
            let applied = try await idempotentTransaction { tx -> Bool in
                // Re-read inside the transaction: another member may have migrated meanwhile.
                guard try tx.schemaVersion() < migration.version else { return false }
                for (index, statement) in migration.statements.enumerated() {
                    do {
                        try tx.exec(statement)
                    } catch let error as DqliteError where !RetryPolicy.isRetryable(error) && !error.isLeadershipLost {
                        throw ClusterDBError.migrationFailed(version: migration.version, reason: "statement \(index + 1): \(error)")
                    }
                }
                try tx.exec("INSERT INTO schema (version, updated_at) VALUES (?, ?)",
                            .integer(Int64(migration.version)), .integer(Timestamp.nanoseconds(Date())))
                return true
            }
            if applied { logger.info("applied schema migration", metadata: ["version": "\(migration.version)"]) }
        }
        let marks = try await idempotentTransaction { tx in try tx.hasTransactionMarks() }
        marksAvailable.store(marks, ordering: .relaxed)
    }
}
