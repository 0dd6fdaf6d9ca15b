import Glibc

/// Removal of a directory tree that never follows symlinks: every level is
/// opened with O_NOFOLLOW relative to its parent's fd, so a symlink inside
/// the tree is unlinked, never traversed.
enum FileTree {
    /// Removes `name` in `parent` (a file or a whole tree). Absent is not an error.
    static func remove(_ name: [CChar], in parent: Int32, displayPath: String) throws {
        if unlinkat(parent, name, 0) == 0 || errno == ENOENT { return }
        guard errno == EISDIR else {
            throw ImageError.io(operation: "remove", path: displayPath, errno: errno)
        }
        let fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw ImageError.io(operation: "open directory", path: displayPath, errno: errno) }
        guard let dir = fdopendir(fd) else {
            let e = errno
            close(fd)
            throw ImageError.io(operation: "read directory", path: displayPath, errno: e)
        }
        defer { closedir(dir) }
        // Names are collected first: removing while reading a directory may skip entries.
        var children: [[CChar]] = []
        while let entry = readdir(dir) {
            let child: [CChar] = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                Array(raw.bindMemory(to: CChar.self).prefix { $0 != 0 }) + [0]
            }
            if child == [46, 0] || child == [46, 46, 0] { continue }  // "." and ".."
            children.append(child)
        }
        for child in children {
            try remove(child, in: fd, displayPath: displayPath + "/" + String(decoding: child.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        if unlinkat(parent, name, AT_REMOVEDIR) != 0 && errno != ENOENT {
            throw ImageError.io(operation: "remove directory", path: displayPath, errno: errno)
        }
    }

    static func remove(_ name: String, in parent: Int32, displayPath: String) throws {
        try remove(Array(name.utf8CString), in: parent, displayPath: displayPath)
    }
}
