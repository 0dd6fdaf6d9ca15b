import Dqlite
import Foundation
import Logging

/// `lxdd cluster recover-from-quorum-loss`: on a surviving member whose agent is stopped,
/// rewrites the database's raft configuration so that this member is its only voter. When the
/// agent starts again it elects itself and serves; the lost members are marked OFFLINE by its
/// heartbeats and can then be removed with `lxdctl cluster remove NAME --force`.
public enum QuorumRecovery {
    public struct Summary: Sendable, CustomStringConvertible {
        public var member: String
        public var address: String
        public var dqliteID: UInt64
        public var description: String {
            "Recovered: the database of member \(member) (\(address), dqlite id \(dqliteID)) now has it as its only voter. Start lxdd on this member; lost members will show OFFLINE: remove them with `lxdctl cluster remove NAME --force`. Other surviving members must rejoin with a fresh data directory."
        }
    }

    public static func run(dataDir: String, logger: Logger) throws -> Summary {
        guard let local = try LocalState.load(from: dataDir) else {
            throw ClusterError.cluster("no member.json in \(dataDir): this is not a member's data directory (use --data-dir)")
        }
        guard FileManager.default.fileExists(atPath: "\(dataDir)/database") else {
            throw ClusterError.cluster("\(dataDir)/database does not exist: nothing to recover")
        }
        // The agent must be stopped: a running node would keep the old configuration and split the cluster.
        let bindAddress = local.dqliteBindAddress(dataDir: dataDir)
        if let fd = try? connectAbstractSocket(bindAddress) {
            close(fd)
            throw ClusterError.cluster("the database node of \(local.name) is running (lxdd is up on \(dataDir)): stop lxdd first, then run recover-from-quorum-loss again")
        }
        DqliteNode.prepareProcess()
        do {
            let node = try DqliteNode(
                DqliteNode.Configuration(id: local.dqliteID, address: local.address, dataDir: "\(dataDir)/database", bindAddress: bindAddress),
                logger: logger)
            try node.recover(voters: [(id: local.dqliteID, address: local.address)])
        } catch {
            throw ClusterError.cluster("rewriting the database configuration failed: \(error); nothing was changed if the error came before the rewrite (check \(dataDir)/database)")
        }
        // Dial only this member at the next start: the lost ones would only slow leader discovery down.
        var state = local
        state.peers = local.peers?.filter { $0.address == local.address }
        if state.peers?.isEmpty == true { state.peers = nil }
        try state.save(to: dataDir)
        logger.notice("quorum recovered", metadata: ["member": "\(local.name)", "dqlite-id": "\(local.dqliteID)"])
        return Summary(member: local.name, address: local.address, dqliteID: local.dqliteID)
    }
}
