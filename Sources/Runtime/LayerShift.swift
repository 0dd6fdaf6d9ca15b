import Glibc

/// Fallback for kernels without idmapped mounts: a per-container copy of the image layer
/// whose owners are moved into the container's id map (container id u -> host base + u).
/// The shared layer itself is never changed: other containers use it with other maps.
/// Copies regular files, directories, symlinks, device nodes and fifos with modes (setuid
/// bits kept: chown comes first) and timestamps. Not kept: hard links (become copies) and
/// extended attributes (file capabilities).
enum LayerShift {
    static func copyShifted(from source: String, to destination: String, map: IDMap) throws(RuntimeError) {
        let src = open(source, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if src < 0 { throw .system("open layer", on: source, errno) }
        defer { close(src) }
        if mkdir(destination, 0o700) != 0 { throw .system("mkdir", on: destination, errno) }
        let dst = open(destination, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dst < 0 { throw .system("open", on: destination, errno) }
        defer { close(dst) }
        try copyTree(src, dst, path: source, map: map)
        var st = stat()
        if fstat(src, &st) != 0 { throw .system("stat", on: source, errno) }
        try own(dst, nil, st, map: map, path: destination)
    }

    private static func copyTree(_ src: Int32, _ dst: Int32, path: String, map: IDMap) throws(RuntimeError) {
        let listFD = dup(src)
        guard listFD >= 0, let dir = fdopendir(listFD) else { throw .system("opendir", on: path, errno) }
        defer { closedir(dir) }
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name == "." || name == ".." { continue }
            let here = path + "/" + name
            var st = stat()
            if fstatat(src, name, &st, AT_SYMLINK_NOFOLLOW) != 0 { throw .system("stat", on: here, errno) }
            switch st.st_mode & S_IFMT {
            case S_IFDIR:
                if mkdirat(dst, name, 0o700) != 0 { throw .system("mkdir", on: here, errno) }
                let s = openat(src, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                let d = openat(dst, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                defer { if s >= 0 { close(s) }; if d >= 0 { close(d) } }
                if s < 0 || d < 0 { throw .system("open directory", on: here, errno) }
                try copyTree(s, d, path: here, map: map)
                try own(d, nil, st, map: map, path: here)
            case S_IFREG:
                let s = openat(src, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
                let d = openat(dst, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
                defer { if s >= 0 { close(s) }; if d >= 0 { close(d) } }
                if s < 0 || d < 0 { throw .system("open file", on: here, errno) }
                try copyBytes(s, d, path: here)
                try own(d, nil, st, map: map, path: here)
            case S_IFLNK:
                var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
                let n = readlinkat(src, name, &buf, buf.count - 1)
                if n < 0 { throw .system("readlink", on: here, errno) }
                let target = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
                if symlinkat(target, dst, name) != 0 { throw .system("symlink", on: here, errno) }
                try own(dst, name, st, map: map, path: here)
            default:   // devices, fifos, sockets
                if mknodat(dst, name, st.st_mode, st.st_rdev) != 0 { throw .system("mknod", on: here, errno) }
                try own(dst, name, st, map: map, path: here)
            }
        }
    }

    /// Owner (shifted), then mode (chown clears setuid/setgid), then timestamps.
    private static func own(_ fd: Int32, _ name: String?, _ st: stat, map: IDMap, path: String) throws(RuntimeError) {
        guard let uid = map.hostID(st.st_uid), let gid = map.hostID(st.st_gid) else {
            throw .invalid("\(path) is owned by \(st.st_uid):\(st.st_gid), outside the container's id map of \(map.size) ids")
        }
        var times = [st.st_atim, st.st_mtim]
        if let name {
            if fchownat(fd, name, uid, gid, AT_SYMLINK_NOFOLLOW) != 0 { throw .system("chown", on: path, errno) }
            if st.st_mode & S_IFMT != S_IFLNK, fchmodat(fd, name, st.st_mode & 0o7777, 0) != 0 {
                throw .system("chmod", on: path, errno)
            }
            _ = utimensat(fd, name, &times, AT_SYMLINK_NOFOLLOW)
        } else {
            if fchown(fd, uid, gid) != 0 { throw .system("chown", on: path, errno) }
            if fchmod(fd, st.st_mode & 0o7777) != 0 { throw .system("chmod", on: path, errno) }
            _ = futimens(fd, &times)
        }
    }

    private static func copyBytes(_ s: Int32, _ d: Int32, path: String) throws(RuntimeError) {
        var buf = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = read(s, &buf, buf.count)
            if n < 0 { if errno == EINTR { continue }; throw .system("read", on: path, errno) }
            if n == 0 { return }
            var off = 0
            while off < n {
                let w = buf.withUnsafeBytes { write(d, $0.baseAddress! + off, n - off) }
                if w < 0 { if errno == EINTR { continue }; throw .system("write copy of", on: path, errno) }
                off += w
            }
        }
    }
}
