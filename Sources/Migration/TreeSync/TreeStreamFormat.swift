import Glibc

/// The wire format of a tree round (`TreeStreamEncoder` writes it, `TreeStreamApplier` reads
/// it). All integers are little-endian.
///
/// Stream header, 16 bytes: the magic `LXSWTREE`, the version (UInt32, 1), 4 zero bytes.
///
/// Then records. Each record is a 64-byte header, then the path (`pathLength` bytes), then the
/// xattr block (`xattrLength` bytes), then its payload:
///
///     0  kind          UInt8   (RecordKind)
///     1  reserved      3 bytes, zero
///     4  pathLength    UInt32  relative path, components 1...255 bytes, no NUL, no "." or
///                              "..", no empty component, not absolute; at most 4096 bytes;
///                              empty only for the root directory's own metadata
///     8  xattrLength   UInt32
///     12 mode          UInt32  permission bits (07777)
///     16 uid           UInt32
///     20 gid           UInt32
///     24 rdevMajor     UInt32  devices only
///     28 rdevMinor     UInt32
///     32 atimeSeconds  Int64
///     40 atimeNanos    UInt32
///     44 mtimeNanos    UInt32
///     48 mtimeSeconds  Int64
///     56 payloadLength UInt64  see below
///
/// Payloads:
/// - remove, directory, devices, fifo, socket: none (`payloadLength` 0).
/// - symlink: the link's target, verbatim (1...4095 bytes, no NUL); never resolved.
/// - hardlink: the path (same rules as record paths) of an entry sent earlier in the stream
///   or already on the target; the record's own metadata is ignored (the inode has it).
/// - regular: `payloadLength` is the file's size. Data extents follow, each a 16-byte header
///   (offset UInt64, length UInt64, length > 0, ascending and not overlapping, inside the
///   size) and `length` bytes; the list ends with offset `UInt64.max`, length 0. What lies
///   between extents is a hole: the target truncates to the size and writes only the extents.
/// - end (kind 255, empty path, no xattrs, `payloadLength` 16): the number of records before
///   it (UInt64) and the number of extent data bytes in the stream (UInt64). A stream without
///   it, with other counts, or with bytes after it is refused: a cut stream is detected.
///
/// The xattr block is a list of attributes, each: name length (UInt16, 1...255), value length
/// (UInt32, at most 65536), name (no NUL), value. Names are in the `trusted.`, `user.` and
/// `security.` namespaces, or `system.posix_acl_access`/`system.posix_acl_default`.
public enum TreeStreamFormat {
    public static let magic: [UInt8] = Array("LXSWTREE".utf8)
    public static let version: UInt32 = 1
    public static let streamHeaderSize = 16
    public static let recordHeaderSize = 64
    public static let extentHeaderSize = 16
    public static let endPayloadSize = 16
    public static let maxPathLength = 4096
    public static let maxComponentLength = 255
    public static let maxSymlinkTarget = 4095
    public static let maxXattrName = 255
    public static let maxXattrValue = 65536
    /// The offset of the extent that ends a regular file's list.
    public static let endOfExtents = UInt64.max

    public enum RecordKind: UInt8, Sendable {
        case remove = 1
        case directory = 2
        case regular = 3
        case hardlink = 4
        case symlink = 5
        case characterDevice = 6
        case blockDevice = 7
        case fifo = 8
        case socket = 9
        case end = 255

        init(_ kind: TreeEntryKind) {
            switch kind {
            case .regular: self = .regular
            case .directory: self = .directory
            case .symlink: self = .symlink
            case .characterDevice: self = .characterDevice
            case .blockDevice: self = .blockDevice
            case .fifo: self = .fifo
            case .socket: self = .socket
            }
        }
    }

    /// The fixed part of a record.
    struct RecordHeader: Equatable {
        var kind: UInt8 = 0
        var pathLength: UInt32 = 0
        var xattrLength: UInt32 = 0
        var mode: UInt32 = 0
        var uid: UInt32 = 0
        var gid: UInt32 = 0
        var rdevMajor: UInt32 = 0
        var rdevMinor: UInt32 = 0
        var atimeSeconds: Int64 = 0
        var atimeNanoseconds: UInt32 = 0
        var mtimeNanoseconds: UInt32 = 0
        var mtimeSeconds: Int64 = 0
        var payloadLength: UInt64 = 0
        /// Non-zero reserved bytes: refused.
        var reserved: UInt32 = 0

        func write(to out: UnsafeMutableRawPointer) {
            out.storeBytes(of: kind, as: UInt8.self)
            out.storeBytes(of: UInt8(0), toByteOffset: 1, as: UInt8.self)
            out.storeBytes(of: UInt16(0), toByteOffset: 2, as: UInt16.self)
            store(pathLength, out, 4)
            store(xattrLength, out, 8)
            store(mode, out, 12)
            store(uid, out, 16)
            store(gid, out, 20)
            store(rdevMajor, out, 24)
            store(rdevMinor, out, 28)
            store(atimeSeconds, out, 32)
            store(atimeNanoseconds, out, 40)
            store(mtimeNanoseconds, out, 44)
            store(mtimeSeconds, out, 48)
            store(payloadLength, out, 56)
        }

        init() {}

        init(reading raw: UnsafeRawPointer) {
            kind = raw.load(as: UInt8.self)
            reserved = UInt32(raw.load(fromByteOffset: 1, as: UInt8.self))
                | UInt32(load(raw, 2) as UInt16)
            pathLength = load(raw, 4)
            xattrLength = load(raw, 8)
            mode = load(raw, 12)
            uid = load(raw, 16)
            gid = load(raw, 20)
            rdevMajor = load(raw, 24)
            rdevMinor = load(raw, 28)
            atimeSeconds = load(raw, 32)
            atimeNanoseconds = load(raw, 40)
            mtimeNanoseconds = load(raw, 44)
            mtimeSeconds = load(raw, 48)
            payloadLength = load(raw, 56)
        }
    }
}

@inline(__always)
func store<T: FixedWidthInteger>(_ value: T, _ out: UnsafeMutableRawPointer, _ offset: Int) {
    out.storeBytes(of: value.littleEndian, toByteOffset: offset, as: T.self)
}

@inline(__always)
func load<T: FixedWidthInteger>(_ raw: UnsafeRawPointer, _ offset: Int) -> T {
    T(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: T.self))
}

/// Why a tree could not be scanned, sent or applied. Stream errors name the record (1 is the
/// first record after the stream header, 0 the header itself).
public enum TreeSyncError: Error, Equatable, CustomStringConvertible {
    /// A system call failed on a path (the root's path joined with the entry's).
    case io(operation: String, path: String, errno: Int32)
    /// The stream breaks the format.
    case malformed(record: Int, String)
    /// The stream asks for more than the applier's limits.
    case overLimit(record: Int, String)
    /// The stream ended before its end record.
    case truncated(record: Int, String)
    /// An entry the applier's policy refuses (a device node other than a whiteout).
    case refused(record: Int, path: String, String)

    public var description: String {
        let discard = "the target directory is incomplete: discard it and send the tree again"
        switch self {
        case let .io(operation, path, errno):
            return "cannot \(operation) \(path): \(String(cString: strerror(errno)))"
        case let .malformed(record, reason):
            return "tree stream malformed at record \(record): \(reason); \(discard)"
        case let .overLimit(record, reason):
            return "tree stream over the receiver's limits at record \(record): \(reason); \(discard) (or raise the limits if the tree is really that large)"
        case let .truncated(record, reason):
            return "tree stream cut short at record \(record): \(reason); \(discard)"
        case let .refused(record, path, reason):
            return "tree stream record \(record) (\(path)) refused: \(reason); \(discard)"
        }
    }
}
