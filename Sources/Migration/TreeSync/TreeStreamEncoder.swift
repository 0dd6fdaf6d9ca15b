import CRuntime
import Glibc

/// What one encoded round held.
public struct TreeEncodeReport: Sendable, Equatable {
    /// Bytes handed to the sink.
    public var bytes: UInt64 = 0
    /// Records, the end record excluded.
    public var records: Int = 0
    /// Regular files sent with their content.
    public var files: Int = 0
    /// Bytes of file data (extents), holes excluded.
    public var dataBytes: UInt64 = 0
    /// Entries of the delta gone (or no longer reachable) when they were read: the running
    /// source changed them since its scan. The next round's delta removes or resends them.
    public var vanished: Int = 0
}

/// Writes one round of a tree copy (`TreeStreamFormat`) from the files under `root`: removals
/// of `delta`, then its sent entries as they are when read (a running container may have
/// changed them since the scan; the next round catches that).
///
/// Every entry is reached through directory fds opened with O_NOFOLLOW from the root, and
/// opened itself with O_NOFOLLOW: a container that swaps a directory for a symlink between
/// scan and send cannot make the encoder read a host file. Files are read with O_NOATIME.
public final class TreeStreamEncoder {
    /// The sink never gets a chunk larger than this.
    public static let chunkSize = 1 << 20

    private let root: String
    private let manifest: TreeManifest
    private let delta: TreeDelta

    public init(root: String, manifest: TreeManifest, delta: TreeDelta) {
        self.root = root
        self.manifest = manifest
        self.delta = delta
    }

    /// Encodes the round, calling `sink` with chunks of at most `chunkSize` bytes, each valid
    /// only during the call. Errors of the sink are rethrown as they are.
    public func encode(to sink: (UnsafeRawBufferPointer) throws -> Void) throws -> TreeEncodeReport {
        let rootFD = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard rootFD >= 0 else { throw TreeSyncError.io(operation: "open", path: root, errno: errno) }
        defer { close(rootFD) }
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: Self.chunkSize, alignment: 4096)
        defer { buffer.deallocate() }
        return try withoutActuallyEscaping(sink) { sink in
            var session = EncodingSession(
                output: Output(base: buffer, capacity: Self.chunkSize, sink: sink),
                walker: DirectoryWalker(rootFD: rootFD, rootPath: root), root: root)
            try session.run(manifest: manifest, delta: delta)
            return session.report
        }
    }
}

/// A 1 MiB buffer in front of the sink; file data is read straight into it.
private struct Output {
    let base: UnsafeMutableRawPointer
    let capacity: Int
    let sink: (UnsafeRawBufferPointer) throws -> Void
    var used = 0
    var total: UInt64 = 0

    mutating func flush() throws {
        guard used > 0 else { return }
        try sink(UnsafeRawBufferPointer(start: base, count: used))
        total += UInt64(used)
        used = 0
    }

    /// Room for `count` contiguous bytes (count <= capacity).
    mutating func reserve(_ count: Int) throws -> UnsafeMutableRawPointer {
        if capacity - used < count { try flush() }
        let at = base + used
        used += count
        return at
    }

    mutating func append(_ bytes: UnsafeRawBufferPointer) throws {
        var rest = bytes
        while !rest.isEmpty {
            if used == capacity { try flush() }
            let n = min(rest.count, capacity - used)
            (base + used).copyMemory(from: rest.baseAddress!, byteCount: n)
            used += n
            rest = UnsafeRawBufferPointer(rebasing: rest[n...])
        }
    }

    mutating func append(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try append($0) }
    }

    mutating func appendZeros(_ count: Int) throws {
        var rest = count
        while rest > 0 {
            if used == capacity { try flush() }
            let n = min(rest, capacity - used)
            (base + used).initializeMemory(as: UInt8.self, repeating: 0, count: n)
            used += n
            rest -= n
        }
    }
}

private struct EncodingSession {
    var output: Output
    let walker: DirectoryWalker
    let root: String
    var report = TreeEncodeReport()
    /// First path sent of each multiply-linked inode: later paths become hard-link records.
    var firstPathOfInode: [UInt64: TreePath] = [:]

    mutating func run(manifest: TreeManifest, delta: TreeDelta) throws {
        try output.append(TreeStreamFormat.magic)
        var versionBytes = [UInt8](repeating: 0, count: 8)
        versionBytes.withUnsafeMutableBytes { store(TreeStreamFormat.version, $0.baseAddress!, 0) }
        try output.append(versionBytes)

        for path in delta.removed {
            var header = TreeStreamFormat.RecordHeader()
            header.kind = TreeStreamFormat.RecordKind.remove.rawValue
            try emit(header, path: path, xattrs: [], payload: [])
        }
        for path in delta.sent {
            try send(path)
        }
        var end = TreeStreamFormat.RecordHeader()
        end.kind = TreeStreamFormat.RecordKind.end.rawValue
        end.payloadLength = UInt64(TreeStreamFormat.endPayloadSize)
        var counts = [UInt8](repeating: 0, count: 16)
        counts.withUnsafeMutableBytes {
            store(UInt64(report.records), $0.baseAddress!, 0)
            store(report.dataBytes, $0.baseAddress!, 8)
        }
        let records = report.records
        try emit(end, path: .root, xattrs: [], payload: counts)
        report.records = records
        try output.flush()
        report.bytes = output.total
    }

    private mutating func emit(
        _ header: TreeStreamFormat.RecordHeader, path: TreePath,
        xattrs: [(name: [UInt8], value: [UInt8])], payload: [UInt8]
    ) throws {
        var header = header
        header.pathLength = UInt32(path.bytes.count)
        var block: [UInt8] = []
        for (name, value) in xattrs {
            var lengths = [UInt8](repeating: 0, count: 6)
            lengths.withUnsafeMutableBytes {
                store(UInt16(name.count), $0.baseAddress!, 0)
                store(UInt32(value.count), $0.baseAddress!, 2)
            }
            block += lengths
            block += name
            block += value
        }
        header.xattrLength = UInt32(block.count)
        if header.kind != TreeStreamFormat.RecordKind.regular.rawValue { header.payloadLength = UInt64(payload.count) }
        header.write(to: try output.reserve(TreeStreamFormat.recordHeaderSize))
        try output.append(path.bytes)
        try output.append(block)
        try output.append(payload)
        report.records += 1
    }

    private mutating func send(_ path: TreePath) throws {
        guard path.bytes.count <= TreeStreamFormat.maxPathLength else {
            throw TreeSyncError.io(operation: "send (the path is longer than the stream's 4096 bytes)", path: joined(root, path), errno: ENAMETOOLONG)
        }
        let parent: Int32
        let name: [CChar]?
        if let parentPath = path.parent {
            do { parent = try walker.directory(parentPath) } catch {
                if case let .io(_, _, e) = error, e == ENOENT || e == ENOTDIR || e == ELOOP {
                    report.vanished += 1
                    return
                }
                throw error
            }
            name = path.components.last!.map { CChar(bitPattern: $0) } + [0]
        } else {
            parent = walker.rootFD
            name = nil
        }
        let display = joined(root, path)
        var st = stat()
        let statResult = name.map { fstatat(parent, $0, &st, AT_SYMLINK_NOFOLLOW) } ?? fstat(parent, &st)
        guard statResult == 0 else {
            if errno == ENOENT { report.vanished += 1; return }
            throw TreeSyncError.io(operation: "stat", path: display, errno: errno)
        }
        guard let kind = TreeEntryKind(mode: st.st_mode) else { return }

        var fileFD: Int32 = -1
        defer { if fileFD >= 0 { close(fileFD) } }
        if kind == .regular, let name {
            fileFD = openat(parent, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | openNoAccessTime)
            if fileFD < 0, errno == EPERM {
                fileFD = openat(parent, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
            }
            guard fileFD >= 0 else {
                if errno == ENOENT || errno == ELOOP { report.vanished += 1; return }
                throw TreeSyncError.io(operation: "open", path: display, errno: errno)
            }
            // What was opened is what is described: it may have been replaced since the stat.
            guard fstat(fileFD, &st) == 0 else { throw TreeSyncError.io(operation: "stat", path: display, errno: errno) }
            guard st.st_mode & S_IFMT == S_IFREG else { report.vanished += 1; return }
        }

        var header = TreeStreamFormat.RecordHeader()
        header.mode = UInt32(st.st_mode & 0o7777)
        header.uid = st.st_uid
        header.gid = st.st_gid
        header.atimeSeconds = Int64(st.st_atim.tv_sec)
        header.atimeNanoseconds = UInt32(st.st_atim.tv_nsec)
        header.mtimeSeconds = Int64(st.st_mtim.tv_sec)
        header.mtimeNanoseconds = UInt32(st.st_mtim.tv_nsec)

        if kind != .directory, st.st_nlink > 1 {
            if let first = firstPathOfInode[UInt64(st.st_ino)] {
                header.kind = TreeStreamFormat.RecordKind.hardlink.rawValue
                try emit(header, path: path, xattrs: [], payload: first.bytes)
                return
            }
            firstPathOfInode[UInt64(st.st_ino)] = path
        }

        let xattrs: [(name: [UInt8], value: [UInt8])]
        if fileFD >= 0 {
            xattrs = try SyncedXattrs.read(fd: fileFD, name: nil, path: display)
        } else if let name {
            xattrs = try name.withUnsafeBufferPointer { try SyncedXattrs.read(fd: parent, name: $0.baseAddress!, path: display) }
        } else {
            xattrs = try SyncedXattrs.read(fd: parent, name: nil, path: display)
        }
        header.kind = TreeStreamFormat.RecordKind(kind).rawValue

        switch kind {
        case .regular:
            header.payloadLength = UInt64(st.st_size)
            try emit(header, path: path, xattrs: xattrs, payload: [])
            try sendContent(fileFD, size: Int64(st.st_size), path: display)
            report.files += 1
        case .symlink:
            var target = [UInt8](repeating: 0, count: TreeStreamFormat.maxSymlinkTarget + 1)
            let n = target.withUnsafeMutableBytes { readlinkat(parent, name!, $0.baseAddress!.assumingMemoryBound(to: CChar.self), $0.count) }
            guard n >= 0 else {
                if errno == ENOENT || errno == EINVAL { report.vanished += 1; return }
                throw TreeSyncError.io(operation: "read link", path: display, errno: errno)
            }
            guard n >= 1, n <= TreeStreamFormat.maxSymlinkTarget else {
                throw TreeSyncError.io(operation: "send link (target longer than 4095 bytes)", path: display, errno: ENAMETOOLONG)
            }
            target.removeLast(target.count - n)
            try emit(header, path: path, xattrs: xattrs, payload: target)
        case .characterDevice, .blockDevice:
            header.rdevMajor = DeviceNumber.major(UInt64(st.st_rdev))
            header.rdevMinor = DeviceNumber.minor(UInt64(st.st_rdev))
            try emit(header, path: path, xattrs: xattrs, payload: [])
        case .directory, .fifo, .socket:
            try emit(header, path: path, xattrs: xattrs, payload: [])
        }
    }

    /// The data extents of a file (SEEK_DATA/seekHole), then the end of the list. A file that
    /// shrinks while it is read is padded with zeros to what its header promised.
    private mutating func sendContent(_ fd: Int32, size: Int64, path: String) throws {
        var offset: Int64 = 0
        while offset < size {
            var data = lseek(fd, off_t(offset), seekData)
            if data < 0 {
                if errno == ENXIO { break }  // only a hole left
                data = off_t(offset)  // no SEEK_DATA here: all of it is data
            }
            if Int64(data) >= size { break }
            var hole = lseek(fd, data, seekHole)
            if hole < 0 || Int64(hole) > size { hole = off_t(size) }
            if hole <= data { hole = off_t(size) }
            try sendExtent(fd, offset: Int64(data), length: Int64(hole - data), path: path)
            offset = Int64(hole)
        }
        let end = try output.reserve(TreeStreamFormat.extentHeaderSize)
        store(TreeStreamFormat.endOfExtents, end, 0)
        store(UInt64(0), end, 8)
    }

    private mutating func sendExtent(_ fd: Int32, offset: Int64, length: Int64, path: String) throws {
        let header = try output.reserve(TreeStreamFormat.extentHeaderSize)
        store(UInt64(offset), header, 0)
        store(UInt64(length), header, 8)
        var done: Int64 = 0
        while done < length {
            if output.used == output.capacity { try output.flush() }
            let room = min(Int64(output.capacity - output.used), length - done)
            let n = pread(fd, output.base + output.used, Int(room), off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw TreeSyncError.io(operation: "read", path: path, errno: errno)
            }
            if n == 0 {
                try output.appendZeros(Int(length - done))
                break
            }
            output.used += n
            done += Int64(n)
        }
        report.dataBytes += UInt64(length)
    }
}
