@testable import Cluster
import Dqlite
import Foundation
import Logging
import Testing

/// `lxdd cluster recover-from-quorum-loss` on a real in-process dqlite node (no root, no network).
@Suite struct QuorumRecoveryTests {
    let logger = Logger(label: "test.recovery")

    /// A member's data directory with member.json; removed by the caller.
    func memberDirectory(peers: [LocalPeer]? = nil) throws -> (String, LocalState) {
        let dir = NSTemporaryDirectory() + "cluster-recovery-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let state = LocalState(name: "m1", dqliteID: 1, address: "127.0.0.1:\(Int.random(in: 20000...29999))", peers: peers)
        try state.save(to: dir)
        return (dir, state)
    }

    func node(_ state: LocalState, in dir: String) throws -> DqliteNode {
        try DqliteNode(id: state.dqliteID, address: state.address, dataDir: dir + "/database",
                       bindAddress: state.dqliteBindAddress(dataDir: dir), logger: logger)
    }

    /// The agent and `recover` must agree on the name whichever binary wrote it: the format is
    /// FNV-1a of the data directory, then the dqlite id.
    @Test func theNodeSocketNameDependsOnTheDataDirectoryAndTheDqliteID() {
        let state = LocalState(name: "m1", dqliteID: 1, address: "a:1")
        #expect(state.dqliteBindAddress(dataDir: "") == "@lxd-swift-cbf29ce484222325-1")
        #expect(state.dqliteBindAddress(dataDir: "a") == "@lxd-swift-af63dc4c8601ec8c-1")
        var joined = state
        joined.dqliteID = 2
        #expect(joined.dqliteBindAddress(dataDir: "a") != state.dqliteBindAddress(dataDir: "a"))
    }

    @Test func aDirectoryWithoutMemberJSONIsRefused() throws {
        let dir = NSTemporaryDirectory() + "cluster-recovery-none-\(getpid())"
        let error = #expect(throws: ClusterError.self) { try QuorumRecovery.run(dataDir: dir, logger: logger) }
        #expect(error?.description == "cluster: no member.json in \(dir): this is not a member's data directory (use --data-dir)")
    }

    @Test func aMemberWithoutADatabaseHasNothingToRecover() throws {
        let (dir, _) = try memberDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let error = #expect(throws: ClusterError.self) { try QuorumRecovery.run(dataDir: dir, logger: logger) }
        #expect(error?.description.contains("\(dir)/database does not exist: nothing to recover") == true)
    }

    @Test func aRunningNodeIsNotRewritten() throws {
        let (dir, state) = try memberDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let running = try node(state, in: dir)
        try running.start()
        defer { try? running.stop() }
        let error = #expect(throws: ClusterError.self) { try QuorumRecovery.run(dataDir: dir, logger: logger) }
        #expect(error?.description.contains("the database node of m1 is running") == true)
    }

    @Test func aStoppedMemberBecomesTheOnlyVoterAndForgetsTheLostPeers() throws {
        let (dir, state) = try memberDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var clustered = state
        clustered.peers = [LocalPeer(name: "m1", address: state.address, fingerprint: "f1"),
                           LocalPeer(name: "m2", address: "127.0.0.2:8443", fingerprint: "f2")]
        try clustered.save(to: dir)
        let first = try node(state, in: dir)
        try first.start()
        try first.stop()

        let summary = try QuorumRecovery.run(dataDir: dir, logger: logger)
        #expect(summary.member == "m1" && summary.dqliteID == 1 && summary.address == state.address)
        #expect(try LocalState.load(from: dir)?.peers == [LocalPeer(name: "m1", address: state.address, fingerprint: "f1")])
    }
}
