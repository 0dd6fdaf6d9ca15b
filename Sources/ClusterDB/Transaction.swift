import Dqlite
import Foundation

/// One open transaction on the leader. Valid only inside the `ClusterDB.transaction` body
/// that received it; each call is a blocking round trip to the leader.
public struct Transaction {
    let connection: DqliteConnection
    /// Whether `exec` ran: only a transaction that wrote leaves a mark (a read stays off the raft log).
    let writes = WriteFlag()

    init(connection: DqliteConnection) {
        self.connection = connection
    }

    // SQL stays inside this module: other modules call the typed operations of the extensions.
    @discardableResult
    func exec(_ sql: String, _ params: DqliteValue...) throws -> DqliteExecResult {
        writes.wrote = true
        return try connection.exec(sql, params)
    }

    @discardableResult
    func exec(_ sql: String, params: [DqliteValue]) throws -> DqliteExecResult {
        writes.wrote = true
        return try connection.exec(sql, params)
    }

    func query(_ sql: String, _ params: DqliteValue...) throws -> DqliteRows {
        try connection.query(sql, params)
    }

    func query(_ sql: String, params: [DqliteValue]) throws -> DqliteRows {
        try connection.query(sql, params)
    }
}

/// Set by a transaction's first `exec`; confined, like the transaction, to the body's thread.
final class WriteFlag {
    var wrote = false
}

// A transaction is bound to the thread running the body; it must not escape to other tasks.
@available(*, unavailable)
extension Transaction: Sendable {}

/// Typed access to one result row; errors name the table and column.
struct Row {
    let values: [DqliteValue]
    let table: String

    func int(_ i: Int, _ column: String) throws -> Int64 {
        guard i < values.count, case .integer(let v) = values[i] else { throw bad(i, column, "integer") }
        return v
    }

    func optionalInt(_ i: Int, _ column: String) throws -> Int64? {
        guard i < values.count else { throw bad(i, column, "integer or null") }
        if case .null = values[i] { return nil }
        return try int(i, column)
    }

    func text(_ i: Int, _ column: String) throws -> String {
        guard i < values.count, case .text(let v) = values[i] else { throw bad(i, column, "text") }
        return v
    }

    func optionalText(_ i: Int, _ column: String) throws -> String? {
        guard i < values.count else { throw bad(i, column, "text or null") }
        if case .null = values[i] { return nil }
        return try text(i, column)
    }

    func date(_ i: Int, _ column: String) throws -> Date {
        Timestamp.date(fromNanoseconds: try int(i, column))
    }

    func optionalDate(_ i: Int, _ column: String) throws -> Date? {
        try optionalInt(i, column).map(Timestamp.date(fromNanoseconds:))
    }

    func stringMap(_ i: Int, _ column: String) throws -> [String: String] {
        let json = try text(i, column)
        do {
            return try JSONDecoder().decode([String: String].self, from: Data(json.utf8))
        } catch {
            throw ClusterDBError.corrupt("\(table).\(column) is not a JSON object of strings: \(json.prefix(80))")
        }
    }

    private func bad(_ i: Int, _ column: String, _ expected: String) -> ClusterDBError {
        .corrupt("\(table).\(column) should be \(expected), got \(i < values.count ? "\(values[i])" : "no value")")
    }
}

/// Timestamps are stored as unix nanoseconds (INTEGER).
enum Timestamp {
    /// Dates past what an Int64 of nanoseconds holds (before 1678, after 2262) are clamped to its
    /// ends rather than trapping: callers range-check dates that come from requests.
    static func nanoseconds(_ date: Date) -> Int64 {
        let ns = (date.timeIntervalSince1970 * 1_000_000_000).rounded()
        guard ns.isFinite, ns > Double(Int64.min), ns < Double(Int64.max) else { return ns < 0 ? .min : .max }
        return Int64(ns)
    }

    static func date(fromNanoseconds ns: Int64) -> Date {
        Date(timeIntervalSince1970: Double(ns) / 1_000_000_000)
    }
}

enum JSONText {
    static func encode(_ map: [String: String]) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        // Encoding a [String: String] cannot fail.
        return String(decoding: (try? encoder.encode(map)) ?? Data("{}".utf8), as: UTF8.self)
    }
}

extension DqliteError {
    /// Maps a unique violation to `ClusterDBError.alreadyExists(what)`, leaving other errors alone.
    func mappingUnique(_ what: @autoclosure () -> String) -> any Error {
        isUniqueViolation ? ClusterDBError.alreadyExists(what()) : self
    }
}
