import Dqlite
import Foundation
import Logging
import Synchronization
import Testing

@Suite("Leader search past a silent seed")
struct SilentSeedTests {
    /// Dials "silent" to a socket whose other end is held open but never answers (a link that
    /// went quiet under a starting member); every other address goes to the real node.
    final class SilentFirstDialer: DqlitePeerDialer {
        let real: AbstractSocketDialer
        let heldOpen = Mutex<[Int32]>([])

        init(_ real: AbstractSocketDialer) { self.real = real }

        func dial(address: String) throws -> Int32 {
            guard address == "silent" else { return try real.dial(address: address) }
            var pair: [Int32] = [-1, -1]
            guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0 else {
                throw DqliteError.io(operation: "socketpair", errno: errno)
            }
            heldOpen.withLock { $0.append(pair[1]) }
            return pair[0]
        }

        deinit { for fd in heldOpen.withLock({ $0 }) { close(fd) } }
    }

    @Test func aSeedThatNeverAnswersCostsOnlyTheProbeTimeout() async throws {
        let t = try TestNode()
        defer { t.shutdown() }
        let dialer = SilentFirstDialer(t.node.localDialer)
        let pool = DqlitePool(configuration: .init(seeds: ["silent", t.node.configuration.address], dialer: dialer,
                                                   leaderTimeout: .seconds(20), ioTimeoutSeconds: 30, probeTimeoutSeconds: 1),
                              logger: Logger(label: "test.silent"))
        let clock = ContinuousClock()
        let started = clock.now
        let rows = try await pool.withConnection { c in try c.query("SELECT 1").rows }
        let took = clock.now - started
        #expect(rows == [[.integer(1)]])
        // One probe timeout on the silent seed, not the 30 s call timeout.
        #expect(took >= .milliseconds(900) && took < .seconds(5), "leader search took \(took)")
        #expect(!dialer.heldOpen.withLock { $0 }.isEmpty, "the silent seed was never tried: the test proves nothing")
        await pool.close()
    }
}
