import Glibc
import Logging

/// Creates archive entries inside one directory without ever following a
/// symlink: every path is walked component by component with
/// `openat(O_NOFOLLOW | O_DIRECTORY)` from the directory's fd, and leaves are
/// created relative to their parent's fd with O_EXCL / *at calls. A symlink
/// stored by an earlier entry therefore stays a symlink and a later entry
/// below it is refused, instead of being written wherever the link points.
///
/// Effects only; where entries may go is decided by `ImagePlace`.
final class LayerWriter {
    private let rootFD: Int32
    private let rootPath: String
    private let logger: Logger
    /// The parent directory of the last entry: archives list siblings together.
    private var cachedParent: (components: ArraySlice<String>, fd: Int32)?
    /// Directory mtimes are set at the end, since creating children changes them.
    private var directoryTimes: [(components: [String], mtime: timespec)] = []
    private(set) var skippedDevices: [String] = []

    /// - Parameters:
    ///   - rootFD: the directory to fill; borrowed, not closed.
    ///   - rootPath: its path, for messages only.
    init(rootFD: Int32, rootPath: String, logger: Logger) {
        self.rootFD = rootFD
        self.rootPath = rootPath
        self.logger = logger
    }

    deinit {
        if let cachedParent { close(cachedParent.fd) }
    }

    /// Creates `entry` at `components` (relative to the root), taking regular
    /// file content from `content`, which streams it chunk by chunk.
    func write(
        _ entry: TarEntry, at components: [String],
        content: ((UnsafeRawBufferPointer) throws -> Void) throws -> Void
    ) throws {
        guard let name = components.last else { return }
        let path = components.joined(separator: "/")
        let parent = try parentFD(of: components[..<(components.count - 1)], path: path)
        let time = timespec(tv_sec: Int(entry.mtime), tv_nsec: Int(entry.mtimeNanoseconds))

        switch entry.kind {
        case .directory:
            try makeDirectory(parent, name, path: path)
            let fd = try openDirectory(parent, name, path: path, forEntry: path)
            defer { close(fd) }
            try check(fchown(fd, uid_t(entry.uid), gid_t(entry.gid)), "chown", path)
            // chmod after chown: chown clears setuid/setgid.
            try check(fchmod(fd, mode_t(entry.mode)), "chmod", path)
            directoryTimes.append((components, time))

        case .regular:
            let fd = try createFile(parent, name, path: path)
            defer { close(fd) }
            try content { chunk in try writeAll(fd, chunk, path: path) }
            try check(fchown(fd, uid_t(entry.uid), gid_t(entry.gid)), "chown", path)
            try check(fchmod(fd, mode_t(entry.mode)), "chmod", path)
            try check(futimens(fd, [time, time]), "set times of", path)

        case .symlink:
            try replacing(parent, name, path: path) { symlinkat(entry.linkTarget, parent, name) }
            try check(fchownat(parent, name, uid_t(entry.uid), gid_t(entry.gid), AT_SYMLINK_NOFOLLOW), "chown", path)
            try check(utimensat(parent, name, [time, time], AT_SYMLINK_NOFOLLOW), "set times of", path)

        case .hardlink:
            let target = try ImagePlace.of(path: entry.linkTarget).components
            guard let targetName = target.last else {
                throw ImageError.invalidImage("hard link \(entry.path) has no target")
            }
            let targetParent = try openPath(target[..<(target.count - 1)], create: false, forEntry: path)
            defer { close(targetParent) }
            // Flags 0: a link to a symlink links the symlink itself, never its target.
            try replacing(parent, name, path: path) { linkat(targetParent, targetName, parent, name, 0) }

        case .fifo:
            try replacing(parent, name, path: path) { mknodat(parent, name, S_IFIFO | 0o600, 0) }
            try check(fchownat(parent, name, uid_t(entry.uid), gid_t(entry.gid), AT_SYMLINK_NOFOLLOW), "chown", path)
            try check(fchmodat(parent, name, mode_t(entry.mode), 0), "chmod", path)
            try check(utimensat(parent, name, [time, time], AT_SYMLINK_NOFOLLOW), "set times of", path)

        case .characterDevice, .blockDevice:
            // Containers get their /dev from the runtime. A device node in a
            // layer mounted by host root would reach host devices, so none is made.
            skippedDevices.append(path)
            logger.notice("skipping device node in image", metadata: [
                "path": "\(path)", "device": "\(entry.deviceMajor):\(entry.deviceMinor)",
            ])
        }
    }

    /// Applies the deferred directory mtimes.
    func finish() throws {
        for (components, time) in directoryTimes {
            let parent = try openPath(components.dropLast(), create: false, forEntry: components.joined(separator: "/"))
            defer { close(parent) }
            try check(utimensat(parent, components.last!, [time, time], AT_SYMLINK_NOFOLLOW), "set times of", components.joined(separator: "/"))
        }
        directoryTimes = []
    }

    // MARK: - Walking without following symlinks

    private func parentFD(of components: ArraySlice<String>, path: String) throws -> Int32 {
        if components.isEmpty { return rootFD }
        if let cachedParent, cachedParent.components == components { return cachedParent.fd }
        let fd = try openPath(components, create: true, forEntry: path)
        if let cachedParent { close(cachedParent.fd) }
        cachedParent = (components, fd)
        return fd
    }

    /// Opens the directory at `components` below the root (an owned fd),
    /// creating missing directories (0755, root-owned) when `create` is set.
    private func openPath(_ components: ArraySlice<String>, create: Bool, forEntry entry: String) throws -> Int32 {
        var fd = dup(rootFD)
        guard fd >= 0 else { throw ImageError.io(operation: "dup", path: rootPath, errno: errno) }
        var walked: [String] = []
        for component in components {
            walked.append(component)
            let walkedPath = walked.joined(separator: "/")
            if create {
                if mkdirat(fd, component, 0o755) != 0 && errno != EEXIST {
                    let e = errno
                    close(fd)
                    throw ImageError.io(operation: "create directory", path: "\(rootPath)/\(walkedPath)", errno: e)
                }
            }
            let next: Int32
            do {
                next = try openDirectory(fd, component, path: walkedPath, forEntry: entry)
            } catch {
                close(fd)
                throw error
            }
            close(fd)
            fd = next
        }
        return fd
    }

    private func openDirectory(_ parent: Int32, _ name: String, path: String, forEntry entry: String) throws -> Int32 {
        let fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        if fd >= 0 { return fd }
        let e = errno
        var st = stat()
        if (e == ELOOP || e == ENOTDIR), fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) == 0 {
            if st.st_mode & S_IFMT == S_IFLNK {
                throw ImageError.invalidImage("image entry \(entry) would be written through the symlink \(path); refusing (symlinks in an image are never followed while unpacking)")
            }
            throw ImageError.invalidImage("image entry \(entry) needs \(path) to be a directory, but the image made it a file")
        }
        if e == ENOENT {
            throw ImageError.invalidImage("image entry \(entry) refers to \(path), which does not come before it in the image")
        }
        throw ImageError.io(operation: "open directory", path: "\(rootPath)/\(path)", errno: e)
    }

    // MARK: - Leaves

    private func makeDirectory(_ parent: Int32, _ name: String, path: String) throws {
        if mkdirat(parent, name, 0o700) == 0 { return }
        guard errno == EEXIST else { throw ImageError.io(operation: "create directory", path: "\(rootPath)/\(path)", errno: errno) }
        var st = stat()
        try check(fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW), "stat", path)
        if st.st_mode & S_IFMT == S_IFDIR { return }
        // A later entry replaces an earlier non-directory, as tar does.
        try check(unlinkat(parent, name, 0), "remove", path)
        try check(mkdirat(parent, name, 0o700), "create directory", path)
    }

    private func createFile(_ parent: Int32, _ name: String, path: String) throws -> Int32 {
        var fd: Int32 = -1
        // O_EXCL|O_NOFOLLOW: never open an existing name, so neither a symlink
        // nor a hard link left by an earlier entry is written through.
        try replacing(parent, name, path: path) {
            fd = openat(parent, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
            return fd >= 0 ? 0 : -1
        }
        return fd
    }

    /// Runs `create`; if the name exists (and is not a directory), removes it and retries once.
    private func replacing(_ parent: Int32, _ name: String, path: String, _ create: () -> Int32) throws {
        if create() == 0 { return }
        guard errno == EEXIST else { throw createError(errno, path) }
        var st = stat()
        try check(fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW), "stat", path)
        if st.st_mode & S_IFMT == S_IFDIR {
            throw ImageError.invalidImage("image entry \(path) would replace a directory with a non-directory")
        }
        try check(unlinkat(parent, name, 0), "remove", path)
        if create() != 0 { throw createError(errno, path) }
    }

    private func createError(_ code: Int32, _ path: String) -> ImageError {
        switch code {
        case ENOENT:
            return .invalidImage("image entry \(path) links to something that does not come before it in the image")
        case EPERM:
            return .invalidImage("image entry \(path) is a hard link to a directory")
        default:
            return .io(operation: "create", path: "\(rootPath)/\(path)", errno: code)
        }
    }

    private func writeAll(_ fd: Int32, _ chunk: UnsafeRawBufferPointer, path: String) throws {
        var offset = 0
        while offset < chunk.count {
            let n = Glibc.write(fd, chunk.baseAddress! + offset, chunk.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                throw ImageError.io(operation: "write", path: "\(rootPath)/\(path)", errno: errno)
            }
            offset += n
        }
    }

    private func check(_ rc: Int32, _ operation: String, _ path: String) throws {
        if rc != 0 { throw ImageError.io(operation: operation, path: "\(rootPath)/\(path)", errno: errno) }
    }
}
