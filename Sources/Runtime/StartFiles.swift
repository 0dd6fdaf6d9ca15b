import CRuntime
import Glibc
import InstanceConfig

extension ContainerRuntime {
    /// Writes `spec.files` (rendered image templates) into the container's root filesystem
    /// before init runs: the root is mounted for the purpose and unmounted again, so only a start
    /// with files pays for it. Every path resolves inside the root (openat2 RESOLVE_IN_ROOT): a
    /// symlink in the image, even `/etc/hostname -> /../../../tmp/x`, stays in the container.
    func writeStartFiles(_ spec: ContainerSpec) async throws(RuntimeError) {
        let p = paths(spec.instance)
        try await mountRootfs(instance: spec.instance)
        do throws(RuntimeError) {
            let root = open(p.rootfs, cr_O_PATH | O_DIRECTORY | O_CLOEXEC)
            if root < 0 { throw RuntimeError.system("open", on: p.rootfs, errno) }
            defer { close(root) }
            // The container's root user owns what is created.
            let owner = spec.idmap?.hostBase ?? 0
            for file in spec.files {
                try Self.writeStartFile(file, root: root, owner: owner, shown: "\(file.path) in \(spec.instance)")
            }
        } catch {
            try? Self.unmountAll(under: p.dir)
            throw error
        }
        try Self.unmountAll(under: p.dir)
    }

    static func writeStartFile(_ file: ContainerSpec.File, root: Int32, owner: UInt32, shown: String) throws(RuntimeError) {
        guard file.path.hasPrefix("/"), !file.path.utf8.contains(0) else {
            throw .invalid("start file \(shown): the path must be absolute")
        }
        var flags = O_WRONLY | O_TRUNC | O_NONBLOCK | O_NOCTTY | O_CLOEXEC
        let existing = cr_openat2_in_root(root, file.path, cr_O_PATH | O_CLOEXEC, 0)
        if existing >= 0 {
            var st = stat()
            let statted = fstat(existing, &st) == 0
            let e = errno
            close(existing)
            if !statted { throw .system("stat", on: shown, e) }
            if (st.st_mode & S_IFMT) == S_IFDIR {
                throw .invalid("image template target \(shown) is a directory; remove it or fix the image's metadata.yaml")
            }
            guard (st.st_mode & S_IFMT) == S_IFREG else {
                throw .invalid("image template target \(shown) exists and is not a regular file")
            }
            if file.createOnly { return }
        } else if errno == ENOENT {
            try makeParents(of: file.path, root: root, owner: owner, shown: shown)
            flags |= O_CREAT
        } else {
            throw .system("open", on: shown, errno)
        }
        // No O_NOFOLLOW: a symlinked target is followed, inside the root.
        let fd = cr_openat2_in_root(root, file.path, flags, 0o644)
        if fd < 0 { throw .system("open for writing", on: shown, errno) }
        defer { close(fd) }
        var st = stat()
        if fstat(fd, &st) != 0 { throw .system("stat", on: shown, errno) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw .invalid("image template target \(shown) is not a regular file") }
        var offset = 0
        while offset < file.content.count {
            let n = file.content.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 { if errno == EINTR { continue }; throw .system("write", on: shown, errno) }
            offset += n
        }
        if flags & O_CREAT != 0 {
            // Owner first: chown clears setuid/setgid bits, so the mode goes last.
            if fchown(fd, owner, owner) != 0 { throw .system("chown", on: shown, errno) }
            if fchmod(fd, 0o644) != 0 { throw .system("chmod", on: shown, errno) }
        }
    }

    /// Creates the missing directories above `path` (0755, owned by the container's root).
    /// Each prefix is looked up from the root, so symlinked directories resolve inside it.
    private static func makeParents(of path: String, root: Int32, owner: UInt32, shown: String) throws(RuntimeError) {
        let parts = path.split(separator: "/").map(String.init).dropLast()
        var prefix = ""
        var parent = dup(root)
        if parent < 0 { throw .system("dup", on: shown, errno) }
        defer { close(parent) }
        for part in parts {
            prefix += "/" + part
            var fd = cr_openat2_in_root(root, prefix, cr_O_PATH | O_DIRECTORY | O_CLOEXEC, 0)
            if fd < 0 && errno == ENOENT {
                if mkdirat(parent, part, 0o755) == 0 {
                    if fchownat(parent, part, owner, owner, AT_SYMLINK_NOFOLLOW) != 0 { throw .system("chown \(prefix) for", on: shown, errno) }
                } else if errno != EEXIST {
                    throw .system("create directory \(prefix) for", on: shown, errno)
                }
                fd = cr_openat2_in_root(root, prefix, cr_O_PATH | O_DIRECTORY | O_CLOEXEC, 0)
            }
            if fd < 0 { throw .system("open directory \(prefix) for", on: shown, errno) }
            close(parent)
            parent = fd
        }
    }
}
