@testable import ClusterDB
import Dqlite
import Foundation
import Logging
import Synchronization
import Testing

/// A COMMIT whose answer never arrives, on a real node: a proxy between the pool and the node
/// cuts the connection at the first COMMIT, either after the node got it (the answer is lost) or
/// before (the request is lost). The transaction must apply exactly once either way.
@Suite("ClusterDB write transactions with an unknown COMMIT outcome")
struct TransactionMarkTests {
    enum Cut: Sendable { case answerLost, requestLost }

    /// Pumps bytes between the pool's socket and the node; cuts once when armed.
    final class CuttingDialer: DqlitePeerDialer {
        let node: AbstractSocketDialer
        let cut: Cut
        /// Armed by the test once the database is open (opening commits too).
        let armed = Atomic<Bool>(false)
        let cuts = Atomic<Int>(0)

        init(node: AbstractSocketDialer, cut: Cut) {
            self.node = node
            self.cut = cut
        }

        func dial(address: String) throws -> Int32 {
            let upstream = try node.dial(address: address)
            var pair: [Int32] = [-1, -1]
            guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0 else {
                throw DqliteError.io(operation: "socketpair", errno: errno)
            }
            let link = Link(local: pair[1], upstream: upstream)
            let local = link.local
            // Node → pool.
            Thread.detachNewThread {
                var buffer = [UInt8](repeating: 0, count: 65536)
                while true {
                    let n = buffer.withUnsafeMutableBytes { read(upstream, $0.baseAddress, $0.count) }
                    if n <= 0 || link.done.load(ordering: .relaxed) { break }
                    _ = buffer.withUnsafeBytes { write(local, $0.baseAddress, n) }
                }
                link.finish()
            }
            // Pool → node, cutting at the first COMMIT while armed.
            Thread.detachNewThread { [self] in
                var buffer = [UInt8](repeating: 0, count: 65536)
                while true {
                    let n = buffer.withUnsafeMutableBytes { read(local, $0.baseAddress, $0.count) }
                    if n <= 0 { break }
                    let chunk = Array(buffer[0..<n])
                    if String(decoding: chunk, as: UTF8.self).contains("COMMIT"), armed.exchange(false, ordering: .relaxed) {
                        cuts.add(1, ordering: .relaxed)
                        if cut == .answerLost {
                            _ = chunk.withUnsafeBytes { write(upstream, $0.baseAddress, n) }
                            // Let the node apply it; its answer is then dropped with the connection.
                            usleep(300_000)
                        }
                        link.finish()
                        break
                    }
                    _ = chunk.withUnsafeBytes { write(upstream, $0.baseAddress, n) }
                }
                link.finish()
            }
            return pair[0]
        }
    }

    /// Both ends of one proxied connection; `finish` ends both once.
    final class Link: Sendable {
        let local: Int32
        let upstream: Int32
        let done = Atomic<Bool>(false)

        init(local: Int32, upstream: Int32) {
            self.local = local
            self.upstream = upstream
        }

        func finish() {
            if !done.exchange(true, ordering: .relaxed) {
                shutdown(local, Int32(SHUT_RDWR))
                shutdown(upstream, Int32(SHUT_RDWR))
            }
        }
    }

    @Test(arguments: [Cut.answerLost, Cut.requestLost])
    func aCutCommitAppliesExactlyOnce(_ cut: Cut) async throws {
        let t = try TestCluster()
        defer { t.shutdown() }
        let logger = Logger(label: "test.marks")
        let db = try await t.open()
        let memberID = try await db.transaction { tx in try tx.ensureMember(name: "m1", address: "a:1") }
        await db.close()

        let dialer = CuttingDialer(node: t.node.localDialer, cut: cut)
        let pool = DqlitePool(configuration: .init(seeds: [t.node.configuration.address], dialer: dialer, maxConnections: 1,
                                                   sessionStatements: ClusterDB.sessionStatements), logger: logger)
        let marked = try await ClusterDB.open(pool: pool, logger: logger)
        dialer.armed.store(true, ordering: .relaxed)
        let runs = Mutex(0)
        let row = try await marked.transaction { tx in
            runs.withLock { $0 += 1 }
            return try tx.insertInstance(NewInstance(name: "once", memberID: memberID, imageFingerprint: "", architecture: "x86_64"))
        }
        let cuts = dialer.cuts.load(ordering: .relaxed)
        #expect(cuts == 1, "the COMMIT was never cut: the test proves nothing")
        #expect(row.name == "once")
        // Answer lost: the node applied it and the mark says so (one run). Request lost: nothing
        // applied, so the body ran again.
        #expect(runs.withLock { $0 } == (cut == .answerLost ? 1 : 2))
        let count = try await marked.transaction { tx in try tx.query("SELECT count(*) FROM instances WHERE name = 'once'").rows }
        #expect(count == [[.integer(1)]])
        await marked.close()
    }
}
