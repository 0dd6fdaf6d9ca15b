/// One member of a tar archive as the reader reports it, after GNU long-name
/// and pax overrides have been applied.
public struct TarEntry: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case regular, directory, symlink, hardlink, characterDevice, blockDevice, fifo
    }

    public var path: String
    public var kind: Kind
    /// Symlink target, or the archive path a hard link refers to; empty otherwise.
    public var linkTarget: String
    /// Permission bits including setuid, setgid and sticky (mask 0o7777).
    public var mode: UInt32
    public var uid: Int
    public var gid: Int
    /// Data bytes that follow the header; 0 for every kind but `.regular`.
    public var size: Int64
    public var mtime: Int64
    public var mtimeNanoseconds: Int32
    public var deviceMajor: UInt32
    public var deviceMinor: UInt32

    public init(
        path: String, kind: Kind, linkTarget: String = "", mode: UInt32, uid: Int = 0, gid: Int = 0,
        size: Int64 = 0, mtime: Int64 = 0, mtimeNanoseconds: Int32 = 0, deviceMajor: UInt32 = 0, deviceMinor: UInt32 = 0
    ) {
        self.path = path
        self.kind = kind
        self.linkTarget = linkTarget
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.size = size
        self.mtime = mtime
        self.mtimeNanoseconds = mtimeNanoseconds
        self.deviceMajor = deviceMajor
        self.deviceMinor = deviceMinor
    }
}

/// What a 512-byte header block says, before long-name/pax overrides.
/// Pure parsing: no I/O, so every rule here is unit-tested on crafted blocks.
struct TarHeaderBlock: Equatable {
    enum TypeFlag: Equatable {
        case entry(TarEntry.Kind)
        case gnuLongName, gnuLongLink, paxExtended, paxGlobal
    }

    var name: String
    var type: TypeFlag
    var linkName: String
    var mode: UInt32
    var uid: Int
    var gid: Int
    var size: Int64
    var mtime: Int64
    var deviceMajor: UInt32
    var deviceMinor: UInt32

    static let blockSize = 512

    /// True when the block is all zeros: the end-of-archive marker.
    static func isZeroBlock(_ block: [UInt8]) -> Bool {
        block.allSatisfy { $0 == 0 }
    }

    /// Parses one header block. Throws `corruptArchive` on a checksum mismatch,
    /// a malformed number, or a type we do not unpack (sparse, multi-volume, ...).
    static func parse(_ block: [UInt8]) throws -> TarHeaderBlock {
        precondition(block.count == blockSize)
        let stored = try parseNumber(block[148..<156], field: "checksum")
        // The checksum is the byte sum with its own field read as spaces.
        // Some old writers summed signed chars; accept either.
        var unsignedSum: Int64 = 0
        var signedSum: Int64 = 0
        for (i, b) in block.enumerated() {
            let v: UInt8 = (148..<156).contains(i) ? 0x20 : b
            unsignedSum += Int64(v)
            signedSum += Int64(Int8(bitPattern: v))
        }
        guard stored == unsignedSum || stored == signedSum else {
            throw ImageError.corruptArchive("header checksum mismatch (stored \(stored), computed \(unsignedSum))")
        }

        var name = try string(block[0..<100], field: "name")
        // Only POSIX ustar ("ustar\0") has a name prefix; old GNU headers keep
        // other data (atime, ctime) in that area.
        let magic = Array(block[257..<263])
        if magic == Array("ustar\0".utf8) {
            let prefix = try string(block[345..<500], field: "prefix")
            if !prefix.isEmpty { name = prefix + "/" + name }
        }

        let flag = block[156]
        let type: TypeFlag
        switch flag {
        case UInt8(ascii: "0"), 0, UInt8(ascii: "7"): type = .entry(.regular)
        case UInt8(ascii: "1"): type = .entry(.hardlink)
        case UInt8(ascii: "2"): type = .entry(.symlink)
        case UInt8(ascii: "3"): type = .entry(.characterDevice)
        case UInt8(ascii: "4"): type = .entry(.blockDevice)
        case UInt8(ascii: "5"): type = .entry(.directory)
        case UInt8(ascii: "6"): type = .entry(.fifo)
        case UInt8(ascii: "L"): type = .gnuLongName
        case UInt8(ascii: "K"): type = .gnuLongLink
        case UInt8(ascii: "x"): type = .paxExtended
        case UInt8(ascii: "g"): type = .paxGlobal
        default:
            let shown = (32..<127).contains(flag) ? "'\(Character(UnicodeScalar(flag)))'" : "\(flag)"
            throw ImageError.corruptArchive("entry \(name.isEmpty ? "?" : name) has unsupported tar type \(shown); repack the image without sparse or multi-volume entries")
        }

        let size = try parseNumber(block[124..<136], field: "size")
        guard size >= 0 else { throw ImageError.corruptArchive("entry \(name) has a negative size") }
        let mode = try parseNumber(block[100..<108], field: "mode")
        let uid = try parseNumber(block[108..<116], field: "uid")
        let gid = try parseNumber(block[116..<124], field: "gid")
        guard (0...Int64(UInt32.max)).contains(uid), (0...Int64(UInt32.max)).contains(gid) else {
            throw ImageError.corruptArchive("entry \(name) has an out-of-range uid or gid")
        }
        let major = try parseNumber(block[329..<337], field: "devmajor")
        let minor = try parseNumber(block[337..<345], field: "devminor")

        return TarHeaderBlock(
            name: name, type: type, linkName: try string(block[157..<257], field: "linkname"),
            mode: UInt32(truncatingIfNeeded: mode) & 0o7777, uid: Int(uid), gid: Int(gid), size: size,
            mtime: try parseNumber(block[136..<148], field: "mtime"),
            deviceMajor: UInt32(truncatingIfNeeded: major), deviceMinor: UInt32(truncatingIfNeeded: minor)
        )
    }

    /// A NUL-terminated (or full-width) text field.
    static func string(_ field: ArraySlice<UInt8>, field name: String) throws -> String {
        let bytes = field.prefix { $0 != 0 }
        guard let s = String(validating: bytes, as: UTF8.self) else {
            throw ImageError.corruptArchive("tar \(name) field is not valid UTF-8")
        }
        return s
    }

    /// Octal text (space/NUL padded), or GNU base-256 when the high bit of the
    /// first byte is set (0x80 positive, 0xff negative two's complement).
    static func parseNumber(_ field: ArraySlice<UInt8>, field name: String) throws -> Int64 {
        guard let first = field.first else { return 0 }
        if first & 0x80 != 0 {
            let negative = first == 0xff
            var value: Int64 = negative ? -1 : 0
            var significant = 0
            for (i, b) in field.enumerated() {
                let byte = i == 0 ? (negative ? b : b & 0x7f) : b
                if significant > 0 || byte != (negative ? 0xff : 0) { significant += 1 }
                guard significant <= 8 else {
                    throw ImageError.corruptArchive("tar \(name) field overflows 64 bits")
                }
                value = (value << 8) | Int64(byte)
            }
            return value
        }
        var value: Int64 = 0
        var started = false
        var ended = false
        for b in field {
            switch b {
            case UInt8(ascii: "0")...UInt8(ascii: "7"):
                guard !ended else { throw ImageError.corruptArchive("tar \(name) field has a digit after its end") }
                started = true
                let (shifted, overflow) = value.multipliedReportingOverflow(by: 8)
                guard !overflow else { throw ImageError.corruptArchive("tar \(name) field overflows 64 bits") }
                value = shifted + Int64(b - UInt8(ascii: "0"))
            case 0, UInt8(ascii: " "):
                if started { ended = true }
            default:
                throw ImageError.corruptArchive("tar \(name) field is not an octal number")
            }
        }
        return value
    }
}

/// Values taken from pax extended headers ('x'). Unknown keys are ignored.
struct PaxOverrides: Equatable {
    var path: String?
    var linkPath: String?
    var size: Int64?
    var uid: Int?
    var gid: Int?
    var mtime: (seconds: Int64, nanoseconds: Int32)?

    static func == (a: PaxOverrides, b: PaxOverrides) -> Bool {
        a.path == b.path && a.linkPath == b.linkPath && a.size == b.size && a.uid == b.uid && a.gid == b.gid
            && a.mtime?.seconds == b.mtime?.seconds && a.mtime?.nanoseconds == b.mtime?.nanoseconds
    }

    /// Parses records of the form "<length> <key>=<value>\n", where length
    /// counts the whole record including itself and the newline.
    static func parse(_ data: [UInt8]) throws -> PaxOverrides {
        var result = PaxOverrides()
        var i = 0
        while i < data.count {
            if data[i] == 0 { break }  // some writers pad with NULs
            guard let space = data[i...].firstIndex(of: UInt8(ascii: " ")),
                  let length = Int(String(decoding: data[i..<space], as: UTF8.self)),
                  length > space - i + 1, i + length <= data.count,
                  data[i + length - 1] == UInt8(ascii: "\n")
            else { throw ImageError.corruptArchive("malformed pax extended header record") }
            let record = data[(space + 1)..<(i + length - 1)]
            guard let eq = record.firstIndex(of: UInt8(ascii: "=")) else {
                throw ImageError.corruptArchive("pax record without '='")
            }
            let key = String(decoding: record[record.startIndex..<eq], as: UTF8.self)
            guard let value = String(validating: record[(eq + 1)...], as: UTF8.self) else {
                throw ImageError.corruptArchive("pax \(key) value is not valid UTF-8")
            }
            switch key {
            case "path": result.path = value
            case "linkpath": result.linkPath = value
            case "size":
                guard let v = Int64(value), v >= 0 else { throw ImageError.corruptArchive("pax size \(value) is not a size") }
                result.size = v
            case "uid":
                guard let v = Int(value), (0...Int(UInt32.max)).contains(v) else { throw ImageError.corruptArchive("pax uid \(value) is invalid") }
                result.uid = v
            case "gid":
                guard let v = Int(value), (0...Int(UInt32.max)).contains(v) else { throw ImageError.corruptArchive("pax gid \(value) is invalid") }
                result.gid = v
            case "mtime":
                guard let t = parseTime(value) else { throw ImageError.corruptArchive("pax mtime \(value) is invalid") }
                result.mtime = t
            case let k where k.hasPrefix("GNU.sparse."):
                throw ImageError.corruptArchive("sparse files are not supported; repack the image without --sparse")
            default:
                break
            }
            i += length
        }
        return result
    }

    /// "1700000000.5" → (1700000000, 500000000); "-1.25" → (-2, 750000000).
    static func parseTime(_ text: String) -> (seconds: Int64, nanoseconds: Int32)? {
        let parts = text.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        guard let whole = Int64(parts[0]) ?? (parts[0] == "-" ? 0 : nil) else { return nil }
        var nanos: Int64 = 0
        if parts.count == 2 {
            let digits = parts[1].prefix(9)
            guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
            nanos = Int64(digits + String(repeating: "0", count: 9 - digits.count))!
        }
        if text.hasPrefix("-") && nanos > 0 {
            return (whole - 1, Int32(1_000_000_000 - nanos))
        }
        return (whole, Int32(nanos))
    }
}
