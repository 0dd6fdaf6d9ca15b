import ClusterDB
import Dqlite
import Foundation
import Logging
import Synchronization

/// A real single-member dqlite node in a temp dir (unique abstract name per test), plus helpers.
final class TestCluster: Sendable {
    private static let counter = Atomic<Int>(0)

    let dataDir: String
    let bindAddress: String
    let address: String
    private let current: Mutex<DqliteNode?>
    private let starts = Atomic<Int>(0)

    init() throws {
        let n = Self.counter.add(1, ordering: .relaxed).newValue
        let pid = getpid()
        dataDir = NSTemporaryDirectory() + "clusterdb-test-\(pid)-\(n)-\(UInt32.random(in: 0...UInt32.max))"
        bindAddress = "@lxd-swift-test-cdb-\(pid)-\(n)"
        address = "127.0.0.1:\(21000 + n)"
        current = Mutex(nil)
        try startNode()
    }

    var node: DqliteNode {
        guard let node = current.withLock({ $0 }) else { fatalError("node not running") }
        return node
    }

    func startNode() throws {
        // A restart binds a fresh abstract name: a process another test spawned meanwhile (with
        // Foundation.Process, which does not close inherited fds) may still hold the old socket.
        let start = starts.add(1, ordering: .relaxed).newValue
        let node = try DqliteNode(id: 1, address: address, dataDir: dataDir, bindAddress: start == 1 ? bindAddress : "\(bindAddress)-\(start)",
                                  logger: Logger(label: "test.dqlite"))
        try node.start()
        current.withLock { $0 = node }
    }

    /// Stops the node and drops it, so the same data dir and bind address can start again.
    func stopNode() throws {
        let node = current.withLock { n in defer { n = nil }; return n }
        try node?.stop()
    }

    func open(migrations: [SchemaMigration] = SchemaMigration.all, maxConnections: Int = 4) async throws -> ClusterDB {
        try await ClusterDB.open(node: node, maxConnections: maxConnections, logger: Logger(label: "test.clusterdb"), migrations: migrations)
    }

    func shutdown() {
        try? stopNode()
        try? FileManager.default.removeItem(atPath: dataDir)
    }
}

struct Boom: Error, Equatable {}

let fingerprintA = "abc1" + String(repeating: "0", count: 60)
let fingerprintB = "abc2" + String(repeating: "0", count: 60)
let fingerprintC = "def0" + String(repeating: "1", count: 60)
