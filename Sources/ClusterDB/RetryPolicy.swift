import Dqlite

/// When a failed transaction attempt is run again: a pure decision, so it can be tested without a node.
public struct RetryPolicy: Sendable, Equatable {
    public enum Decision: Sendable, Equatable {
        case retry(after: Duration)
        case fail
    }

    public var maxAttempts: Int
    public var baseDelay: Duration
    public var maxDelay: Duration

    public init(maxAttempts: Int = 100, baseDelay: Duration = .milliseconds(1), maxDelay: Duration = .milliseconds(50)) {
        self.maxAttempts = maxAttempts
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
    }

    /// True for failures that guarantee the attempt did not apply: SQLITE_BUSY,
    /// not-leader answers, leadership lost before COMMIT, and connection loss before COMMIT
    /// was sent (a failure during COMMIT is reported as `ClusterDBError.outcomeUnknown`,
    /// never retried).
    public static func isRetryable(_ error: any Error) -> Bool {
        if error is LeadershipLostBeforeCommit { return true }
        guard let error = error as? DqliteError else { return false }
        switch error {
        case .server: return error.isBusy || error.isNotLeader
        case .io, .connectionClosed: return true
        // The pool already waited its leader timeout: retrying would multiply that wait.
        case .noLeader, .malformed, .unexpectedResponse, .node, .poolClosed: return false
        }
    }

    /// `attempt` counts from 1 (the attempt that just failed); `jitter` in 0...1 spreads competing retries.
    public func decision(after error: any Error, attempt: Int, jitter: Double) -> Decision {
        guard Self.isRetryable(error), attempt < maxAttempts else { return .fail }
        let exponential = baseDelay * (1 << min(attempt - 1, 16))
        let capped = min(exponential, maxDelay)
        return .retry(after: capped * (0.5 + 0.5 * min(max(jitter, 0), 1)))
    }
}

/// SQLITE_IOERR_LEADERSHIP_LOST from BEGIN or a statement before COMMIT: dqlite replicates a
/// transaction only at COMMIT, so nothing applied (the same code from COMMIT is an unknown outcome).
public struct LeadershipLostBeforeCommit: Error, Sendable, Equatable, CustomStringConvertible {
    public var error: DqliteError

    public init(error: DqliteError) { self.error = error }

    public var description: String { "\(error) (before COMMIT: nothing applied)" }
}
