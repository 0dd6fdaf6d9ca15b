import Foundation

/// Facts about this member that are not replicated (DESIGN.md "State"): its name, dqlite id
/// and address, kept in `$LXD_DIR/member.json`.
struct LocalState: Codable, Equatable {
    var name: String
    var dqliteID: UInt64
    var address: String

    enum CodingKeys: String, CodingKey {
        case name, address
        case dqliteID = "dqlite_id"
    }

    static func path(in dataDir: String) -> String { "\(dataDir)/member.json" }

    static func load(from dataDir: String) throws -> LocalState? {
        let p = path(in: dataDir)
        guard FileManager.default.fileExists(atPath: p) else { return nil }
        do {
            return try JSONDecoder().decode(LocalState.self, from: Data(contentsOf: URL(fileURLWithPath: p)))
        } catch {
            throw AgentError.localState("cannot read \(p): \(error); restore it from a backup or move the data directory aside")
        }
    }

    func save(to dataDir: String) throws {
        let p = Self.path(in: dataDir)
        let tmp = p + ".tmp"
        try JSONEncoder().encode(self).write(to: URL(fileURLWithPath: tmp))
        guard rename(tmp, p) == 0 else { throw AgentError.localState("cannot write \(p): errno \(errno)") }
    }
}

public enum AgentError: Error, CustomStringConvertible {
    case localState(String)
    case startup(String)

    public var description: String {
        switch self {
        case .localState(let m): "local state: \(m)"
        case .startup(let m): "startup: \(m)"
        }
    }
}

/// The abstract socket name for this member's dqlite node: unique per data directory, so several
/// agents can share a host (tests, `make run` clusters).
func dqliteBindAddress(dataDir: String) -> String {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in dataDir.utf8 {
        hash ^= UInt64(b)
        hash = hash &* 0x100_0000_01b3
    }
    return "@lxd-swift-\(String(hash, radix: 16))"
}
