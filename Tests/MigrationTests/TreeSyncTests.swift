import CRuntime
import Glibc
import Testing
@testable import Migration

/// Scan, encode and apply on real files: a tree with every kind of entry an overlay upper
/// holds goes over and comes out equal, rounds send only what changed.
@Suite(.serialized, .enabled(if: TreeScratch.isRoot, "needs root: owners 1000000+, device nodes, trusted.* xattrs"))
struct TreeSyncTests {
    typealias S = TreeScratch
    static let base: UInt32 = 1_000_000

    /// Every feature of an upper directory, under `s`.
    static func buildFeatureTree(_ s: String) throws {
        try S.check(chown(s, base, base), "chown root")
        try S.make(dir: s + "/etc")
        try S.write(s + "/etc/hosts", "127.0.0.1 localhost\n")
        try S.write(s + "/etc/shadow", "root:*:19000::::::\n", mode: 0o640)
        try S.check(chown(s + "/etc/shadow", base, base + 42), "chown shadow")
        // An overlay whiteout: character device 0/0.
        try S.check(mknod(s + "/etc/gone", S_IFCHR | 0o000, 0), "mknod whiteout")
        try S.make(dir: s + "/opaque", mode: 0o750)
        try S.setXattr(s + "/opaque", "trusted.overlay.opaque", Array("y".utf8))
        try S.write(s + "/opaque/inner", "inner")
        try S.write(s + "/notes", "with a user xattr")
        try S.setXattr(s + "/notes", "user.note", Array("hello".utf8))
        try S.make(dir: s + "/bin")
        try S.write(s + "/bin/su", [0x7f, 0x45, 0x4c, 0x46], mode: 0o755)
        try S.check(chown(s + "/bin/su", base, base), "chown su")
        try S.check(chmod(s + "/bin/su", 0o4755), "setuid su")
        try S.write(s + "/bin/ping", "ping", mode: 0o755)
        // Owner first: chown clears security.capability.
        try S.check(chown(s + "/bin/ping", base + 3, base + 3), "chown ping")
        // VFS_CAP_REVISION_2 with the effective flag, permitted cap_net_raw (13).
        var capability = [UInt8](repeating: 0, count: 20)
        capability.withUnsafeMutableBytes {
            store(UInt32(0x0200_0001), $0.baseAddress!, 0)
            store(UInt32(1 << 13), $0.baseAddress!, 4)
        }
        try S.setXattr(s + "/bin/ping", "security.capability", capability)
        // A POSIX ACL (version 2): user::rw-, user:1000001:r--, group::r--, mask::r--, other::r--.
        var acl = [UInt8](repeating: 0, count: 4 + 5 * 8)
        acl.withUnsafeMutableBytes { raw in
            store(UInt32(2), raw.baseAddress!, 0)
            for (i, (tag, perm, id)) in [(UInt16(1), UInt16(6), UInt32.max), (2, 4, base + 1), (4, 4, .max), (0x10, 4, .max), (0x20, 4, .max)].enumerated() {
                store(tag, raw.baseAddress!, 4 + 8 * i)
                store(perm, raw.baseAddress!, 6 + 8 * i)
                store(id, raw.baseAddress!, 8 + 8 * i)
            }
        }
        try S.write(s + "/etc/acl", "with an access ACL")
        try S.setXattr(s + "/etc/acl", "system.posix_acl_access", acl)
        try S.write(s + "/bin/a", "one inode, two names")
        try S.check(link(s + "/bin/a", s + "/bin/b"), "link")
        // 1 GiB holding 4 KiB at 512 MiB.
        let fd = open(s + "/sparse", O_WRONLY | O_CREAT, 0o600)
        let page = [UInt8](repeating: 0xab, count: 4096)
        _ = page.withUnsafeBytes { pwrite(fd, $0.baseAddress!, 4096, 512 << 20) }
        _ = ftruncate(fd, 1 << 30)
        close(fd)
        try S.make(dir: s + "/links")
        try S.check(symlink("nowhere/at/all", s + "/links/dangling"), "symlink")
        try S.check(symlink("/etc/passwd", s + "/links/absolute"), "symlink")
        try S.check(symlink("../../../", s + "/links/up"), "symlink")
        try S.check(lchown(s + "/links/absolute", base + 7, base + 7), "lchown")
        try S.make(dir: s + "/run")
        try S.check(mkfifo(s + "/run/fifo", 0o620), "mkfifo")
        for (i, owned) in ["etc/hosts", "notes", "bin", "run/fifo", "opaque/inner"].enumerated() {
            try S.check(chown(s + "/" + owned, base + UInt32(i), base + UInt32(i)), "chown")
        }
        try S.setTimes(s + "/etc/hosts", mtime: 1_600_000_000, nanoseconds: 123_456_789)
        try S.setTimes(s + "/links/absolute", mtime: 1_500_000_000, nanoseconds: 1)
        try S.setTimes(s + "/etc", mtime: 1_400_000_000, nanoseconds: 987_654_321)
    }

    @Test func aTreeWithEveryFeatureComesOutEqual() throws {
        let area = try S.Area()
        let source = try area.fresh("source")
        try Self.buildFeatureTree(source)
        let round = try S.round(from: source, to: area.root, previous: nil)

        #expect(try S.differences(source, area.root) == [])
        let target = area.root
        // Sparse: the hole is not sent, nor allocated on the target.
        #expect(round.encoded.dataBytes < 64 * 1024)
        let sparse = try #require(S.lstatOf(target + "/sparse"))
        #expect(sparse.st_size == 1 << 30)
        #expect(sparse.st_blocks * 512 <= 64 * 1024)
        // Hard links: one inode on the target.
        let a = try #require(S.lstatOf(target + "/bin/a")), b = try #require(S.lstatOf(target + "/bin/b"))
        #expect(a.st_ino == b.st_ino && a.st_nlink == 2)
        #expect(round.applied.hardlinks == 1)
        let gone = try #require(S.lstatOf(target + "/etc/gone"))
        #expect(gone.st_mode & S_IFMT == S_IFCHR && gone.st_rdev == 0)
        #expect(S.xattrs(target + "/opaque")["trusted.overlay.opaque"] == Array("y".utf8))
        #expect(S.xattrs(target + "/notes")["user.note"] == Array("hello".utf8))
        #expect(S.xattrs(target + "/bin/ping")["security.capability"] != nil)
        #expect(S.xattrs(target + "/etc/acl")["system.posix_acl_access"] != nil)
        let su = try #require(S.lstatOf(target + "/bin/su"))
        #expect(su.st_mode & 0o7777 == 0o4755 && su.st_uid == Self.base)
        #expect(S.link(target + "/links/absolute") == "/etc/passwd")
        #expect(S.link(target + "/links/up") == "../../../")
        #expect(S.lstatOf(target + "/links/absolute")?.st_uid == Self.base + 7)
        #expect(S.lstatOf(target + "/run/fifo").map { $0.st_mode & S_IFMT } == S_IFIFO)
        let hosts = try #require(S.lstatOf(target + "/etc/hosts"))
        #expect(hosts.st_mtim.tv_sec == 1_600_000_000 && hosts.st_mtim.tv_nsec == 123_456_789)
        let etc = try #require(S.lstatOf(target + "/etc"))
        #expect(etc.st_mtim.tv_nsec == 987_654_321)
        #expect(area.outsideListing() == ["outside", "root", "source"])
    }

    @Test func roundsSendOnlyWhatChanged() throws {
        let area = try S.Area()
        let s = try area.fresh("source")
        try S.make(dir: s + "/a")
        for name in ["keep", "change", "chmod", "chown"] { try S.write(s + "/a/" + name, name) }
        try S.make(dir: s + "/d")
        try S.write(s + "/d/x", "x")
        try S.make(dir: s + "/d/y")
        try S.write(s + "/d/y/z", "z")
        try S.write(s + "/k", "a file that becomes a directory")
        try S.make(dir: s + "/e")
        try S.write(s + "/e/child", "a directory that becomes a file")
        try S.write(s + "/h1", "linked later")
        try S.write(s + "/x", "gets an xattr")
        S.settle()
        let first = try S.round(from: s, to: area.root, previous: nil)
        #expect(try S.differences(s, area.root) == [])

        try S.write(s + "/a/change", "changed, and longer")
        try S.check(chmod(s + "/a/chmod", 0o600), "chmod")
        try S.check(chown(s + "/a/chown", Self.base + 5, Self.base + 5), "chown")
        try S.write(s + "/a/new", "new")
        S.removeTree(s + "/d")
        try S.check(unlink(s + "/k"), "unlink")
        try S.make(dir: s + "/k")
        try S.write(s + "/k/inside", "inside")
        try S.check(link(s + "/h1", s + "/h2"), "link")
        S.removeTree(s + "/e")
        try S.write(s + "/e", "now a file")
        try S.setXattr(s + "/x", "user.added", [1, 2, 3])
        S.settle()
        let second = try S.round(from: s, to: area.root, previous: first.manifest)
        #expect(second.delta.removed == ["d", "e", "k"])
        #expect(second.delta.sent == ["", "a", "a/change", "a/chmod", "a/chown", "a/new", "e", "h1", "h2", "k", "k/inside", "x"])
        // change, chmod, chown, new, e, h1, inside, x; h2 is a hard-link record.
        #expect(second.encoded.files == 8)
        #expect(second.applied.removed == 3 && second.applied.hardlinks == 1)
        #expect(try S.differences(s, area.root) == [])
        #expect(second.delta.estimatedBytes < first.delta.estimatedBytes)

        S.settle()
        let third = try S.round(from: s, to: area.root, previous: second.manifest)
        #expect(third.delta.isEmpty)
        #expect(try S.differences(s, area.root) == [])
    }

    /// A running container changes files between the scan and their reading: the round still
    /// applies (a shrunk file padded to the size its header gave, a vanished one skipped) and
    /// the next round brings the target level with the source.
    @Test func aTreeChangingWhileItIsSentIsCaughtUpNextRound() throws {
        let area = try S.Area()
        let s = try area.fresh("source")
        try S.write(s + "/a-big", [UInt8](repeating: 0x11, count: 3 << 20))
        try S.write(s + "/b-small", "gone before it is read")
        try S.make(dir: s + "/c-dir")
        try S.write(s + "/c-dir/inner", "its directory becomes a symlink before it is read")
        S.settle()
        let manifest = try TreeManifest.scan(root: s)
        let delta = TreeDelta.between(previous: nil, current: manifest)
        let applier = try TreeStreamApplier(root: area.root)
        var flushes = 0
        let encoded = try TreeStreamEncoder(root: s, manifest: manifest, delta: delta).encode { chunk in
            flushes += 1
            if flushes == 1 {  // inside a-big's data
                #expect(truncate(s + "/a-big", 1 << 20) == 0)
                S.removeTree(s + "/b-small")
                S.removeTree(s + "/c-dir")
                #expect(symlink(area.outside, s + "/c-dir") == 0)
            }
            try applier.consume(chunk)
        }
        _ = try applier.finish()
        // b-small, and c-dir/inner (its directory is now a symlink, not walked through); c-dir
        // itself went as the symlink it had become, its target copied verbatim.
        #expect(encoded.vanished == 2)
        #expect(S.link(area.root + "/c-dir") == area.outside)
        #expect(S.lstatOf(area.root + "/a-big")?.st_size == 3 << 20)
        #expect(S.names(area.outside) == [])
        S.settle()
        let next = try S.round(from: s, to: area.root, previous: manifest)
        #expect(next.delta.removed == ["b-small", "c-dir"])
        #expect(try S.differences(s, area.root) == [])
    }

    @Test func aMountPointIsNotScanned() throws {
        let area = try S.Area()
        let s = try area.fresh("source")
        try S.make(dir: s + "/mnt")
        try S.write(s + "/file", "f")
        try S.check(mount("tmpfs", s + "/mnt", "tmpfs", 0, "size=1m"), "mount tmpfs")
        defer { umount2(s + "/mnt", 0) }
        try S.write(s + "/mnt/elsewhere", "on another file system")
        let manifest = try TreeManifest.scan(root: s)
        #expect(Set(manifest.entries.keys) == ["", "file"])
    }

    @Test func scanningFiveThousandEntries() throws {
        let area = try S.Area()
        let s = try area.fresh("source")
        for d in 0..<50 {
            try S.make(dir: s + "/d\(d)")
            for f in 0..<99 { try S.write(s + "/d\(d)/f\(f)", "file \(d)/\(f)") }
        }
        var start = timespec(), end = timespec()
        clock_gettime(CLOCK_MONOTONIC, &start)
        let manifest = try TreeManifest.scan(root: s)
        clock_gettime(CLOCK_MONOTONIC, &end)
        #expect(manifest.entries.count == 5001)
        let ms = Double(end.tv_sec - start.tv_sec) * 1000 + Double(end.tv_nsec - start.tv_nsec) / 1e6
        print("TreeManifest.scan: \(manifest.entries.count) entries in \((ms * 10).rounded() / 10) ms")
    }
}
