@testable import ClusterDB
import Dqlite
import Testing

@Suite("Idmap allocator (pure)")
struct IdmapAllocatorTests {
    let block: Int64 = 65536

    @Test func emptyRangeStartsAtTheBeginning() {
        #expect(IdmapAllocator.lowestFree(used: [], rangeStart: 100_000, rangeSize: 1_000_000, block: block) == 100_000)
    }

    @Test func skipsUsedBlocksInAnyOrder() {
        let used: [Int64] = [100_000 + 2 * block, 100_000, 100_000 + block]
        #expect(IdmapAllocator.lowestFree(used: used, rangeStart: 100_000, rangeSize: 10 * block, block: block) == 100_000 + 3 * block)
    }

    @Test func reusesTheLowestHole() {
        let used: [Int64] = [0, 2 * block, 3 * block]
        #expect(IdmapAllocator.lowestFree(used: used, rangeStart: 0, rangeSize: 10 * block, block: block) == block)
    }

    @Test func unalignedUsedBlockPushesPastEveryBlockItTouches() {
        // A block at 100 covers [100, 65636): both block 0 and block 1 overlap it.
        #expect(IdmapAllocator.lowestFree(used: [100], rangeStart: 0, rangeSize: 10 * block, block: block) == 2 * block)
    }

    @Test func usedBlocksOutsideTheRangeDoNotMatter() {
        #expect(IdmapAllocator.lowestFree(used: [-block, 50 * block], rangeStart: 0, rangeSize: 2 * block, block: block) == 0)
    }

    @Test func exhaustedAndTooSmallRangesGiveNil() {
        #expect(IdmapAllocator.lowestFree(used: [0, block], rangeStart: 0, rangeSize: 2 * block, block: block) == nil)
        #expect(IdmapAllocator.lowestFree(used: [], rangeStart: 0, rangeSize: block - 1, block: block) == nil)
        // A partial trailing block is never handed out.
        #expect(IdmapAllocator.lowestFree(used: [0], rangeStart: 0, rangeSize: block + block / 2, block: block) == nil)
        #expect(IdmapAllocator.lowestFree(used: [], rangeStart: 0, rangeSize: 10, block: 0) == nil)
    }
}

@Suite("Retry policy (pure)")
struct RetryPolicyTests {
    let policy = RetryPolicy(maxAttempts: 5, baseDelay: .milliseconds(2), maxDelay: .milliseconds(10))
    let busy = DqliteError.server(code: 5, message: "database is locked", request: "EXEC_SQL")
    let busySnapshot = DqliteError.server(code: 517, message: "database is locked", request: "EXEC_SQL")
    let notLeader = DqliteError.server(code: 10250, message: "not leader", request: "EXEC_SQL")

    @Test func retriesBusyAndNotLeaderWithCappedBackoff() {
        #expect(policy.decision(after: busy, attempt: 1, jitter: 1) == .retry(after: .milliseconds(2)))
        #expect(policy.decision(after: busySnapshot, attempt: 2, jitter: 1) == .retry(after: .milliseconds(4)))
        #expect(policy.decision(after: notLeader, attempt: 3, jitter: 1) == .retry(after: .milliseconds(8)))
        #expect(policy.decision(after: busy, attempt: 4, jitter: 1) == .retry(after: .milliseconds(10)))
        #expect(policy.decision(after: busy, attempt: 4, jitter: 0) == .retry(after: .milliseconds(5)))
    }

    @Test func givesUpAfterMaxAttempts() {
        #expect(policy.decision(after: busy, attempt: 5, jitter: 0.5) == .fail)
    }

    @Test func neverRetriesWhatMayHaveAppliedOrIsPermanent() {
        let permanent: [any Error] = [
            DqliteError.server(code: 2067, message: "UNIQUE constraint failed", request: "EXEC_SQL"),
            DqliteError.server(code: 10506, message: "leadership lost", request: "COMMIT"),
            DqliteError.server(code: 1, message: "no such table", request: "QUERY_SQL"),
            DqliteError.malformed("x"),
            DqliteError.noLeader("no quorum"),
            DqliteError.poolClosed,
            ClusterDBError.outcomeUnknown("commit"),
            ClusterDBError.alreadyExists("c1"),
            Boom(),
        ]
        for error in permanent {
            #expect(policy.decision(after: error, attempt: 1, jitter: 0) == .fail, "\(error)")
        }
    }

    /// Seen on a loaded machine: a leader lost its leadership while a writer sent BEGIN.
    @Test func leadershipLostBeforeCommitIsRetriedButNotAtCommit() {
        let lost = DqliteError.server(code: 10506, message: "disk I/O error", request: "EXEC_SQL BEGIN")
        #expect(policy.decision(after: LeadershipLostBeforeCommit(error: lost), attempt: 1, jitter: 0) != .fail)
        #expect(policy.decision(after: lost, attempt: 1, jitter: 0) == .fail)
    }

    @Test func connectionLossBeforeCommitIsRetried() {
        #expect(policy.decision(after: DqliteError.connectionClosed("EXEC_SQL"), attempt: 1, jitter: 0) != .fail)
        #expect(policy.decision(after: DqliteError.io(operation: "recv", errno: 104), attempt: 1, jitter: 0) != .fail)
    }
}

@Suite("Fingerprint prefixes (pure)")
struct FingerprintPrefixTests {
    @Test func onlyLowercaseHexUpTo64() {
        #expect(Transaction.isFingerprintPrefix("abc123"))
        #expect(!Transaction.isFingerprintPrefix(""))
        #expect(!Transaction.isFingerprintPrefix("ABC"))
        #expect(!Transaction.isFingerprintPrefix("ab%"))
        #expect(!Transaction.isFingerprintPrefix(String(repeating: "a", count: 65)))
    }
}

@Suite("Version gate (pure)")
struct VersionGateTests {
    let v5 = MemberVersion(schema: 5, apiExtensions: 6)
    let v6 = MemberVersion(schema: 6, apiExtensions: 6)

    @Test func aNewerMemberWaitsForEveryOlderOneByName() {
        let others = [(name: "m3", version: v5), (name: "m2", version: v5), (name: "m4", version: v6)]
        #expect(VersionGate.decide(own: v6, databaseSchema: 5, others: others) == .wait(laggards: ["m2", "m3"]))
        // More API extensions alone also make a member newer.
        let moreAPI = MemberVersion(schema: 6, apiExtensions: 7)
        #expect(VersionGate.decide(own: moreAPI, databaseSchema: 6, others: [(name: "m2", version: v6)]) == .wait(laggards: ["m2"]))
    }

    @Test func anOlderOrEqualMemberGoesOnUntilTheSchemaMovesPastIt() {
        #expect(VersionGate.decide(own: v5, databaseSchema: 5, others: [(name: "m2", version: v6)]) == .proceed)
        #expect(VersionGate.decide(own: v6, databaseSchema: 5, others: [(name: "m2", version: v6)]) == .proceed)
        #expect(VersionGate.decide(own: v5, databaseSchema: 6, others: []) == .refuse(databaseSchema: 6))
    }

    @Test func membersThatNeverStartedHoldNobodyUp() {
        let never = MemberVersion(schema: 0, apiExtensions: 0)
        #expect(VersionGate.decide(own: v6, databaseSchema: 5, others: [(name: "new", version: never)]) == .proceed)
    }
}
