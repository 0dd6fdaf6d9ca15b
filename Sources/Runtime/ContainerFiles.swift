import CRuntime
import Glibc
import InstanceConfig

/// A file (or directory) inside a container, with ownership as the container sees it.
public struct ContainerFile: Sendable, Equatable {
    public var content: [UInt8]
    /// Permission bits (07777).
    public var mode: UInt32
    public var uid: UInt32
    public var gid: UInt32
    /// Entry names when the path is a directory (bytes are empty then).
    public var entries: [String]?

    public init(content: [UInt8], mode: UInt32, uid: UInt32, gid: UInt32, entries: [String]? = nil) {
        self.content = content
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.entries = entries
    }
}

extension ContainerRuntime {
    /// The largest file `readFile` reads by default: it is held in memory whole.
    public static let maxReadBytes = 256 << 20

    /// Reads a file in the container. Paths resolve inside the container root
    /// (openat2 RESOLVE_IN_ROOT): container symlinks never lead to host files.
    /// A file larger than `maxBytes` is refused rather than read into memory; a FIFO, socket or
    /// device is refused without blocking on it (the container's user may have put one there).
    public func readFile(instance name: InstanceRef, path: String, maxBytes: Int = ContainerRuntime.maxReadBytes) async throws(RuntimeError) -> ContainerFile {
        try await withRoot(name) { (root, idmap) throws(RuntimeError) in
            let fd = cr_openat2_in_root(root, path, O_RDONLY | O_NONBLOCK | O_NOCTTY, 0)
            if fd < 0 { throw .system("open", on: "\(path) in \(name)", errno) }
            defer { close(fd) }
            var st = stat()
            if fstat(fd, &st) != 0 { throw .system("stat", on: "\(path) in \(name)", errno) }
            let uid = idmap?.containerID(st.st_uid) ?? st.st_uid
            let gid = idmap?.containerID(st.st_gid) ?? st.st_gid
            let mode = UInt32(st.st_mode) & 0o7777
            if (st.st_mode & S_IFMT) == S_IFDIR {
                return ContainerFile(content: [], mode: mode, uid: uid, gid: gid, entries: try listDirectory(fd, path))
            }
            guard (st.st_mode & S_IFMT) == S_IFREG else {
                throw .invalid("\(path) in \(name) is not a regular file or directory")
            }
            guard st.st_size <= maxBytes else {
                throw .invalid("\(path) in \(name) is \(st.st_size) bytes, more than the \(maxBytes) a file pull carries: copy it out another way (exec with tar)")
            }
            var out: [UInt8] = []
            var buf = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = read(fd, &buf, buf.count)
                if n < 0 { if errno == EINTR { continue }; throw .system("read", on: "\(path) in \(name)", errno) }
                if n == 0 { break }
                // The file may grow while it is read.
                if out.count + n > maxBytes { throw .invalid("\(path) in \(name) grew past \(maxBytes) bytes while it was read") }
                out += buf[0..<n]
            }
            return ContainerFile(content: out, mode: mode, uid: uid, gid: gid, entries: nil)
        }
    }

    /// Creates or replaces a regular file in the container with the given mode and owner
    /// (container ids). The parent directory must exist.
    public func writeFile(instance name: InstanceRef, path: String, content bytes: [UInt8], mode: UInt32 = 0o644,
                          uid: UInt32 = 0, gid: UInt32 = 0) async throws(RuntimeError) {
        try await withRoot(name) { (root, idmap) throws(RuntimeError) in
            let hostUID = idmap.map { $0.hostID(uid) } ?? uid
            let hostGID = idmap.map { $0.hostID(gid) } ?? gid
            guard let hostUID, let hostGID else {
                throw .invalid("owner \(uid):\(gid) is outside the id map of \(name)")
            }
            // O_NONBLOCK: a FIFO the container's user put there must not hold the agent.
            let fd = cr_openat2_in_root(root, path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY, mode & 0o7777)
            if fd < 0 {
                if errno == ENXIO { throw .invalid("\(path) in \(name) is a FIFO, not a regular file") }
                throw .system("open for writing", on: "\(path) in \(name)", errno)
            }
            defer { close(fd) }
            var st = stat()
            if fstat(fd, &st) != 0 { throw .system("stat", on: "\(path) in \(name)", errno) }
            guard (st.st_mode & S_IFMT) == S_IFREG else { throw .invalid("\(path) in \(name) exists and is not a regular file") }
            var off = 0
            while off < bytes.count {
                let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + off, $0.count - off) }
                if n < 0 { if errno == EINTR { continue }; throw .system("write", on: "\(path) in \(name)", errno) }
                off += n
            }
            // Owner first: chown clears setuid/setgid bits, so the mode goes last.
            if fchown(fd, hostUID, hostGID) != 0 { throw .system("chown", on: "\(path) in \(name)", errno) }
            if fchmod(fd, mode_t(mode & 0o7777)) != 0 { throw .system("chmod", on: "\(path) in \(name)", errno) }
        }
    }
}

private func listDirectory(_ fd: Int32, _ path: String) throws(RuntimeError) -> [String] {
    let dupFD = dup(fd)
    guard dupFD >= 0, let dir = fdopendir(dupFD) else { throw .system("opendir", on: path, errno) }
    defer { closedir(dir) }
    var names: [String] = []
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if name != "." && name != ".." { names.append(name) }
    }
    return names.sorted()
}
