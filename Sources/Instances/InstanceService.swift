import APITypes
import ClusterDB
import Foundation
import Images
import InstanceConfig
import Logging
import Migration
import Operations
import Runtime

/// This member's identity in the cluster.
public struct MemberIdentity: Sendable {
    public let id: Int64
    public let name: String
    public init(id: Int64, name: String) {
        self.id = id
        self.name = name
    }
}

/// Host ids that containers' user namespaces are mapped to, allocated per instance in ClusterDB.
/// Blocks are allocated cluster-wide, so every member of a cluster must use the same range.
public struct IDMapRange: Sendable, Equatable, CustomStringConvertible {
    public let start: Int64
    public let size: Int64
    public static let block: Int64 = 65536
    /// The highest usable host id: uid_t is 32 bits and (uid_t)-1 means "no id".
    public static let maxID: Int64 = 4_294_967_294
    public init(start: Int64, size: Int64) {
        self.start = start
        self.size = size
    }

    /// How many isolated instances the range holds (one block of 65,536 ids each).
    public var instances: Int64 { size / Self.block }

    public var description: String { "\(start):\(size)" }

    /// `START:COUNT` as `lxdd --idmap-range` takes it: both decimal, the range above the host's
    /// own ids (below 65,536), within uid_t, and large enough for one instance.
    public init(parsing text: String) throws(IDMapRangeError) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let start = Int64(parts[0]), let count = Int64(parts[1]) else {
            throw IDMapRangeError("invalid id range \"\(text)\": use START:COUNT, two decimal numbers (e.g. 1000000000:1000000000)")
        }
        guard start >= Self.block else {
            throw IDMapRangeError("invalid id range \"\(text)\": START must be at least \(Self.block) (ids below are the host's own users and groups)")
        }
        guard count >= Self.block else {
            throw IDMapRangeError("invalid id range \"\(text)\": COUNT must be at least \(Self.block), the ids of one isolated instance (use a multiple of \(Self.block): one block per instance)")
        }
        guard start <= Self.maxID, count <= Self.maxID - start + 1 else {
            throw IDMapRangeError("invalid id range \"\(text)\": it ends past \(Self.maxID), the highest host id (uid_t is 32 bits): lower START or COUNT")
        }
        self.init(start: start, size: count)
    }

    /// Root's subordinate ids from /etc/subuid, else LXD's default range.
    public static func fromHost() -> IDMapRange {
        if let text = try? String(contentsOfFile: "/etc/subuid", encoding: .utf8) {
            for line in text.split(separator: "\n") {
                let f = line.split(separator: ":")
                if f.count == 3, f[0] == "root", let s = Int64(f[1]), let n = Int64(f[2]), n >= block {
                    return IDMapRange(start: s, size: n)
                }
            }
        }
        return fromHostDefault
    }

    /// LXD's range when /etc/subuid has none for root.
    public static let fromHostDefault = IDMapRange(start: 1_000_000, size: 1_000_000_000)
}

/// Why an id range was refused; the text says what to change.
public struct IDMapRangeError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A file read from or written into an instance.
public struct InstanceFile: Sendable {
    public var content: [UInt8]
    public var uid: UInt32
    public var gid: UInt32
    public var mode: UInt32
    public var type: String
    public init(content: [UInt8], uid: UInt32, gid: UInt32, mode: UInt32, type: String = "file") {
        self.content = content
        self.uid = uid
        self.gid = gid
        self.mode = mode
        self.type = type
    }
}

/// The instance use cases of one member, split by job over one shared ``InstanceContext``:
/// validate → persist → run on the host → undo on failure. Every entry point (API, CLI through
/// the API, forwarding from other members) goes through here.
public struct InstanceService: Sendable {
    /// Create, start, stop, restart, delete, update; reads; autostart after boot.
    public let lifecycle: InstanceLifecycle
    /// Exec, console log, file push and pull.
    public let access: InstanceAccess
    /// Placement groups, the cluster's server config, members' capacity, abandoned placements.
    public let placement: PlacementService

    /// `imageFetcher` and `uploadDirectory` let a create fetch an image imported on another member.
    public init(member: MemberIdentity, db: ClusterDB, runtime: any ContainerHost, store: any LayerStore, operations: OperationRegistry,
                idmaps: IDMapRange, checkpointer: Checkpointer?, dataDir: String,
                imageFetcher: (any ImageTarballFetcher)? = nil, uploadDirectory: String? = nil, maxImageBytes: Int64 = 4 << 30,
                materialiser: (any InstanceMaterialiser)? = nil, moveTransport: (any MoveTransport)? = nil, logger: Logger) {
        let imageFetch = imageFetcher.map {
            ImageFetch(member: member, db: db, store: store, fetcher: $0, uploadDirectory: uploadDirectory ?? "\(dataDir)/uploads",
                       maxImageBytes: maxImageBytes, logger: logger)
        }
        let context = InstanceContext(
            member: member, db: db, host: runtime, layers: store, operations: operations, idmaps: idmaps, checkpointer: checkpointer,
            dataDir: dataDir, imageFetch: imageFetch, materialiser: materialiser, moveTransport: moveTransport, logger: logger)
        let lifecycle = InstanceLifecycle(context: context)
        self.lifecycle = lifecycle
        runtime.observeExits { exit in Task { await lifecycle.initEnded(exit) } }
        access = InstanceAccess(context: context)
        placement = PlacementService(context: context)
    }
}

