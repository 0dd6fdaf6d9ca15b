/// Streams a tar archive entry by entry from a `ByteSource`.
///
/// Supports ustar, GNU long names and links ('L'/'K') and pax extended
/// headers ('x': path, linkpath, size, uid, gid, mtime; 'g' is skipped).
/// Every header's checksum is verified. Memory use is one read buffer plus
/// the longest name, whatever the archive size.
///
/// Usage: call `next()` for each entry; optionally `readData` to stream its
/// content (unread content is skipped by the following `next()`).
public final class TarReader {
    private let source: ByteSource
    private let maxBytes: Int64?
    private let buffer: UnsafeMutableRawBufferPointer
    private var start = 0
    private var end = 0
    private var sourceEnded = false
    private var finished = false

    /// Content bytes of the current entry not yet handed out, and its padding.
    private var remaining: Int64 = 0
    private var padding = 0

    /// Bytes of the (decompressed) archive consumed so far.
    public private(set) var bytesRead: Int64 = 0

    /// Long names and pax headers are small; a bigger one is an attack or garbage.
    static let maxMetaEntrySize: Int64 = 1 << 20

    /// - Parameter maxBytes: the archive (after decompression) may not be
    ///   longer than this; `ImageError.tooLarge` is thrown as soon as a header
    ///   announces more, before its data is read.
    public init(_ source: ByteSource, maxBytes: Int64? = nil, bufferSize: Int = 64 * 1024) {
        precondition(bufferSize >= TarHeaderBlock.blockSize)
        self.source = source
        self.maxBytes = maxBytes
        buffer = .allocate(byteCount: bufferSize, alignment: 16)
    }

    deinit { buffer.deallocate() }

    /// The next entry, or nil at the end-of-archive marker.
    /// Throws if the archive ends without that marker (a truncated download).
    public func next() throws -> TarEntry? {
        guard !finished else { return nil }
        try skip(remaining + Int64(padding))
        remaining = 0
        padding = 0

        var longName: String?
        var longLink: String?
        var pax = PaxOverrides()
        while true {
            guard let block = try takeBlock() else {
                throw ImageError.corruptArchive("archive ends without an end-of-archive marker (truncated?)")
            }
            if TarHeaderBlock.isZeroBlock(block) {
                // One zero block is enough; a second one (and any trailing
                // padding to the record size) is not read.
                finished = true
                return nil
            }
            let header = try TarHeaderBlock.parse(block)
            let size = pax.size ?? header.size
            switch header.type {
            case .gnuLongName, .gnuLongLink, .paxExtended, .paxGlobal:
                guard header.size <= Self.maxMetaEntrySize else {
                    throw ImageError.corruptArchive("extended header of \(header.size) bytes is larger than \(Self.maxMetaEntrySize)")
                }
                let data = try takeEntryData(header.size)
                switch header.type {
                case .gnuLongName: longName = try Self.nulTerminated(data, what: "GNU long name")
                case .gnuLongLink: longLink = try Self.nulTerminated(data, what: "GNU long link name")
                case .paxExtended: pax = try PaxOverrides.parse(data)
                default: break  // global pax headers carry nothing we use
                }
            case .entry(let kind):
                var entry = TarEntry(
                    path: pax.path ?? longName ?? header.name, kind: kind,
                    linkTarget: pax.linkPath ?? longLink ?? header.linkName, mode: header.mode,
                    uid: pax.uid ?? header.uid, gid: pax.gid ?? header.gid, size: 0,
                    mtime: pax.mtime?.seconds ?? header.mtime, mtimeNanoseconds: pax.mtime?.nanoseconds ?? 0,
                    deviceMajor: header.deviceMajor, deviceMinor: header.deviceMinor
                )
                // Like other readers, data follows only regular files, whatever
                // a link's or directory's size field says.
                let dataSize = kind == .regular ? size : 0
                entry.size = dataSize
                try checkBudget(adding: dataSize)
                remaining = dataSize
                padding = Self.padding(for: dataSize)
                return entry
            }
        }
    }

    /// Streams the rest of the current entry's content to `body` in chunks.
    public func readData(_ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        while remaining > 0 {
            let chunk = try available(max: Int(min(remaining, Int64(Int.max))))
            try body(chunk)
            consume(chunk.count)
            remaining -= Int64(chunk.count)
        }
    }

    // MARK: - Buffered input

    private static func padding(for size: Int64) -> Int {
        let r = Int(size % Int64(TarHeaderBlock.blockSize))
        return r == 0 ? 0 : TarHeaderBlock.blockSize - r
    }

    private func checkBudget(adding n: Int64) throws {
        guard let maxBytes else { return }
        let (total, overflow) = bytesRead.addingReportingOverflow(n)
        if overflow || total > maxBytes { throw ImageError.tooLarge(limit: maxBytes) }
    }

    /// Up to `max` buffered bytes (at least one), reading more if the buffer is empty.
    private func available(max: Int) throws -> UnsafeRawBufferPointer {
        if start == end {
            start = 0
            end = 0
            if !sourceEnded {
                let n = try source.read(into: buffer)
                if n == 0 { sourceEnded = true }
                end = n
            }
            if end == 0 {
                throw ImageError.corruptArchive("archive ends in the middle of an entry (truncated?)")
            }
        }
        return UnsafeRawBufferPointer(rebasing: buffer[start..<(start + min(max, end - start))])
    }

    private func consume(_ n: Int) {
        start += n
        bytesRead += Int64(n)
    }

    private func skip(_ n: Int64) throws {
        var left = n
        while left > 0 {
            let chunk = try available(max: Int(min(left, Int64(Int.max))))
            consume(chunk.count)
            left -= Int64(chunk.count)
        }
    }

    /// A whole header block, or nil if the stream ends exactly here.
    private func takeBlock() throws -> [UInt8]? {
        let size = TarHeaderBlock.blockSize
        if end - start < size {
            // Move the tail to the front and fill up to a whole block.
            if start > 0 {
                buffer.baseAddress!.copyMemory(from: buffer.baseAddress! + start, byteCount: end - start)
                end -= start
                start = 0
            }
            while end < size && !sourceEnded {
                let n = try source.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[end...]))
                if n == 0 { sourceEnded = true }
                end += n
            }
            if end == 0 { return nil }
            if end < size { throw ImageError.corruptArchive("archive ends inside a header block (truncated?)") }
        }
        try checkBudget(adding: Int64(size))
        let block = Array(UnsafeRawBufferPointer(rebasing: buffer[start..<(start + size)]))
        consume(size)
        return block
    }

    private func takeEntryData(_ size: Int64) throws -> [UInt8] {
        try checkBudget(adding: size)
        var data: [UInt8] = []
        data.reserveCapacity(Int(size))
        remaining = size
        try readData { data.append(contentsOf: $0) }
        try skip(Int64(Self.padding(for: size)))
        return data
    }

    private static func nulTerminated(_ data: [UInt8], what: String) throws -> String {
        guard let s = String(validating: data.prefix { $0 != 0 }, as: UTF8.self) else {
            throw ImageError.corruptArchive("\(what) is not valid UTF-8")
        }
        return s
    }
}
