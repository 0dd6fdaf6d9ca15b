import Dqlite
import Foundation
import Logging
import Synchronization

/// A real single-member dqlite node in a fresh temp dir, bound to a unique abstract name.
final class TestNode: Sendable {
    private static let counter = Atomic<Int>(0)

    let node: DqliteNode
    let dataDir: String

    init() throws {
        let n = Self.counter.add(1, ordering: .relaxed).newValue
        let pid = getpid()
        dataDir = NSTemporaryDirectory() + "dqlite-test-\(pid)-\(n)-\(UInt32.random(in: 0...UInt32.max))"
        node = try DqliteNode(id: 1, address: "127.0.0.1:\(20000 + n)", dataDir: dataDir,
                              bindAddress: "@lxd-swift-test-\(pid)-\(n)", logger: Logger(label: "test.dqlite"))
        try node.start()
    }

    func pool(maxConnections: Int = 4) -> DqlitePool {
        DqlitePool(node: node, maxConnections: maxConnections, logger: Logger(label: "test.pool"))
    }

    func shutdown() {
        try? node.stop()
        try? FileManager.default.removeItem(atPath: dataDir)
    }
}
