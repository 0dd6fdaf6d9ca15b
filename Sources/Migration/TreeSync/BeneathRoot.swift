import CRuntime
import Glibc

// O_NOATIME is hidden from Swift's Glibc (they need _GNU_SOURCE); Linux values.
let openNoAccessTime: Int32 = 0o1000000
// SEEK_DATA/SEEK_HOLE are hidden the same way.
let seekData: Int32 = 3
let seekHole: Int32 = 4

/// Opens directories below a root directory fd one component at a time, each with
/// O_NOFOLLOW|O_DIRECTORY: a symlink anywhere on the way fails the walk (ELOOP/ENOTDIR)
/// instead of leading out of the root. Keeps the last directory open, since entries of one
/// directory come together in sorted streams.
final class DirectoryWalker {
    let rootFD: Int32
    let rootPath: String
    private var cached: (path: TreePath, fd: Int32)?

    /// `rootFD` is borrowed, not closed.
    init(rootFD: Int32, rootPath: String) {
        self.rootFD = rootFD
        self.rootPath = rootPath
    }

    deinit { if let cached { close(cached.fd) } }

    /// The fd of the directory `path` below the root, valid until the next call or
    /// `forget`. Throws the errno of the component that failed.
    func directory(_ path: TreePath) throws(TreeSyncError) -> Int32 {
        if path.isRoot { return rootFD }
        if let cached, cached.path == path { return cached.fd }
        var start = rootFD
        var done = TreePath.root
        if let cached, cached.path.isAncestor(of: path) {
            start = cached.fd
            done = cached.path
        }
        let components = path.components
        var fd = start
        var walked = done
        for component in components.dropFirst(done.components.count) {
            walked = walked.appending(component)
            let next = component.withUnsafeBufferPointer { bytes in
                withCString(bytes) { openat(fd, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
            }
            let e = errno
            if fd != start { close(fd) }
            guard next >= 0 else { throw .io(operation: "open directory", path: joined(rootPath, walked), errno: e) }
            fd = next
        }
        if let cached { close(cached.fd) }
        cached = (path, fd)
        return fd
    }

    /// Closes the cached directory if it is `path` or below it (about to be removed or replaced).
    func forget(_ path: TreePath) {
        if let cached, cached.path == path || path.isAncestor(of: cached.path) {
            close(cached.fd)
            self.cached = nil
        }
    }
}

/// Calls `body` with `bytes` as a NUL-terminated C string.
@inline(__always)
func withCString<R>(_ bytes: UnsafeBufferPointer<UInt8>, _ body: (UnsafePointer<CChar>) -> R) -> R {
    withUnsafeTemporaryAllocation(of: CChar.self, capacity: bytes.count + 1) { buffer in
        let raw = UnsafeMutableRawBufferPointer(buffer)
        raw.copyMemory(from: UnsafeRawBufferPointer(bytes))
        raw[bytes.count] = 0
        return body(buffer.baseAddress!)
    }
}

@inline(__always)
func withCString<R>(_ bytes: some Collection<UInt8>, _ body: (UnsafePointer<CChar>) -> R) -> R {
    let array = Array(bytes)
    return array.withUnsafeBufferPointer { withCString($0, body) }
}

/// Extended attributes a tree copy carries: those root may read and write on an overlay's
/// upper directory. `system.*` is kernel-computed except the POSIX ACLs.
enum SyncedXattrs {
    static func carries(_ name: UnsafeRawBufferPointer) -> Bool {
        for prefix in ["trusted.", "user.", "security."] where name.starts(with: prefix.utf8) {
            return name.count > prefix.utf8.count
        }
        return name.elementsEqual("system.posix_acl_access".utf8) || name.elementsEqual("system.posix_acl_default".utf8)
    }

    /// The carried attributes of an entry: of `fd` itself when `name` is nil, else of the
    /// entry `name` in the directory `fd`, never through a symlink. File systems without
    /// xattrs give none.
    static func read(fd: Int32, name: UnsafePointer<CChar>?, path: String) throws(TreeSyncError) -> [(name: [UInt8], value: [UInt8])] {
        var listSize = 1024
        var list = [UInt8]()
        while true {
            list = [UInt8](repeating: 0, count: listSize)
            let n = list.withUnsafeMutableBytes { cr_xattr_list(fd, name, $0.baseAddress!.assumingMemoryBound(to: CChar.self), listSize) }
            if n >= 0 {
                list.removeLast(listSize - n)
                break
            }
            if errno == ERANGE {
                let needed = cr_xattr_list(fd, name, nil, 0)
                guard needed >= 0 else { throw .io(operation: "list xattrs of", path: path, errno: errno) }
                listSize = needed + 64
                continue
            }
            if errno == ENOTSUP || errno == ENOENT { return [] }
            throw .io(operation: "list xattrs of", path: path, errno: errno)
        }
        var result: [(name: [UInt8], value: [UInt8])] = []
        for attr in list.split(separator: 0) {
            let carried = attr.withUnsafeBytes { carries($0) }
            guard carried, attr.count <= TreeStreamFormat.maxXattrName else { continue }
            let attrName = Array(attr) + [0]
            var value = [UInt8](repeating: 0, count: 256)
            while true {
                let n = attrName.withUnsafeBufferPointer { an in
                    an.withMemoryRebound(to: CChar.self) { an in
                        value.withUnsafeMutableBytes { cr_xattr_get(fd, name, an.baseAddress!, $0.baseAddress!, $0.count) }
                    }
                }
                if n >= 0 {
                    value.removeLast(value.count - n)
                    result.append((Array(attr), value))
                    break
                }
                if errno == ERANGE, value.count < TreeStreamFormat.maxXattrValue {
                    value = [UInt8](repeating: 0, count: TreeStreamFormat.maxXattrValue)
                    continue
                }
                if errno == ENODATA { break }  // removed since the listing
                throw .io(operation: "read xattr \(String(decoding: attr, as: UTF8.self)) of", path: path, errno: errno)
            }
        }
        return result
    }
}

/// Linux's device number encoding (glibc's makedev/major/minor, which Swift cannot call).
enum DeviceNumber {
    static func major(_ dev: UInt64) -> UInt32 {
        UInt32(truncatingIfNeeded: ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff))
    }

    static func minor(_ dev: UInt64) -> UInt32 {
        UInt32(truncatingIfNeeded: ((dev >> 12) & 0xffff_ff00) | (dev & 0xff))
    }

    static func make(major: UInt32, minor: UInt32) -> UInt64 {
        let major = UInt64(major), minor = UInt64(minor)
        return ((major & 0xffff_f000) << 32) | ((major & 0xfff) << 8) | ((minor & 0xffff_ff00) << 12) | (minor & 0xff)
    }
}
