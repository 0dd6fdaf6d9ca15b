import CRuntime
import Glibc

/// Bounds the applier holds a stream to; everything beyond is refused before it is allocated
/// or written.
public struct TreeApplyLimits: Sendable, Equatable {
    /// Which device nodes may be created. An overlay upper holds whiteouts (character 0/0);
    /// a real device node made by host root in a container's tree would reach a host device.
    public enum Devices: Sendable, Equatable {
        case whiteoutsOnly
        case any
    }

    /// Total bytes of file data (extents) in the stream.
    public var maxTotalBytes: UInt64
    /// Records (entries and removals).
    public var maxEntries: Int
    /// Size of one regular file (its holes included).
    public var maxFileSize: UInt64 {
        didSet { maxFileSize = min(maxFileSize, UInt64(Int64.max)) }
    }
    /// Bytes of one record's xattr block.
    public var maxXattrBytes: Int
    public var devices: Devices
    /// When set, every owner and group must be in it (a container's mapped ids); checked after
    /// `ownerShift`.
    public var ownerRange: ClosedRange<UInt32>?
    /// When set, owners (and the ids in ACLs and file capabilities) are moved from one id block
    /// to another as entries are made, and an owner outside the source block is refused; a
    /// whiteout owned by host root stays root's (a copy of an instance: a block of its own).
    public var ownerShift: OwnerShift?

    public init(
        maxTotalBytes: UInt64 = 1 << 40, maxEntries: Int = 10_000_000, maxFileSize: UInt64 = 1 << 42,
        maxXattrBytes: Int = 1 << 20, devices: Devices = .whiteoutsOnly, ownerRange: ClosedRange<UInt32>? = nil,
        ownerShift: OwnerShift? = nil
    ) {
        self.maxTotalBytes = maxTotalBytes
        self.maxEntries = maxEntries
        // Offsets become off_t: never above Int64.max, whatever the caller asks.
        self.maxFileSize = min(maxFileSize, UInt64(Int64.max))
        self.maxXattrBytes = maxXattrBytes
        self.devices = devices
        self.ownerRange = ownerRange
        self.ownerShift = ownerShift
    }
}

/// What an applied stream did.
public struct TreeApplyReport: Sendable, Equatable {
    /// Records, the end record excluded.
    public var records = 0
    public var removed = 0
    public var directories = 0
    public var files = 0
    public var hardlinks = 0
    public var symlinks = 0
    /// Devices, fifos and sockets.
    public var specials = 0
    /// File data written (holes excluded).
    public var dataBytes: UInt64 = 0
    /// Stream bytes consumed.
    public var streamBytes: UInt64 = 0
}

/// Applies a tree stream (`TreeStreamFormat`) to the directory `root`, as its bytes arrive in
/// chunks of any size (`consume`), then `finish`.
///
/// The stream is hostile until checked: every length is checked against the format and
/// `limits` before anything is allocated, every path is relative with plain components, and
/// every change stays under `root`. The root is opened once; each parent directory is opened
/// from it one component at a time with O_NOFOLLOW|O_DIRECTORY, and leaves are created and
/// changed with *at calls that do not follow a symlink at the leaf (xattrs through
/// `cr_xattr_*`). A symlink the stream made earlier therefore stays a symlink: a later path
/// through it is refused, never written where it points.
///
/// Entries other than directories are made at their name when it is free, else under a
/// temporary name in their directory and renamed over the old entry (which stays whole until
/// then); an existing directory is kept and its metadata updated. Order per
/// entry: owner, mode (chown clears setuid), xattrs (chown also clears security.capability),
/// times. Directory times are set in `finish`, after their children changed them; directories
/// whose entries changed but which the stream does not describe get their times back.
///
/// On an error the applier stops: what was applied stays (the caller discards the directory),
/// later calls throw the same error. Not thread-safe: one stream, one caller.
public final class TreeStreamApplier {
    private let root: String
    private let limits: TreeApplyLimits
    private let rootFD: Int32
    private let walker: DirectoryWalker

    private enum State {
        case streamHeader
        case recordHeader
        case recordBody(TreeStreamFormat.RecordHeader)
        case extentHeader
        case extentData(offset: UInt64, remaining: UInt64)
        case ended
    }

    private var state = State.streamHeader
    private var need = TreeStreamFormat.streamHeaderSize
    private var pending: [UInt8] = []
    private var failure: TreeSyncError?
    private var record = 0
    private var report = TreeApplyReport()
    /// Times to give directories at the end (atime, mtime).
    private var directoryTimes: [TreePath: (timespec, timespec)] = [:]

    /// The regular file being received.
    private struct OpenFile {
        var fd: Int32
        var parentFD: Int32
        var parent: TreePath
        var path: TreePath
        /// The name it is written under: its own, or a temporary one when something was there.
        var name: [CChar]
        var temporary: Bool
        var header: TreeStreamFormat.RecordHeader
        var xattrs: [(name: [UInt8], value: [UInt8])]
        var extentEnd: UInt64 = 0
    }

    private var file: OpenFile?

    public init(root: String, limits: TreeApplyLimits = TreeApplyLimits()) throws(TreeSyncError) {
        self.root = root
        self.limits = limits
        rootFD = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard rootFD >= 0 else { throw .io(operation: "open", path: root, errno: errno) }
        walker = DirectoryWalker(rootFD: rootFD, rootPath: root)
        pending.reserveCapacity(TreeStreamFormat.recordHeaderSize + TreeStreamFormat.maxPathLength)
    }

    deinit {
        discardFile()
        close(rootFD)
    }

    /// Applies the next bytes of the stream. Throws at the first thing wrong.
    public func consume(_ bytes: UnsafeRawBufferPointer) throws(TreeSyncError) {
        if let failure { throw failure }
        do throws(TreeSyncError) {
            var input = bytes
            report.streamBytes += UInt64(bytes.count)
            while !input.isEmpty {
                switch state {
                case .ended:
                    throw .malformed(record: record, "\(input.count) bytes after the end record")
                case let .extentData(offset, remaining):
                    let n = Int(min(remaining, UInt64(input.count)))
                    try writeData(UnsafeRawBufferPointer(rebasing: input[..<n]), at: offset)
                    input = UnsafeRawBufferPointer(rebasing: input[n...])
                    if remaining == UInt64(n) {
                        expect(.extentHeader, TreeStreamFormat.extentHeaderSize)
                    } else {
                        state = .extentData(offset: offset + UInt64(n), remaining: remaining - UInt64(n))
                    }
                default:
                    let n = min(need - pending.count, input.count)
                    pending.append(contentsOf: UnsafeRawBufferPointer(rebasing: input[..<n]))
                    input = UnsafeRawBufferPointer(rebasing: input[n...])
                    while pending.count == need, try completePiece() {}
                }
            }
        } catch {
            failure = error
            discardFile()
            throw error
        }
    }

    public func consume(_ bytes: [UInt8]) throws(TreeSyncError) {
        var error: TreeSyncError?
        bytes.withUnsafeBytes { raw in
            do throws(TreeSyncError) { try consume(raw) } catch let thrown { error = thrown }
        }
        if let error { throw error }
    }

    /// Checks the stream ended with its end record and sets the directories' times.
    public func finish() throws(TreeSyncError) -> TreeApplyReport {
        if let failure { throw failure }
        guard case .ended = state else {
            let error: TreeSyncError
            switch state {
            case .streamHeader: error = .truncated(record: 0, "the stream header is incomplete (\(pending.count) of \(need) bytes)")
            case .recordHeader: error = .truncated(record: record + 1, "no end record")
            case .recordBody: error = .truncated(record: record, "inside the record's path, xattrs or payload")
            case .extentHeader, .extentData: error = .truncated(record: record, "inside the data of \(file.map { $0.path.description } ?? "a file")")
            case .ended: error = .truncated(record: record, "")
            }
            failure = error
            discardFile()
            throw error
        }
        for (path, times) in directoryTimes.sorted(by: { $0.key < $1.key }) {
            if path.isRoot {
                try check(futimens(rootFD, [times.0, times.1]), "set times of", path)
                continue
            }
            // Whatever is at the path now: only a directory gets a directory's times (a later
            // record may have removed it or put something else there).
            guard let parentFD = try? walker.directory(path.parent!) else { continue }
            let fd = withCString(path.components.last!) { openat(parentFD, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
            guard fd >= 0 else { continue }
            defer { close(fd) }
            try check(futimens(fd, [times.0, times.1]), "set times of", path)
        }
        directoryTimes = [:]
        return report
    }

    // MARK: - Parsing

    private func expect(_ next: State, _ count: Int) {
        state = next
        need = count
        pending.removeAll(keepingCapacity: true)
    }

    /// Handles a complete piece in `pending`; true when the next piece is empty and complete too.
    private func completePiece() throws(TreeSyncError) -> Bool {
        switch state {
        case .streamHeader:
            guard pending[0..<8].elementsEqual(TreeStreamFormat.magic) else {
                throw .malformed(record: 0, "not a tree stream (bad magic)")
            }
            let version: UInt32 = pending.withUnsafeBytes { load($0.baseAddress!, 8) }
            let reserved: UInt32 = pending.withUnsafeBytes { load($0.baseAddress!, 12) }
            guard version == TreeStreamFormat.version, reserved == 0 else {
                throw .malformed(record: 0, "version \(version) (flags \(reserved)); this receiver reads version \(TreeStreamFormat.version)")
            }
            expect(.recordHeader, TreeStreamFormat.recordHeaderSize)
        case .recordHeader:
            record += 1
            var header = pending.withUnsafeBytes { TreeStreamFormat.RecordHeader(reading: $0.baseAddress!) }
            if let shift = limits.ownerShift { header = try shifted(header, shift) }
            let body = try bodyLength(header)
            expect(.recordBody(header), body)
            return body == 0
        case let .recordBody(header):
            try applyRecord(header)
        case .extentHeader:
            let offset: UInt64 = pending.withUnsafeBytes { load($0.baseAddress!, 0) }
            let length: UInt64 = pending.withUnsafeBytes { load($0.baseAddress!, 8) }
            guard var open = file else { throw .malformed(record: record, "extent outside a file") }
            if offset == TreeStreamFormat.endOfExtents && length == 0 {
                try finishFile()
                expect(.recordHeader, TreeStreamFormat.recordHeaderSize)
                return false
            }
            let size = open.header.payloadLength
            guard length > 0, offset >= open.extentEnd, length <= size, offset <= size - length else {
                throw .malformed(record: record, "extent \(offset)+\(length) of \(open.path) is empty, overlaps the previous one or lies past the size \(size)")
            }
            guard length <= limits.maxTotalBytes - report.dataBytes else {
                throw .overLimit(record: record, "more than \(limits.maxTotalBytes) bytes of file data")
            }
            open.extentEnd = offset + length
            file = open
            expect(.extentData(offset: offset, remaining: length), 0)
        case .extentData, .ended:
            break
        }
        return false
    }

    /// The header with its owner moved by `shift` (records without an owner, and root's
    /// whiteouts, unchanged).
    private func shifted(_ h: TreeStreamFormat.RecordHeader, _ shift: OwnerShift) throws(TreeSyncError) -> TreeStreamFormat.RecordHeader {
        guard let kind = TreeStreamFormat.RecordKind(rawValue: h.kind), kind != .end, kind != .remove, kind != .hardlink else { return h }
        if kind == .characterDevice, h.uid == 0, h.gid == 0, limits.devices == .whiteoutsOnly { return h }
        guard let uid = shift.map(h.uid), let gid = shift.map(h.gid) else {
            throw .overLimit(record: record, "owner \(h.uid):\(h.gid) outside the source's ids \(shift.sourceRange.lowerBound)...\(shift.sourceRange.upperBound)")
        }
        var out = h
        out.uid = uid
        out.gid = gid
        return out
    }

    /// Checks the header's lengths; the bytes of path, xattrs and inline payload that follow.
    private func bodyLength(_ h: TreeStreamFormat.RecordHeader) throws(TreeSyncError) -> Int {
        guard h.reserved == 0 else { throw .malformed(record: record, "reserved header bytes are not zero") }
        guard let kind = TreeStreamFormat.RecordKind(rawValue: h.kind) else {
            throw .malformed(record: record, "unknown record kind \(h.kind)")
        }
        guard h.pathLength <= TreeStreamFormat.maxPathLength else {
            throw .malformed(record: record, "path length \(h.pathLength) over \(TreeStreamFormat.maxPathLength)")
        }
        guard h.xattrLength <= limits.maxXattrBytes else {
            throw .overLimit(record: record, "xattr block of \(h.xattrLength) bytes, over \(limits.maxXattrBytes)")
        }
        guard h.mode & ~0o7777 == 0, h.atimeNanoseconds < 1_000_000_000, h.mtimeNanoseconds < 1_000_000_000 else {
            throw .malformed(record: record, "mode \(String(h.mode, radix: 8)) or nanoseconds out of range")
        }
        // Overlayfs makes whiteouts as the mounter (host root): a 0:0 character device passes,
        // and with `.whiteoutsOnly` it must then be a whiteout (0/0), checked with its payload.
        // A hard link adds a name to an inode already checked (made earlier in the stream, or in
        // the root already): overlayfs links every whiteout to one shared inode.
        let rootWhiteout = kind == .characterDevice && h.uid == 0 && h.gid == 0 && limits.devices == .whiteoutsOnly
        if kind != .end, kind != .remove, kind != .hardlink, !rootWhiteout, let range = limits.ownerRange,
           !range.contains(h.uid) || !range.contains(h.gid) {
            throw .overLimit(record: record, "owner \(h.uid):\(h.gid) outside \(range.lowerBound)...\(range.upperBound)")
        }
        if kind != .end {
            guard record <= limits.maxEntries else { throw .overLimit(record: record, "more than \(limits.maxEntries) records") }
        }
        var inline = 0
        switch kind {
        case .end:
            guard h.pathLength == 0, h.xattrLength == 0, h.payloadLength == UInt64(TreeStreamFormat.endPayloadSize) else {
                throw .malformed(record: record, "end record with a path, xattrs or a payload of \(h.payloadLength) bytes")
            }
            inline = TreeStreamFormat.endPayloadSize
        case .symlink:
            guard h.payloadLength >= 1, h.payloadLength <= UInt64(TreeStreamFormat.maxSymlinkTarget) else {
                throw .malformed(record: record, "symlink target of \(h.payloadLength) bytes (1...\(TreeStreamFormat.maxSymlinkTarget))")
            }
            inline = Int(h.payloadLength)
        case .hardlink:
            guard h.payloadLength >= 1, h.payloadLength <= UInt64(TreeStreamFormat.maxPathLength) else {
                throw .malformed(record: record, "hard link target of \(h.payloadLength) bytes (1...\(TreeStreamFormat.maxPathLength))")
            }
            inline = Int(h.payloadLength)
        case .regular:
            guard h.payloadLength <= limits.maxFileSize else {
                throw .overLimit(record: record, "file size \(h.payloadLength) over \(limits.maxFileSize)")
            }
        case .remove, .directory, .characterDevice, .blockDevice, .fifo, .socket:
            guard h.payloadLength == 0 else { throw .malformed(record: record, "payload of \(h.payloadLength) bytes on a record that has none") }
        }
        if kind == .remove, h.xattrLength != 0 { throw .malformed(record: record, "remove record with xattrs") }
        return Int(h.pathLength) + Int(h.xattrLength) + inline
    }

    /// A record path: relative, components 1...255 bytes, no NUL, no "." or "..".
    private func checkedPath(_ bytes: ArraySlice<UInt8>, what: String) throws(TreeSyncError) -> TreePath {
        if bytes.isEmpty { return .root }
        guard !bytes.contains(0) else { throw .malformed(record: record, "\(what) contains a NUL byte") }
        guard bytes.first != UInt8(ascii: "/") else {
            throw .malformed(record: record, "\(what) \(String(decoding: bytes, as: UTF8.self)) is absolute")
        }
        for component in bytes.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false) {
            guard !component.isEmpty, component.count <= TreeStreamFormat.maxComponentLength else {
                throw .malformed(record: record, "\(what) \(String(decoding: bytes, as: UTF8.self)) has an empty or over-long component")
            }
            if component.elementsEqual([UInt8(ascii: ".")]) || component.elementsEqual([UInt8(ascii: "."), UInt8(ascii: ".")]) {
                throw .malformed(record: record, "\(what) \(String(decoding: bytes, as: UTF8.self)) has a . or .. component")
            }
        }
        return TreePath(bytes: Array(bytes))
    }

    private func parseXattrs(_ block: ArraySlice<UInt8>) throws(TreeSyncError) -> [(name: [UInt8], value: [UInt8])] {
        var result: [(name: [UInt8], value: [UInt8])] = []
        var at = block.startIndex
        while at < block.endIndex {
            guard block.endIndex - at >= 6 else { throw .malformed(record: record, "xattr block ends inside an attribute header") }
            let nameLength = Int(UInt16(block[at]) | UInt16(block[at + 1]) << 8)
            var valueLength = 0
            for i in 0..<4 { valueLength |= Int(block[at + 2 + i]) << (8 * i) }
            at += 6
            guard nameLength >= 1, nameLength <= TreeStreamFormat.maxXattrName, valueLength <= TreeStreamFormat.maxXattrValue,
                  block.endIndex - at >= nameLength + valueLength else {
                throw .malformed(record: record, "xattr with name length \(nameLength) and value length \(valueLength) does not fit its bounds or the block")
            }
            let name = block[at..<(at + nameLength)]
            guard !name.contains(0), name.withUnsafeBytes({ SyncedXattrs.carries($0) }) else {
                throw .malformed(record: record, "xattr \(String(decoding: name, as: UTF8.self)) is not in a namespace a tree copy carries")
            }
            result.append((Array(name), Array(block[(at + nameLength)..<(at + nameLength + valueLength)])))
            at += nameLength + valueLength
        }
        return result
    }

    // MARK: - Applying records

    private func applyRecord(_ h: TreeStreamFormat.RecordHeader) throws(TreeSyncError) {
        let kind = TreeStreamFormat.RecordKind(rawValue: h.kind)!
        let pathEnd = Int(h.pathLength)
        let xattrEnd = pathEnd + Int(h.xattrLength)
        if kind == .end {
            let records: UInt64 = pending.withUnsafeBytes { load($0.baseAddress!, 0) }
            let data: UInt64 = pending.withUnsafeBytes { load($0.baseAddress!, 8) }
            guard records == UInt64(record - 1), data == report.dataBytes else {
                throw .malformed(record: record, "end record counts \(records) records and \(data) data bytes, the stream held \(record - 1) and \(report.dataBytes)")
            }
            state = .ended
            need = 0
            pending.removeAll()
            return
        }
        let path = try checkedPath(pending[0..<pathEnd], what: "path")
        var xattrs = try parseXattrs(pending[pathEnd..<xattrEnd])
        if let shift = limits.ownerShift {
            for i in xattrs.indices {
                guard let value = shift.xattr(name: xattrs[i].name, value: xattrs[i].value) else {
                    throw .overLimit(record: record, "xattr \(String(decoding: xattrs[i].name, as: UTF8.self)) of \(path) is malformed or names an id outside \(shift.sourceRange)")
                }
                xattrs[i].value = value
            }
        }
        let payload = Array(pending[xattrEnd...])
        report.records += 1
        if path.isRoot, kind != .directory {
            throw .malformed(record: record, "the root itself can only be described as a directory")
        }
        switch kind {
        case .remove:
            try remove(path)
        case .directory:
            try makeDirectory(path, h, xattrs)
        case .regular:
            try startFile(path, h, xattrs)
            expect(.extentHeader, TreeStreamFormat.extentHeaderSize)
            return
        case .hardlink:
            try link(path, to: try checkedPath(payload[...], what: "hard link target"))
        case .symlink:
            guard !payload.contains(0) else { throw .malformed(record: record, "symlink target of \(path) contains a NUL byte") }
            try makeLeaf(path, h, xattrs) { parent, name in
                withCString(payload) { symlinkat($0, parent, name) }
            }
            report.symlinks += 1
        case .characterDevice, .blockDevice:
            if limits.devices == .whiteoutsOnly, kind == .blockDevice || h.rdevMajor != 0 || h.rdevMinor != 0 {
                throw .refused(record: record, path: path.description, "device node \(h.rdevMajor):\(h.rdevMinor); only whiteouts (character 0:0) are accepted")
            }
            let type = kind == .blockDevice ? S_IFBLK : S_IFCHR
            let device = dev_t(DeviceNumber.make(major: h.rdevMajor, minor: h.rdevMinor))
            try makeLeaf(path, h, xattrs) { parent, name in mknodat(parent, name, type | 0o600, device) }
            report.specials += 1
        case .fifo:
            try makeLeaf(path, h, xattrs) { parent, name in mknodat(parent, name, S_IFIFO | 0o600, 0) }
            report.specials += 1
        case .socket:
            try makeLeaf(path, h, xattrs) { parent, name in mknodat(parent, name, S_IFSOCK | 0o600, 0) }
            report.specials += 1
        case .end:
            break
        }
        expect(.recordHeader, TreeStreamFormat.recordHeaderSize)
    }

    /// The fd of `path`'s parent directory, its own saved times noted (changing entries
    /// changes them).
    private func parentDirectory(of path: TreePath) throws(TreeSyncError) -> Int32 {
        let parent = path.parent!
        let fd: Int32
        do { fd = try walker.directory(parent) } catch {
            if case let .io(_, _, e) = error, e == ELOOP || e == ENOTDIR {
                throw .refused(record: record, path: path.description, "a directory on its path is a symlink or not a directory on the target; nothing is written through a symlink")
            }
            if case let .io(_, _, e) = error, e == ENOENT {
                throw .malformed(record: record, "the directory holding \(path) does not exist (directories must come before their entries)")
            }
            throw error
        }
        if directoryTimes[parent] == nil {
            var st = stat()
            guard fstat(fd, &st) == 0 else { throw .io(operation: "stat", path: joined(root, parent), errno: errno) }
            directoryTimes[parent] = (st.st_atim, st.st_mtim)
        }
        return fd
    }

    private func cName(_ path: TreePath) -> [CChar] {
        path.components.last!.map { CChar(bitPattern: $0) } + [0]
    }

    private func temporaryName() -> [CChar] {
        Array(".lxd-tree-\(record).tmp".utf8CString)
    }

    private func times(_ h: TreeStreamFormat.RecordHeader) -> [timespec] {
        [timespec(tv_sec: Int(truncatingIfNeeded: h.atimeSeconds), tv_nsec: Int(h.atimeNanoseconds)),
         timespec(tv_sec: Int(truncatingIfNeeded: h.mtimeSeconds), tv_nsec: Int(h.mtimeNanoseconds))]
    }

    private func check(_ result: Int32, _ operation: String, _ path: TreePath) throws(TreeSyncError) {
        if result != 0 { throw .io(operation: operation, path: joined(root, path), errno: errno) }
    }

    private func remove(_ path: TreePath) throws(TreeSyncError) {
        guard !path.isRoot else { throw .malformed(record: record, "remove of the root") }
        let parent: Int32
        do { parent = try parentDirectory(of: path) } catch {
            if case .malformed = error { report.removed += 1; return }  // already gone with its directory
            throw error
        }
        walker.forget(path)
        let name = cName(path)
        try removeEntry(parent, name, path: path)
        report.removed += 1
    }

    /// Removes the entry `name` of `parent` with everything below it; absent is fine. Depth
    /// first with an explicit stack (one open fd per level): a hostile tree thousands of
    /// levels deep cannot exhaust the thread's stack.
    private func removeEntry(_ parent: Int32, _ name: [CChar], path: TreePath) throws(TreeSyncError) {
        var st = stat()
        if fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) != 0 {
            if errno == ENOENT { return }
            throw .io(operation: "stat", path: joined(root, path), errno: errno)
        }
        guard st.st_mode & S_IFMT == S_IFDIR else {
            try check(unlinkat(parent, name, 0), "remove", path)
            return
        }
        struct Frame {
            var fd: Int32
            var name: [CChar]
            var path: TreePath
            var children: [[UInt8]]
            var next = 0
        }
        var stack: [Frame] = []
        defer { for frame in stack { close(frame.fd) } }
        func push(_ holder: Int32, _ name: [CChar], _ path: TreePath) throws(TreeSyncError) {
            let fd = openat(holder, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard fd >= 0 else { throw .io(operation: "open directory", path: joined(root, path), errno: errno) }
            stack.append(Frame(fd: fd, name: name, path: path, children: []))
            stack[stack.count - 1].children = try listNames(fd, path: path)
        }
        try push(parent, name, path)
        while let top = stack.last {
            if top.next == top.children.count {
                stack.removeLast()
                close(top.fd)
                try check(unlinkat(stack.last?.fd ?? parent, top.name, AT_REMOVEDIR), "remove directory", top.path)
                continue
            }
            stack[stack.count - 1].next += 1
            let child = top.children[top.next]
            let childName = child.map { CChar(bitPattern: $0) }
            let childPath = top.path.appending(child.dropLast())
            if fstatat(top.fd, childName, &st, AT_SYMLINK_NOFOLLOW) != 0 {
                if errno == ENOENT { continue }
                throw .io(operation: "stat", path: joined(root, childPath), errno: errno)
            }
            if st.st_mode & S_IFMT == S_IFDIR {
                try push(top.fd, childName, childPath)
            } else {
                try check(unlinkat(top.fd, childName, 0), "remove", childPath)
            }
        }
    }

    private func listNames(_ fd: Int32, path: TreePath) throws(TreeSyncError) -> [[UInt8]] {
        let copy = dup(fd)
        guard copy >= 0, let dir = fdopendir(copy) else { throw .io(operation: "list", path: joined(root, path), errno: errno) }
        defer { closedir(dir) }
        var names: [[UInt8]] = []
        while let entry = readdir(dir) {
            let name: [UInt8] = withUnsafePointer(to: &entry.pointee.d_name) { tuple in
                tuple.withMemoryRebound(to: UInt8.self, capacity: 256) { bytes in
                    Array(UnsafeBufferPointer(start: bytes, count: strlen(UnsafeRawPointer(bytes).assumingMemoryBound(to: CChar.self)) + 1))
                }
            }
            if name == [46, 0] || name == [46, 46, 0] { continue }
            names.append(name)
        }
        return names
    }

    /// Sets the carried xattrs of an entry to exactly `xattrs` (of `fd` itself when `name` is nil).
    private func setXattrs(_ xattrs: [(name: [UInt8], value: [UInt8])], fd: Int32, name: [CChar]?, path: TreePath, replacing: Bool) throws(TreeSyncError) {
        if replacing {
            let existing = try name.withOptionalCString { (cname) throws(TreeSyncError) in
                try SyncedXattrs.read(fd: fd, name: cname, path: joined(root, path))
            }
            for (old, _) in existing where !xattrs.contains(where: { $0.name == old }) {
                let result = withCString(old) { attr in name.withOptionalCString { cr_xattr_remove(fd, $0, attr) } }
                if result != 0, errno != ENODATA { throw .io(operation: "remove xattr \(String(decoding: old, as: UTF8.self)) of", path: joined(root, path), errno: errno) }
            }
        }
        for (attr, value) in xattrs {
            let result = withCString(attr) { cattr in
                value.withUnsafeBytes { v in name.withOptionalCString { cr_xattr_set(fd, $0, cattr, v.baseAddress, v.count) } }
            }
            if result != 0 {
                throw .io(operation: "set xattr \(String(decoding: attr, as: UTF8.self)) of", path: joined(root, path), errno: errno)
            }
        }
    }

    private func makeDirectory(_ path: TreePath, _ h: TreeStreamFormat.RecordHeader, _ xattrs: [(name: [UInt8], value: [UInt8])]) throws(TreeSyncError) {
        var fd = rootFD
        if !path.isRoot {
            let parent = try parentDirectory(of: path)
            let name = cName(path)
            var st = stat()
            if fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) == 0 {
                if st.st_mode & S_IFMT != S_IFDIR {
                    try check(unlinkat(parent, name, 0), "remove", path)
                    try check(mkdirat(parent, name, 0o700), "create directory", path)
                }
            } else if errno == ENOENT {
                try check(mkdirat(parent, name, 0o700), "create directory", path)
            } else {
                throw .io(operation: "stat", path: joined(root, path), errno: errno)
            }
            fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard fd >= 0 else { throw .io(operation: "open directory", path: joined(root, path), errno: errno) }
        }
        defer { if fd != rootFD { close(fd) } }
        try check(fchown(fd, h.uid, h.gid), "chown", path)
        try check(fchmod(fd, mode_t(h.mode)), "chmod", path)
        try setXattrs(xattrs, fd: fd, name: nil, path: path, replacing: true)
        let t = times(h)
        directoryTimes[path] = (t[0], t[1])
        report.directories += 1
    }

    /// Makes a symlink, device, fifo or socket under a temporary name with `create`, gives it
    /// its metadata and renames it over `path`.
    private func makeLeaf(
        _ path: TreePath, _ h: TreeStreamFormat.RecordHeader, _ xattrs: [(name: [UInt8], value: [UInt8])],
        create: (Int32, UnsafePointer<CChar>) -> Int32
    ) throws(TreeSyncError) {
        let parent = try parentDirectory(of: path)
        let (made, temporary) = try place(parent, path) { create(parent, $0) }
        try check(fchownat(parent, made, h.uid, h.gid, AT_SYMLINK_NOFOLLOW), "chown", path)
        // Symlinks have no mode of their own on Linux; the others were just made here, so the
        // name is not a symlink and chmod cannot follow one.
        if h.kind != TreeStreamFormat.RecordKind.symlink.rawValue {
            try check(fchmodat(parent, made, mode_t(h.mode), 0), "chmod", path)
        }
        try setXattrs(xattrs, fd: parent, name: made, path: path, replacing: false)
        try check(utimensat(parent, made, times(h), AT_SYMLINK_NOFOLLOW), "set times of", path)
        if temporary { try replace(parent, made, with: path) }
    }

    /// Creates `path` with `create` (which returns 0 or -1 with errno) at its own name when
    /// nothing is there (the common case, one call), else under a temporary name to be renamed
    /// over the old entry by `replace`. Returns the name used and whether it is temporary.
    private func place(_ parent: Int32, _ path: TreePath, create: (UnsafePointer<CChar>) -> Int32) throws(TreeSyncError) -> (name: [CChar], temporary: Bool) {
        let name = cName(path)
        if name.withUnsafeBufferPointer({ create($0.baseAddress!) }) == 0 { return (name, false) }
        guard errno == EEXIST else { throw .io(operation: "create", path: joined(root, path), errno: errno) }
        let temporary = temporaryName()
        _ = unlinkat(parent, temporary, 0)
        try check(temporary.withUnsafeBufferPointer { create($0.baseAddress!) }, "create", path)
        return (temporary, true)
    }

    /// Renames the temporary entry over `path`, removing a directory in the way first.
    private func replace(_ parent: Int32, _ temporary: [CChar], with path: TreePath) throws(TreeSyncError) {
        let name = cName(path)
        var st = stat()
        if fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) == 0, st.st_mode & S_IFMT == S_IFDIR {
            walker.forget(path)
            try removeEntry(parent, name, path: path)
        }
        try check(renameat(parent, temporary, parent, name), "rename into place", path)
    }

    private func link(_ path: TreePath, to target: TreePath) throws(TreeSyncError) {
        guard !target.isRoot, target != path else { throw .malformed(record: record, "hard link \(path) to itself or the root") }
        let targetParent: Int32
        do { targetParent = dup(try walker.directory(target.parent!)) } catch {
            throw .malformed(record: record, "hard link target \(target) is not reachable on the target (\(error))")
        }
        guard targetParent >= 0 else { throw .io(operation: "dup", path: root, errno: errno) }
        defer { close(targetParent) }
        let targetName = cName(target)
        var targetStat = stat()
        guard fstatat(targetParent, targetName, &targetStat, AT_SYMLINK_NOFOLLOW) == 0, targetStat.st_mode & S_IFMT != S_IFDIR else {
            throw .malformed(record: record, "hard link target \(target) does not exist or is a directory")
        }
        let parent = try parentDirectory(of: path)
        var st = stat()
        if fstatat(parent, cName(path), &st, AT_SYMLINK_NOFOLLOW) == 0, st.st_dev == targetStat.st_dev, st.st_ino == targetStat.st_ino {
            report.hardlinks += 1
            return  // already this inode
        }
        // Flags 0: a link to a symlink links the symlink itself.
        let (made, temporary) = try place(parent, path) { linkat(targetParent, targetName, parent, $0, 0) }
        if temporary { try replace(parent, made, with: path) }
        report.hardlinks += 1
    }

    private func startFile(_ path: TreePath, _ h: TreeStreamFormat.RecordHeader, _ xattrs: [(name: [UInt8], value: [UInt8])]) throws(TreeSyncError) {
        let parent = dup(try parentDirectory(of: path))
        guard parent >= 0 else { throw .io(operation: "dup", path: root, errno: errno) }
        var fd: Int32 = -1
        let made: (name: [CChar], temporary: Bool)
        do {
            made = try place(parent, path) {
                fd = openat(parent, $0, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
                return fd >= 0 ? 0 : -1
            }
        } catch {
            close(parent)
            throw error
        }
        file = OpenFile(fd: fd, parentFD: parent, parent: path.parent!, path: path, name: made.name, temporary: made.temporary, header: h, xattrs: xattrs)
    }

    private func writeData(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws(TreeSyncError) {
        guard let file else { return }
        var done = 0
        while done < bytes.count {
            let n = pwrite(file.fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw .io(operation: "write", path: joined(root, file.path), errno: errno)
            }
            done += n
        }
        report.dataBytes += UInt64(bytes.count)
    }

    private func finishFile() throws(TreeSyncError) {
        guard let open = file else { return }
        let h = open.header
        // A hole at the end: the size is set here, holes between extents were never written.
        if open.extentEnd < h.payloadLength, ftruncate(open.fd, off_t(h.payloadLength)) != 0 {
            throw .io(operation: "size", path: joined(root, open.path), errno: errno)
        }
        try check(fchown(open.fd, h.uid, h.gid), "chown", open.path)
        try check(fchmod(open.fd, mode_t(h.mode)), "chmod", open.path)
        try setXattrs(open.xattrs, fd: open.fd, name: nil, path: open.path, replacing: false)
        try check(futimens(open.fd, times(h)), "set times of", open.path)
        close(open.fd)
        file?.fd = -1
        if open.temporary { try replace(open.parentFD, open.name, with: open.path) }
        close(open.parentFD)
        file = nil
        report.files += 1
    }

    /// Closes and removes a file left half-received (under its temporary name or, when its
    /// name was free, its own).
    private func discardFile() {
        guard let open = file else { return }
        if open.fd >= 0 { close(open.fd) }
        // Made by this stream either way: a half-received file is not left looking whole.
        _ = unlinkat(open.parentFD, open.name, 0)
        close(open.parentFD)
        file = nil
    }
}

extension Optional where Wrapped == [CChar] {
    func withOptionalCString<R, E: Error>(_ body: (UnsafePointer<CChar>?) throws(E) -> R) throws(E) -> R {
        switch self {
        case .none: return try body(nil)
        case let .some(array):
            return try array.withUnsafeBufferPointer { (buffer) throws(E) -> R in try body(buffer.baseAddress!) }
        }
    }
}
