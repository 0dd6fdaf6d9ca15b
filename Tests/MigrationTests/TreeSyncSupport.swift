import CRuntime
import Glibc
import Testing
@testable import Migration

/// Scratch directories and file makers for the tree-sync tests (which need root: owners,
/// device nodes, trusted.* xattrs). Scratch lives under /tmp, a real file system here (ext4),
/// not tmpfs, so sparse files and xattrs behave as on an overlay upper.
enum TreeScratch {
    static let isRoot = getuid() == 0

    /// A new directory holding `root/` (the tree) and `outside/` (must stay empty).
    final class Area {
        let base: String
        var root: String { base + "/root" }
        var outside: String { base + "/outside" }

        init() throws {
            var template = Array("/tmp/treesync-XXXXXX".utf8CString)
            guard let made = mkdtemp(&template) else { throw Failure("mkdtemp: \(errno)") }
            base = String(cString: made)
            try make(dir: root)
            try make(dir: outside)
        }

        deinit { removeTree(base) }

        /// A fresh empty directory beside root.
        func fresh(_ name: String) throws -> String {
            let path = base + "/" + name
            removeTree(path)
            try make(dir: path)
            return path
        }

        /// What lies directly in base and in outside: nothing else may appear.
        func outsideListing() -> [String] {
            (names(base) + names(outside).map { "outside/" + $0 }).sorted()
        }
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    static func check(_ result: Int32, _ what: String) throws {
        if result != 0 { throw Failure("\(what): \(String(cString: strerror(errno)))") }
    }

    static func make(dir path: String, mode: mode_t = 0o755) throws {
        try check(mkdir(path, mode), "mkdir \(path)")
        try check(chmod(path, mode), "chmod \(path)")
    }

    static func write(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o644) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode)
        guard fd >= 0 else { throw Failure("open \(path): \(errno)") }
        defer { close(fd) }
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + done, bytes.count - done) }
            guard n > 0 else { throw Failure("write \(path): \(errno)") }
            done += n
        }
        try check(fchmod(fd, mode), "chmod \(path)")
    }

    static func write(_ path: String, _ text: String, mode: mode_t = 0o644) throws {
        try write(path, Array(text.utf8), mode: mode)
    }

    static func read(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_NOFOLLOW)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress!, $0.count) }
            if n <= 0 { break }
            out += buffer[0..<n]
        }
        return out
    }

    static func setXattr(_ path: String, _ name: String, _ value: [UInt8]) throws {
        let parent = open(String(path[..<path.lastIndex(of: "/")!]), O_RDONLY | O_DIRECTORY)
        defer { close(parent) }
        let leaf = String(path[path.index(after: path.lastIndex(of: "/")!)...])
        let result = value.withUnsafeBytes { cr_xattr_set(parent, leaf, name, $0.baseAddress, $0.count) }
        try check(result, "setxattr \(name) on \(path)")
    }

    /// The xattrs a tree copy carries, of the entry at `path` (not followed).
    static func xattrs(_ path: String) -> [String: [UInt8]] {
        let parent = open(String(path[..<path.lastIndex(of: "/")!]), O_RDONLY | O_DIRECTORY)
        defer { close(parent) }
        let leaf = String(path[path.index(after: path.lastIndex(of: "/")!)...])
        guard let list = try? leaf.withCString({ try SyncedXattrs.read(fd: parent, name: $0, path: path) }) else { return [:] }
        var out: [String: [UInt8]] = [:]
        for (name, value) in list { out[String(decoding: name, as: UTF8.self)] = value }
        return out
    }

    static func link(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: 4097)
        let n = readlink(path, &buffer, 4096)
        guard n >= 0 else { return nil }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func lstatOf(_ path: String) -> stat? {
        var st = stat()
        return lstat(path, &st) == 0 ? st : nil
    }

    static func setTimes(_ path: String, mtime: Int, nanoseconds: Int) throws {
        let t = timespec(tv_sec: mtime, tv_nsec: nanoseconds)
        try check(utimensat(AT_FDCWD, path, [t, t], AT_SYMLINK_NOFOLLOW), "utimensat \(path)")
    }

    static func names(_ path: String) -> [String] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var out: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: &entry.pointee.d_name) { String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self)) }
            if name != "." && name != ".." { out.append(name) }
        }
        return out
    }

    /// Removes a tree whatever bytes its names hold (fuzzed streams make names that are not UTF-8).
    static func removeTree(_ path: String) {
        let parent = open(String(path[..<path.lastIndex(of: "/")!]), O_RDONLY | O_DIRECTORY)
        guard parent >= 0 else { return }
        defer { close(parent) }
        removeEntry(parent, Array(String(path[path.index(after: path.lastIndex(of: "/")!)...]).utf8CString))
    }

    private static func removeEntry(_ parent: Int32, _ name: [CChar]) {
        var st = stat()
        guard fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else { return }
        guard st.st_mode & S_IFMT == S_IFDIR else {
            unlinkat(parent, name, 0)
            return
        }
        let fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var children: [[CChar]] = []
        if let dir = fdopendir(dup(fd)) {
            while let entry = readdir(dir) {
                let child = withUnsafePointer(to: &entry.pointee.d_name) { tuple in
                    tuple.withMemoryRebound(to: CChar.self, capacity: 256) { Array(UnsafeBufferPointer(start: $0, count: strlen($0) + 1)) }
                }
                if child != [46, 0] && child != [46, 46, 0] { children.append(child) }
            }
            closedir(dir)
        }
        for child in children { removeEntry(fd, child) }
        unlinkat(parent, name, AT_REMOVEDIR)
    }

    /// The data extents of a file (SEEK_DATA/SEEK_HOLE) and the bytes in them: equal for a
    /// sparse file and its copy, without reading the holes.
    static func dataExtents(_ path: String) -> [(offset: Int, bytes: [UInt8])]? {
        let fd = open(path, O_RDONLY | O_NOFOLLOW)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        fstat(fd, &st)
        var out: [(offset: Int, bytes: [UInt8])] = []
        var offset = 0
        while offset < st.st_size {
            let data = lseek(fd, off_t(offset), 3)
            if data < 0 { break }
            let hole = min(Int(lseek(fd, data, 4)), st.st_size)
            var bytes = [UInt8](repeating: 0, count: hole - Int(data))
            _ = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, $0.count, data) }
            out.append((Int(data), bytes))
            offset = hole
        }
        return out
    }

    static func sameContents(_ a: String, _ b: String) -> Bool {
        guard let x = dataExtents(a), let y = dataExtents(b) else { return false }
        return x.map(\.offset) == y.map(\.offset) && x.map(\.bytes) == y.map(\.bytes)
    }

    /// A manifest reduced to what must be equal between a source and its copy: no inode,
    /// ctime or allocation, and no size for directories (it depends on their history).
    static func comparable(_ manifest: TreeManifest) -> [TreePath: TreeManifest.Entry] {
        manifest.entries.mapValues { entry in
            var entry = entry
            entry.inode = 0
            entry.ctimeNanoseconds = 0
            entry.allocatedBytes = 0
            if entry.kind == .directory { entry.size = 0 }
            return entry
        }
    }

    /// Differences between two trees: metadata, contents, link targets and xattrs.
    static func differences(_ source: String, _ target: String) throws -> [String] {
        let a = try TreeManifest.scan(root: source), b = try TreeManifest.scan(root: target)
        let ca = comparable(a), cb = comparable(b)
        var out: [String] = []
        for path in Set(ca.keys).union(cb.keys).sorted() {
            guard let x = ca[path], let y = cb[path] else {
                out.append("\(path): only in \(ca[path] == nil ? "target" : "source")")
                continue
            }
            if x != y { out.append("\(path): \(x) vs \(y)") }
            let pa = path.isRoot ? source : source + "/" + path.description
            let pb = path.isRoot ? target : target + "/" + path.description
            if x.kind == .regular, !sameContents(pa, pb) { out.append("\(path): contents differ") }
            if x.kind == .symlink, link(pa) != link(pb) { out.append("\(path): link targets differ") }
            if !path.isRoot, xattrs(pa) != xattrs(pb) { out.append("\(path): xattrs \(xattrs(pa).keys.sorted()) vs \(xattrs(pb).keys.sorted())") }
        }
        return out
    }

    struct Round {
        var manifest: TreeManifest
        var delta: TreeDelta
        var encoded: TreeEncodeReport
        var applied: TreeApplyReport
        var stream: [UInt8]
    }

    /// One round from `source` to `target`: scan, delta against `previous`, encode, apply in
    /// chunks whose sizes come from `chunks` (cycled), so records straddle chunk boundaries.
    static func round(
        from source: String, to target: String, previous: TreeManifest?,
        chunks: [Int] = [1, 7, 64, 65, 4096, 100_000], limits: TreeApplyLimits = TreeApplyLimits(devices: .whiteoutsOnly)
    ) throws -> Round {
        let manifest = try TreeManifest.scan(root: source)
        let delta = TreeDelta.between(previous: previous, current: manifest)
        var stream: [UInt8] = []
        let encoded = try TreeStreamEncoder(root: source, manifest: manifest, delta: delta).encode { chunk in
            #expect(chunk.count <= TreeStreamEncoder.chunkSize)
            stream.append(contentsOf: chunk)
        }
        let applier = try TreeStreamApplier(root: target, limits: limits)
        var at = 0, i = 0
        while at < stream.count {
            let n = min(chunks[i % chunks.count], stream.count - at)
            try stream[at..<(at + n)].withUnsafeBytes { try applier.consume($0) }
            at += n
            i += 1
        }
        let applied = try applier.finish()
        return Round(manifest: manifest, delta: delta, encoded: encoded, applied: applied, stream: stream)
    }

    /// Waits out the racy window, so entries made just before are not sent again next round.
    static func settle() {
        usleep(UInt32(TreeDelta.racyWindowNanoseconds / 1000) + 50_000)
    }
}

/// A seeded generator (SplitMix64), so a failing fuzz case can be replayed.
struct SeededRandom: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
