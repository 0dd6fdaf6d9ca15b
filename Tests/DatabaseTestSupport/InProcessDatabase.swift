import ClusterDB
import Dqlite
import Foundation
import Logging
import Synchronization

/// A real single-node dqlite database in a temp directory, in this process and without root,
/// for unit tests of the use cases above ClusterDB. Each test opens its own and closes it.
public final class InProcessDatabase: Sendable {
    private static let counter = Atomic<Int>(0)

    public let dataDir: String
    public let node: DqliteNode
    public let db: ClusterDB

    /// `label` names the directory and socket, to tell test targets apart in a listing.
    public init(label: String) async throws {
        let n = Self.counter.add(1, ordering: .relaxed).newValue
        let pid = getpid()
        dataDir = NSTemporaryDirectory() + "\(label)-test-\(pid)-\(n)-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dataDir, withIntermediateDirectories: true)
        // The address is only the node's raft identity; it listens on an abstract unix socket,
        // unique per process and database.
        node = try DqliteNode(id: 1, address: "127.0.0.1:\(24000 + n)", dataDir: dataDir + "/database",
                              bindAddress: "@lxd-swift-test-\(label)-\(pid)-\(n)", logger: Logger(label: "test.dqlite"))
        try node.start()
        do {
            db = try await ClusterDB.open(node: node, logger: Logger(label: "test.clusterdb"))
        } catch {
            try? node.stop()
            try? FileManager.default.removeItem(atPath: dataDir)
            throw error
        }
    }

    public func close() async {
        await db.close()
        try? node.stop()
        try? FileManager.default.removeItem(atPath: dataDir)
    }
}
