import Glibc
import Testing
@testable import Migration

/// The pure owner shift of a copy: ids, ACL entries and v3 file capabilities.
struct OwnerShiftTests {
    let shift = OwnerShift(from: 1_000_000, to: 1_131_072, count: 65_536)!

    @Test func idsInTheSourceBlockMoveAndOthersDoNot() {
        #expect(shift.map(1_000_000) == 1_131_072)
        #expect(shift.map(1_065_535) == 1_196_607)
        #expect(shift.map(1_065_536) == nil)
        #expect(shift.map(999_999) == nil)
        #expect(shift.map(0) == nil)
    }

    @Test func blocksOutsideThirtyTwoBitsAreRefused() {
        #expect(OwnerShift(from: 4_294_967_295, to: 0, count: 2) == nil)
        #expect(OwnerShift(from: 0, to: -1, count: 1) == nil)
        #expect(OwnerShift(from: 0, to: 0, count: 0) == nil)
        #expect(OwnerShift(from: 4_294_901_760, to: 0, count: 65_536) != nil)
    }

    static func acl(_ entries: [(UInt16, UInt16, UInt32)]) -> [UInt8] {
        var out: [UInt8] = [2, 0, 0, 0]
        for (tag, perm, id) in entries {
            out += [UInt8(tag & 0xff), UInt8(tag >> 8), UInt8(perm & 0xff), UInt8(perm >> 8)]
            out += (0..<4).map { UInt8(truncatingIfNeeded: id >> (8 * $0)) }
        }
        return out
    }

    @Test func aclNamedUsersAndGroupsAreShifted() throws {
        let name = Array("system.posix_acl_access".utf8)
        let before = Self.acl([(1, 6, .max), (2, 4, 1_000_001), (4, 4, .max), (8, 4, 1_000_007), (0x10, 4, .max), (0x20, 4, .max)])
        let after = try #require(shift.xattr(name: name, value: before))
        #expect(after == Self.acl([(1, 6, .max), (2, 4, 1_131_073), (4, 4, .max), (8, 4, 1_131_079), (0x10, 4, .max), (0x20, 4, .max)]))
        // A named user outside the source's block, a bad version or a torn entry: refused.
        #expect(shift.xattr(name: name, value: Self.acl([(2, 4, 5)])) == nil)
        #expect(shift.xattr(name: name, value: [3, 0, 0, 0]) == nil)
        #expect(shift.xattr(name: name, value: Array(before.dropLast())) == nil)
        #expect(shift.xattr(name: Array("system.posix_acl_default".utf8), value: Self.acl([(2, 4, 1_000_000)])) == Self.acl([(2, 4, 1_131_072)]))
    }

    @Test func onlyAVersionThreeCapabilityCarriesAnId() throws {
        let name = Array("security.capability".utf8)
        var v2 = [UInt8](repeating: 0, count: 20)
        v2[0] = 1; v2[3] = 0x02
        #expect(shift.xattr(name: name, value: v2) == v2)
        var v3 = [UInt8](repeating: 0, count: 24)
        v3[0] = 1; v3[3] = 0x03
        v3[20] = 0x40; v3[21] = 0x42; v3[22] = 0x0f    // 1_000_000
        let shifted = try #require(shift.xattr(name: name, value: v3))
        let root = shifted[20...23].enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << (8 * UInt32($1.offset)) }
        #expect(root == 1_131_072)
        #expect(shifted[0..<20] == v3[0..<20])
        v3[22] = 0   // root 0x4240: outside the block
        #expect(shift.xattr(name: name, value: v3) == nil)
        #expect(shift.xattr(name: name, value: Array(v3.prefix(22))) == nil)
        #expect(shift.xattr(name: Array("user.note".utf8), value: [1, 2, 3]) == [1, 2, 3])
    }
}

/// The shift applied to real files: a copy's tree comes out equal but for its owners.
@Suite(.serialized, .enabled(if: TreeScratch.isRoot, "needs root: owners 1000000+, device nodes, trusted.* xattrs"))
struct OwnerShiftTreeTests {
    typealias S = TreeScratch
    static let base = TreeSyncTests.base
    static let copyBase: UInt32 = 1_262_144

    @Test func everyOwnerMovesIntoTheCopysBlockAndRootWhiteoutsStayRoots() throws {
        let area = try S.Area()
        let source = try area.fresh("source")
        try TreeSyncTests.buildFeatureTree(source)
        // A shared root-owned whiteout as overlayfs makes them, and a v3 capability.
        try S.check(mknod(source + "/etc/passwd-", S_IFCHR | 0o000, 0), "mknod whiteout")
        try S.write(source + "/bin/nsping", "ping", mode: 0o755)
        try S.check(chown(source + "/bin/nsping", Self.base, Self.base), "chown")
        var cap = [UInt8](repeating: 0, count: 24)
        cap[0] = 1; cap[3] = 0x03; cap[5] = 0x20   // effective, cap_net_raw
        withUnsafeBytes(of: Self.base.littleEndian) { for i in 0..<4 { cap[20 + i] = $0[i] } }
        try S.setXattr(source + "/bin/nsping", "security.capability", cap)
        // As in an upper directory, everything but root's whiteouts is the container's.
        for (path, e) in try TreeManifest.scan(root: source).entries where e.uid == 0 && e.kind != .characterDevice && !path.isRoot {
            try S.check(lchown(source + "/" + path.description, Self.base, Self.base), "lchown \(path)")
        }
        // chown clears file capabilities: set again.
        try S.setXattr(source + "/bin/nsping", "security.capability", cap)

        let shift = try #require(OwnerShift(from: Int64(Self.base), to: Int64(Self.copyBase), count: 65_536))
        let limits = TreeApplyLimits(devices: .whiteoutsOnly, ownerRange: Self.copyBase...(Self.copyBase + 65_535), ownerShift: shift)
        _ = try S.round(from: source, to: area.root, previous: nil, limits: limits)

        let a = try TreeManifest.scan(root: source), b = try TreeManifest.scan(root: area.root)
        #expect(Set(a.entries.keys) == Set(b.entries.keys))
        for (path, e) in a.entries {
            let copy = try #require(b.entries[path])
            let whiteout = e.kind == .characterDevice && e.uid == 0
            #expect(copy.uid == (whiteout ? 0 : e.uid - Self.base + Self.copyBase), "\(path) uid")
            #expect(copy.gid == (whiteout ? 0 : e.gid - Self.base + Self.copyBase), "\(path) gid")
            #expect(copy.mode == e.mode && copy.kind == e.kind, "\(path) mode")
            if e.kind == .regular {
                #expect(S.sameContents(source + "/" + path.description, area.root + "/" + path.description), "\(path) contents")
            }
        }
        #expect(S.lstatOf(area.root + "/bin/su").map { $0.st_mode & 0o7777 } == 0o4755)
        #expect(S.xattrs(area.root + "/opaque")["trusted.overlay.opaque"] == Array("y".utf8))
        let acl = try #require(S.xattrs(area.root + "/etc/acl")["system.posix_acl_access"])
        #expect(acl == OwnerShiftTests.acl([(1, 6, .max), (2, 4, Self.copyBase + 1), (4, 4, .max), (0x10, 4, .max), (0x20, 4, .max)]))
        let copiedCap = try #require(S.xattrs(area.root + "/bin/nsping")["security.capability"])
        #expect(Array(copiedCap[20...23]) == withUnsafeBytes(of: Self.copyBase.littleEndian) { Array($0) })
        let a1 = try #require(S.lstatOf(area.root + "/bin/a")), b1 = try #require(S.lstatOf(area.root + "/bin/b"))
        #expect(a1.st_ino == b1.st_ino)
        #expect(try #require(S.lstatOf(area.root + "/sparse")).st_blocks * 512 <= 64 * 1024)
    }

    @Test func anOwnerOutsideTheSourceBlockIsRefused() throws {
        let area = try S.Area()
        let source = try area.fresh("source")
        try S.check(chown(source, Self.base, Self.base), "chown root")
        try S.write(source + "/host-owned", "x")
        try S.check(chown(source + "/host-owned", 1000, 1000), "chown")
        let shift = try #require(OwnerShift(from: Int64(Self.base), to: Int64(Self.copyBase), count: 65_536))
        let limits = TreeApplyLimits(devices: .whiteoutsOnly, ownerRange: Self.copyBase...(Self.copyBase + 65_535), ownerShift: shift)
        #expect(throws: TreeSyncError.self) { _ = try S.round(from: source, to: area.root, previous: nil, limits: limits) }
    }
}
