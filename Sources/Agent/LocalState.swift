import Foundation

public enum AgentError: Error, CustomStringConvertible {
    case localState(String)
    case startup(String)
    case cluster(String)

    public var description: String {
        switch self {
        case .localState(let m): "local state: \(m)"
        case .startup(let m): "startup: \(m)"
        case .cluster(let m): "cluster: \(m)"
        }
    }
}

/// The abstract socket name for this member's dqlite node: unique per data directory, so several
/// agents can share a host (tests, `make run` clusters), and per dqlite id, so the node started
/// after joining never competes for the name with the one it replaces.
func dqliteBindAddress(dataDir: String, dqliteID: UInt64) -> String {
    dqliteBindAddress(dataDir: dataDir) + "-\(dqliteID)"
}

func dqliteBindAddress(dataDir: String) -> String {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in dataDir.utf8 {
        hash ^= UInt64(b)
        hash = hash &* 0x100_0000_01b3
    }
    return "@lxd-swift-\(String(hash, radix: 16))"
}
