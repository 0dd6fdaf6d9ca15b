/// What one round of a tree copy sends: the difference between the manifest the target was
/// brought to last round (nil for the first round) and the source's manifest now. Pure.
///
/// A move, on the source: `previous = nil`; each round scans (`TreeManifest.scan`), takes
/// `between(previous:current:)`, encodes it (`TreeStreamEncoder`) to the target's
/// `TreeStreamApplier`, then `previous = current`; rounds repeat while `estimatedBytes`
/// shrinks; the last round runs the same way once the container is frozen. `previous` is
/// always the source's own earlier scan (what was read is at least as new as it), never a scan
/// of the target.
///
/// Rules:
/// - An entry is sent when it is new, or when its kind, mode, owner, size, mtime, ctime or
///   inode changed (ctime moves on every xattr, owner or link-count change, so those are
///   caught too). A directory is sent for its metadata only; its children are separate entries.
/// - An entry whose ctime was within `racyWindowNanoseconds` of the previous scan's start is
///   sent again: file times come from a coarse clock, so a change made during that scan could
///   have kept the very ctime the scan saw.
/// - Hard links: when one path of an inode with more than one link is sent, every current
///   path of that inode is sent, so the target can link them all to one file again.
/// - Removed: paths in `previous` that are gone now, and paths whose kind changed (removed,
///   then sent as the new kind). Only the topmost path of a removed subtree is listed: the
///   target removes it with everything below.
/// - Removals come before sends on the wire; both lists are sorted, so a directory is sent
///   before anything inside it.
public struct TreeDelta: Sendable, Equatable {
    /// Paths to send, sorted (parents first).
    public var sent: [TreePath]
    /// Paths to remove on the target, sorted, topmost only.
    public var removed: [TreePath]
    /// Roughly the bytes this round puts on the wire: record headers, paths and the data a
    /// regular file really holds (a sparse file counts its allocated bytes, not its size).
    /// For the decision "repeat rounds while the delta shrinks"; not a bound.
    public var estimatedBytes: UInt64

    public static let racyWindowNanoseconds: Int64 = 100_000_000

    public init(sent: [TreePath], removed: [TreePath], estimatedBytes: UInt64) {
        self.sent = sent
        self.removed = removed
        self.estimatedBytes = estimatedBytes
    }

    public var isEmpty: Bool { sent.isEmpty && removed.isEmpty }

    public static func between(previous: TreeManifest?, current: TreeManifest) -> TreeDelta {
        var sent = Set<TreePath>()
        var removedAll = Set<TreePath>()
        let racySince = (previous?.scanStartedNanoseconds ?? 0) - racyWindowNanoseconds

        for (path, entry) in current.entries {
            guard let previous, let before = previous.entries[path] else {
                sent.insert(path)
                continue
            }
            if before.kind != entry.kind {
                if !path.isRoot { removedAll.insert(path) }
                sent.insert(path)
            } else if before.mode != entry.mode || before.uid != entry.uid || before.gid != entry.gid
                || before.size != entry.size || before.mtimeNanoseconds != entry.mtimeNanoseconds
                || before.ctimeNanoseconds != entry.ctimeNanoseconds || before.inode != entry.inode
                || before.rdev != entry.rdev || before.ctimeNanoseconds >= racySince {
                sent.insert(path)
            }
        }
        if let previous {
            for path in previous.entries.keys where current.entries[path] == nil {
                removedAll.insert(path)
            }
        }

        // Every current path of a sent multiply-linked inode.
        var linkedInodes = Set<UInt64>()
        for path in sent {
            if let entry = current.entries[path], entry.kind != .directory, entry.linkCount > 1 {
                linkedInodes.insert(entry.inode)
            }
        }
        if !linkedInodes.isEmpty {
            for (path, entry) in current.entries
            where entry.kind != .directory && entry.linkCount > 1 && linkedInodes.contains(entry.inode) {
                sent.insert(path)
            }
        }

        let removed = removedAll.filter { path in
            var ancestor = path.parent
            while let current = ancestor, !current.isRoot {
                if removedAll.contains(current) { return false }
                ancestor = current.parent
            }
            return true
        }.sorted()

        let sentSorted = sent.sorted()
        var bytes = UInt64(TreeStreamFormat.streamHeaderSize + TreeStreamFormat.recordHeaderSize)
        for path in removed { bytes += UInt64(TreeStreamFormat.recordHeaderSize + path.bytes.count) }
        var counted = Set<UInt64>()
        for path in sentSorted {
            guard let entry = current.entries[path] else { continue }
            bytes += UInt64(TreeStreamFormat.recordHeaderSize + path.bytes.count)
            switch entry.kind {
            case .regular:
                // A second link of an inode is a hard-link record, not a copy.
                if entry.linkCount > 1, !counted.insert(entry.inode).inserted { continue }
                let data = min(entry.size, entry.allocatedBytes)
                bytes += data + UInt64(TreeStreamFormat.extentHeaderSize) * (data > 0 ? 2 : 1)
            case .symlink:
                bytes += entry.size
            default:
                break
            }
        }
        return TreeDelta(sent: sentSorted, removed: removed, estimatedBytes: bytes)
    }
}
