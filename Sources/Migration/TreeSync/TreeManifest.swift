import CRuntime
import Glibc

/// A path relative to a tree's root, as the file system's bytes (Linux names need not be
/// UTF-8). The root itself is the empty path. Paths order bytewise, so a directory sorts
/// before everything below it.
public struct TreePath: Hashable, Comparable, Sendable, CustomStringConvertible, ExpressibleByStringLiteral {
    public var bytes: [UInt8]

    public static let root = TreePath(bytes: [])

    public init(bytes: [UInt8]) { self.bytes = bytes }
    public init(_ string: String) { self.bytes = Array(string.utf8) }
    public init(stringLiteral value: String) { self.init(value) }

    public var description: String { String(decoding: bytes, as: UTF8.self) }
    public var isRoot: Bool { bytes.isEmpty }

    /// The components, without separators (none for the root).
    public var components: [ArraySlice<UInt8>] {
        bytes.isEmpty ? [] : bytes.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false)
    }

    /// The directory holding this path (the root for a top-level name), nil for the root.
    public var parent: TreePath? {
        if bytes.isEmpty { return nil }
        guard let slash = bytes.lastIndex(of: UInt8(ascii: "/")) else { return .root }
        return TreePath(bytes: Array(bytes[..<slash]))
    }

    public func appending(_ name: some Collection<UInt8>) -> TreePath {
        var next = bytes
        if !next.isEmpty { next.append(UInt8(ascii: "/")) }
        next.append(contentsOf: name)
        return TreePath(bytes: next)
    }

    /// Whether `other` lies strictly below this path.
    public func isAncestor(of other: TreePath) -> Bool {
        if bytes.isEmpty { return !other.bytes.isEmpty }
        return other.bytes.count > bytes.count && other.bytes.starts(with: bytes)
            && other.bytes[bytes.count] == UInt8(ascii: "/")
    }

    public static func < (lhs: TreePath, rhs: TreePath) -> Bool {
        lhs.bytes.lexicographicallyPrecedes(rhs.bytes)
    }
}

/// What an entry is, from the file type bits of its mode.
public enum TreeEntryKind: UInt8, Sendable, CaseIterable {
    case regular = 1, directory, symlink, characterDevice, blockDevice, fifo, socket

    init?(mode: mode_t) {
        switch mode & S_IFMT {
        case S_IFREG: self = .regular
        case S_IFDIR: self = .directory
        case S_IFLNK: self = .symlink
        case S_IFCHR: self = .characterDevice
        case S_IFBLK: self = .blockDevice
        case S_IFIFO: self = .fifo
        case S_IFSOCK: self = .socket
        default: return nil
        }
    }

    var fileTypeBits: mode_t {
        switch self {
        case .regular: S_IFREG
        case .directory: S_IFDIR
        case .symlink: S_IFLNK
        case .characterDevice: S_IFCHR
        case .blockDevice: S_IFBLK
        case .fifo: S_IFIFO
        case .socket: S_IFSOCK
        }
    }
}

/// The metadata of every entry under a directory, as lstat saw it during one scan: what
/// `TreeDelta` compares between rounds of a copy.
public struct TreeManifest: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var kind: TreeEntryKind
        /// Permission bits, setuid/setgid/sticky included (no file type bits).
        public var mode: UInt32
        public var uid: UInt32
        public var gid: UInt32
        public var size: UInt64
        /// st_blocks * 512: what a sparse file really holds, for byte estimates.
        public var allocatedBytes: UInt64
        public var mtimeNanoseconds: Int64
        public var ctimeNanoseconds: Int64
        public var inode: UInt64
        public var linkCount: UInt64
        /// Device number of a character or block device, else 0.
        public var rdev: UInt64

        public init(
            kind: TreeEntryKind, mode: UInt32 = 0o644, uid: UInt32 = 0, gid: UInt32 = 0, size: UInt64 = 0,
            allocatedBytes: UInt64? = nil, mtimeNanoseconds: Int64 = 0, ctimeNanoseconds: Int64 = 0,
            inode: UInt64 = 0, linkCount: UInt64 = 1, rdev: UInt64 = 0
        ) {
            self.kind = kind
            self.mode = mode
            self.uid = uid
            self.gid = gid
            self.size = size
            self.allocatedBytes = allocatedBytes ?? size
            self.mtimeNanoseconds = mtimeNanoseconds
            self.ctimeNanoseconds = ctimeNanoseconds
            self.inode = inode
            self.linkCount = linkCount
            self.rdev = rdev
        }

        init(_ st: stat) {
            self.init(
                kind: TreeEntryKind(mode: st.st_mode) ?? .regular,
                mode: UInt32(st.st_mode & 0o7777), uid: st.st_uid, gid: st.st_gid,
                size: UInt64(max(0, st.st_size)), allocatedBytes: UInt64(max(0, st.st_blocks)) * 512,
                mtimeNanoseconds: Int64(st.st_mtim.tv_sec) &* 1_000_000_000 &+ Int64(st.st_mtim.tv_nsec),
                ctimeNanoseconds: Int64(st.st_ctim.tv_sec) &* 1_000_000_000 &+ Int64(st.st_ctim.tv_nsec),
                inode: UInt64(st.st_ino), linkCount: UInt64(st.st_nlink), rdev: UInt64(st.st_rdev)
            )
        }
    }

    /// Entry per path; the root directory itself is `TreePath.root`.
    public var entries: [TreePath: Entry]
    /// Wall clock (ns) when the scan began. A file changed in the same clock tick as its scan
    /// can keep the ctime the scan saw (file times come from a coarse clock), so `TreeDelta`
    /// sends again anything whose ctime was that close to the scan. A manifest built by hand
    /// with 0 here has every entry count as racy (so, sent again).
    public var scanStartedNanoseconds: Int64

    public init(entries: [TreePath: Entry] = [:], scanStartedNanoseconds: Int64 = 0) {
        self.entries = entries
        self.scanStartedNanoseconds = scanStartedNanoseconds
    }

    public subscript(path: TreePath) -> Entry? { entries[path] }

    /// Reads the metadata of every entry under `root` (the root included), with lstat only:
    /// symlinks are never followed, and a directory on another file system than the root's
    /// (a mount point) is left out with everything below it. An entry that vanishes during
    /// the scan is left out (a running container changes its tree while it is scanned).
    public static func scan(root: String) throws(TreeSyncError) -> TreeManifest {
        var started = timespec()
        clock_gettime(CLOCK_REALTIME, &started)
        let rootFD = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard rootFD >= 0 else { throw .io(operation: "open", path: root, errno: errno) }
        var rootStat = stat()
        guard fstat(rootFD, &rootStat) == 0 else {
            let e = errno
            close(rootFD)
            throw .io(operation: "stat", path: root, errno: e)
        }
        var manifest = TreeManifest(scanStartedNanoseconds: Int64(started.tv_sec) * 1_000_000_000 + Int64(started.tv_nsec))
        manifest.entries.reserveCapacity(4096)
        manifest.entries[.root] = Entry(rootStat)
        // Depth first with an explicit stack of open directories: the fds held are one per
        // level of the current path, however wide a directory is.
        var stack: [(fd: Int32, path: TreePath, names: [[UInt8]], next: Int)] = []
        defer { for frame in stack { close(frame.fd) } }
        do {
            stack.append((rootFD, .root, try directoryNames(rootFD, path: root, relative: .root), 0))
        } catch {
            close(rootFD)
            throw error
        }
        while !stack.isEmpty {
            let top = stack.count - 1
            guard stack[top].next < stack[top].names.count else {
                close(stack.removeLast().fd)
                continue
            }
            let fd = stack[top].fd
            let name = stack[top].names[stack[top].next]
            stack[top].next += 1
            var st = stat()
            let found = name.withUnsafeBufferPointer { buffer in
                buffer.withMemoryRebound(to: CChar.self) { fstatat(fd, $0.baseAddress!, &st, AT_SYMLINK_NOFOLLOW) }
            }
            if found != 0 { continue }  // vanished since the listing
            let child = stack[top].path.appending(name.dropLast())
            if st.st_mode & S_IFMT == S_IFDIR {
                if st.st_dev != rootStat.st_dev { continue }  // a mount point: not ours to copy
                let childFD = name.withUnsafeBufferPointer { buffer in
                    buffer.withMemoryRebound(to: CChar.self) {
                        openat(fd, $0.baseAddress!, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                    }
                }
                if childFD < 0 {
                    if errno == EMFILE || errno == ENFILE { throw .io(operation: "open", path: joined(root, child), errno: errno) }
                    continue  // replaced or removed since its stat
                }
                manifest.entries[child] = Entry(st)
                let names: [[UInt8]]
                do { names = try directoryNames(childFD, path: root, relative: child) } catch {
                    close(childFD)
                    throw error
                }
                stack.append((childFD, child, names, 0))
            } else {
                manifest.entries[child] = Entry(st)
            }
        }
        return manifest
    }

    /// The names in the directory `fd`, each NUL-terminated, "." and ".." left out.
    private static func directoryNames(_ fd: Int32, path root: String, relative: TreePath) throws(TreeSyncError) -> [[UInt8]] {
        let dup = dup(fd)
        guard dup >= 0, let dir = fdopendir(dup) else {
            let e = errno
            throw .io(operation: "list", path: joined(root, relative), errno: e)
        }
        defer { closedir(dir) }
        var names: [[UInt8]] = []
        while let entry = readdir(dir) {
            let name: [UInt8] = withUnsafePointer(to: &entry.pointee.d_name) { tuple in
                tuple.withMemoryRebound(to: UInt8.self, capacity: 256) { bytes in
                    let length = strlen(UnsafeRawPointer(bytes).assumingMemoryBound(to: CChar.self))
                    return Array(UnsafeBufferPointer(start: bytes, count: length + 1))
                }
            }
            if name == [UInt8(ascii: "."), 0] || name == [UInt8(ascii: "."), UInt8(ascii: "."), 0] { continue }
            names.append(name)
        }
        return names
    }
}

func joined(_ root: String, _ path: TreePath) -> String {
    path.isRoot ? root : root + "/" + path.description
}
