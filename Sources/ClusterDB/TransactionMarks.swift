import Dqlite
import Foundation
import Synchronization

/// The random token a write transaction leaves behind (see `ClusterDB.transaction`).
struct TransactionMark: Sendable {
    let token: String
    let writtenAt: Date

    static func new() -> TransactionMark { TransactionMark(token: UUID().uuidString, writtenAt: Date()) }

    /// Marks outlive any question about their transaction by far: the question is asked within
    /// the leader timeout (seconds) of the failed COMMIT.
    static let keep: TimeInterval = 15 * 60
    /// One transaction in this many also prunes old marks, so the table stays small without a
    /// maintenance task and without a second statement on every write.
    static let pruneEvery = 64
}

extension Transaction {
    func writeTransactionMark(_ mark: TransactionMark) throws {
        try exec("INSERT INTO transaction_marks (token, written_at) VALUES (?, ?)",
                 .text(mark.token), .integer(Timestamp.nanoseconds(mark.writtenAt)))
        if Int.random(in: 0..<TransactionMark.pruneEvery) == 0 {
            try exec("DELETE FROM transaction_marks WHERE written_at < ?",
                     .integer(Timestamp.nanoseconds(mark.writtenAt.addingTimeInterval(-TransactionMark.keep))))
        }
    }

    func transactionMarkExists(_ token: String) throws -> Bool {
        !(try query("SELECT 1 FROM transaction_marks WHERE token = ?", .text(token)).rows.isEmpty)
    }

    func hasTransactionMarks() throws -> Bool {
        !(try query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'transaction_marks'").rows.isEmpty)
    }
}

/// Holds the value an attempt computed before its COMMIT outcome became unknown.
final class PendingValue<T: Sendable>: Sendable {
    let value = Mutex<T?>(nil)
}
