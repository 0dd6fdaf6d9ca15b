import Testing
@testable import Migration

/// Every rule of `TreeDelta.between`, over hand-built manifests.
@Suite struct TreeDeltaTests {
    /// Scans far from the entries' ctimes, so the racy rule stays out of the way unless asked.
    static let scanTime: Int64 = 1_000_000_000_000_000_000

    typealias Entry = TreeManifest.Entry

    static func dir(_ inode: UInt64, ctime: Int64 = 1) -> Entry {
        Entry(kind: .directory, mode: 0o755, uid: 1_000_000, gid: 1_000_000, size: 4096, mtimeNanoseconds: 1, ctimeNanoseconds: ctime, inode: inode, linkCount: 2)
    }

    static func file(_ inode: UInt64, size: UInt64 = 10, links: UInt64 = 1, ctime: Int64 = 1) -> Entry {
        Entry(kind: .regular, mode: 0o644, uid: 1_000_000, gid: 1_000_000, size: size, mtimeNanoseconds: 1, ctimeNanoseconds: ctime, inode: inode, linkCount: links)
    }

    static func manifest(_ entries: [TreePath: Entry]) -> TreeManifest {
        var all = entries
        if all[.root] == nil { all[.root] = dir(1) }
        return TreeManifest(entries: all, scanStartedNanoseconds: scanTime)
    }

    let base = manifest([
        "etc": dir(2), "etc/hosts": file(3), "etc/passwd": file(4),
        "var": dir(5), "var/lib": dir(6), "var/lib/a": file(7), "var/lib/b": file(8),
        "bin": dir(9), "bin/x": file(10, links: 2), "bin/y": file(10, links: 2), "bin/z": file(11),
    ])

    @Test func firstRoundSendsEverythingSortedParentsFirst() {
        let delta = TreeDelta.between(previous: nil, current: base)
        #expect(delta.removed.isEmpty)
        #expect(delta.sent == base.entries.keys.sorted())
        #expect(delta.sent.first == .root)
        for (i, path) in delta.sent.enumerated() {
            if let parent = path.parent { #expect(delta.sent.firstIndex(of: parent)! < i, "\(path) before its directory") }
        }
    }

    @Test func unchangedTreeHasAnEmptyDelta() {
        let delta = TreeDelta.between(previous: base, current: base)
        #expect(delta.isEmpty)
    }

    @Test(arguments: ["mode", "uid", "gid", "size", "mtime", "ctime", "inode"])
    func eachMetadataChangeSendsTheEntry(field: String) {
        var current = base
        var entry = current.entries["etc/hosts"]!
        switch field {
        case "mode": entry.mode = 0o600
        case "uid": entry.uid += 1
        case "gid": entry.gid += 1
        case "size": entry.size += 1
        case "mtime": entry.mtimeNanoseconds += 1
        case "ctime": entry.ctimeNanoseconds += 1
        default: entry.inode = 99
        }
        current.entries["etc/hosts"] = entry
        let delta = TreeDelta.between(previous: base, current: current)
        #expect(delta.sent == ["etc/hosts"])
        #expect(delta.removed.isEmpty)
    }

    @Test func linkCountAloneIsNotAChange() {
        // A link count change moves ctime in real life; nlink by itself is not compared.
        var current = base
        current.entries["etc/hosts"]!.linkCount = 1
        current.entries["var/lib/a"]!.allocatedBytes = 0
        #expect(TreeDelta.between(previous: base, current: current).isEmpty)
    }

    @Test func entriesChangedAroundThePreviousScanAreSentAgain() {
        var previous = base
        previous.entries["etc/passwd"]!.ctimeNanoseconds = Self.scanTime - TreeDelta.racyWindowNanoseconds / 2
        previous.entries["etc/hosts"]!.ctimeNanoseconds = Self.scanTime - TreeDelta.racyWindowNanoseconds * 2
        let delta = TreeDelta.between(previous: previous, current: previous)
        #expect(delta.sent == ["etc/passwd"])
    }

    @Test func aChangedHardLinkSendsEveryPathOfItsInode() {
        var current = base
        current.entries["bin/x"]!.ctimeNanoseconds = 5
        current.entries["bin/y"]!.ctimeNanoseconds = 5
        current.entries["var/lib/c"] = Self.file(10, links: 3, ctime: 5)  // a new third name
        current.entries["var/lib"]!.mtimeNanoseconds = 5
        let delta = TreeDelta.between(previous: base, current: current)
        #expect(delta.sent == ["bin/x", "bin/y", "var/lib", "var/lib/c"])

        // Only the new name changed in the manifest: the old names go along.
        var onlyNew = base
        onlyNew.entries["var/lib/c"] = Self.file(10, links: 2)
        #expect(TreeDelta.between(previous: base, current: onlyNew).sent == ["bin/x", "bin/y", "var/lib/c"])
    }

    @Test func removedSubtreesAreListedByTheirTopOnly() {
        var current = base
        current.entries["var/lib"] = nil
        current.entries["var/lib/a"] = nil
        current.entries["var/lib/b"] = nil
        current.entries["etc/passwd"] = nil
        let delta = TreeDelta.between(previous: base, current: current)
        #expect(delta.removed == ["etc/passwd", "var/lib"])
        #expect(delta.sent.isEmpty)
    }

    @Test func aKindChangeIsARemovalThenASend() {
        var current = base
        // var/lib becomes a file: its old children are gone with it.
        current.entries["var/lib"] = Self.file(20)
        current.entries["var/lib/a"] = nil
        current.entries["var/lib/b"] = nil
        current.entries["etc/hosts"] = Entry(kind: .symlink, mode: 0o777, size: 5, inode: 3)
        let delta = TreeDelta.between(previous: base, current: current)
        #expect(delta.removed == ["etc/hosts", "var/lib"])
        #expect(delta.sent == ["etc/hosts", "var/lib"])
    }

    @Test func aDirectoryWithChangedMetadataIsSentWithoutItsChildren() {
        var current = base
        current.entries["var"]!.mode = 0o700
        let delta = TreeDelta.between(previous: base, current: current)
        #expect(delta.sent == ["var"])
    }

    @Test func theEstimateCountsAllocatedBytesAndOneCopyPerInode() {
        var sparse = base
        sparse.entries["var/lib/a"] = Self.file(7, size: 1 << 30)
        sparse.entries["var/lib/a"]!.allocatedBytes = 4096
        let all = TreeDelta.between(previous: nil, current: sparse)
        #expect(all.estimatedBytes < 64 * 1024, "a 1 GiB file holding 4 KiB is estimated as 4 KiB")
        #expect(all.estimatedBytes > 4096)

        var bigger = sparse
        bigger.entries["etc/hosts"] = Self.file(3, size: 1 << 20, ctime: 9)
        for name: TreePath in ["bin/x", "bin/y"] {
            bigger.entries[name]!.size = 1 << 20
            bigger.entries[name]!.allocatedBytes = 1 << 20
        }
        let round = TreeDelta.between(previous: sparse, current: bigger)
        #expect(round.sent == ["bin/x", "bin/y", "etc/hosts"])
        // Two data copies (hosts, one of the links), not three.
        #expect(round.estimatedBytes >= 2 << 20 && round.estimatedBytes < 3 << 20)
        #expect(TreeDelta.between(previous: bigger, current: bigger).estimatedBytes < round.estimatedBytes)
    }

    @Test func pathsOrderBytewiseAndKnowTheirAncestors() {
        let a: TreePath = "a", ab: TreePath = "a/b", aDash: TreePath = "a-b"
        #expect(a < aDash && aDash < ab)
        #expect(a.isAncestor(of: ab) && !a.isAncestor(of: aDash) && !ab.isAncestor(of: a))
        #expect(TreePath.root.isAncestor(of: a) && !TreePath.root.isAncestor(of: .root))
        #expect(ab.parent == a && a.parent == .root && TreePath.root.parent == nil)
    }
}
