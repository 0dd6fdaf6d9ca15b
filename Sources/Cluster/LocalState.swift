import Foundation

/// Facts about this member that are not replicated (DESIGN.md "State"): its name, dqlite id
/// and address, kept in `$LXD_DIR/member.json`.
public struct LocalState: Codable, Equatable, Sendable {
    public var name: String
    public var dqliteID: UInt64
    public var address: String
    /// The other members as last known (where to find the leader at boot, and whom to trust
    /// on the database links before the database is reachable); nil before joining a cluster.
    public var peers: [LocalPeer]?
    /// Set by `cluster enable`, a bootstrap preseed or a join; nil (not enabled) in files written before it existed.
    public var clusterEnabled: Bool?

    public init(name: String, dqliteID: UInt64, address: String, peers: [LocalPeer]? = nil, clusterEnabled: Bool? = nil) {
        self.name = name
        self.dqliteID = dqliteID
        self.address = address
        self.peers = peers
        self.clusterEnabled = clusterEnabled
    }

    enum CodingKeys: String, CodingKey {
        case name, address, peers
        case dqliteID = "dqlite_id"
        case clusterEnabled = "cluster_enabled"
    }

    public static func path(in dataDir: String) -> String { "\(dataDir)/member.json" }
    /// Present between a join and the next start: the old database must be moved aside first.
    public static func joinMarkerPath(in dataDir: String) -> String { "\(dataDir)/join-pending" }

    public static func load(from dataDir: String) throws -> LocalState? {
        let p = path(in: dataDir)
        guard FileManager.default.fileExists(atPath: p) else { return nil }
        do {
            return try JSONDecoder().decode(LocalState.self, from: Data(contentsOf: URL(fileURLWithPath: p)))
        } catch {
            throw ClusterError.localState("cannot read \(p): \(error); restore it from a backup or move the data directory aside")
        }
    }

    /// The abstract socket name for this member's dqlite node: unique per data directory, so
    /// several agents can share a host (tests, `make run` clusters), and per dqlite id, so the
    /// node started after joining never competes for the name with the one it replaces.
    public func dqliteBindAddress(dataDir: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in dataDir.utf8 {
            hash ^= UInt64(b)
            hash = hash &* 0x100_0000_01b3
        }
        return "@lxd-swift-\(String(hash, radix: 16))-\(dqliteID)"
    }

    public func save(to dataDir: String) throws {
        let p = Self.path(in: dataDir)
        let tmp = p + ".tmp"
        try JSONEncoder().encode(self).write(to: URL(fileURLWithPath: tmp))
        guard rename(tmp, p) == 0 else { throw ClusterError.localState("cannot write \(p): errno \(errno)") }
    }
}

/// A member as this member remembers it locally.
public struct LocalPeer: Codable, Equatable, Sendable {
    public var name: String
    /// Its HTTPS address, which is also its dqlite address.
    public var address: String
    /// SHA-256 of its server certificate.
    public var fingerprint: String

    public init(name: String, address: String, fingerprint: String) {
        self.name = name
        self.address = address
        self.fingerprint = fingerprint
    }
}

/// What failed in the cluster's I/O shell; the message says on what and what to do next.
public enum ClusterError: Error, CustomStringConvertible {
    case localState(String)
    case cluster(String)

    public var description: String {
        switch self {
        case .localState(let m): "local state: \(m)"
        case .cluster(let m): "cluster: \(m)"
        }
    }
}
