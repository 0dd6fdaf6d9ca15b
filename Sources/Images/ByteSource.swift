import CCompression
import Glibc

/// A stream of bytes read in chunks, so a large image is never held in memory.
///
/// `read` fills at most `buffer.count` bytes and returns how many it wrote;
/// 0 means the end of the stream. Sources are used by one thread at a time.
public protocol ByteSource: AnyObject {
    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int
}

/// Reads a file descriptor it does not own.
public final class FileDescriptorSource: ByteSource {
    private let fd: Int32
    private let path: String

    /// - Parameter path: only used in error messages.
    public init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return 0 }
        while true {
            let n = Glibc.read(fd, base, buffer.count)
            if n >= 0 { return n }
            if errno == EINTR { continue }
            throw ImageError.io(operation: "read", path: path, errno: errno)
        }
    }
}

/// A byte array as a source; for tests and small in-memory archives.
public final class MemorySource: ByteSource {
    private let bytes: [UInt8]
    private var offset = 0

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let n = min(buffer.count, bytes.count - offset)
        guard n > 0 else { return 0 }
        bytes.withUnsafeBytes { src in
            buffer.baseAddress!.copyMemory(from: src.baseAddress! + offset, byteCount: n)
        }
        offset += n
        return n
    }
}

/// How a tarball is compressed, told by its first bytes.
public enum Compression: String, Sendable, CaseIterable {
    case none, gzip, xz

    /// File name suffix used when the original tarball is kept.
    public var tarballSuffix: String {
        switch self {
        case .none: return ".tar"
        case .gzip: return ".tar.gz"
        case .xz: return ".tar.xz"
        }
    }

    /// gzip starts with 1f 8b, xz with fd 37 7a 58 5a 00; anything else is
    /// read as a plain tar (and rejected by the tar reader if it is not one).
    public static func detect(magic: some Collection<UInt8>) -> Compression {
        let m = Array(magic.prefix(6))
        if m.count >= 2, m[0] == 0x1f, m[1] == 0x8b { return .gzip }
        if m == [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00] { return .xz }
        return .none
    }
}

/// Inflates a gzip stream (several concatenated members too, as gzip allows).
public final class GzipSource: ByteSource {
    private let input: ByteSource
    // zlib keeps a pointer back to its z_stream, so it must not move: heap-allocated.
    private let stream: UnsafeMutablePointer<z_stream>
    private var inputBuffer: UnsafeMutableRawBufferPointer
    private var inputEnded = false
    private var memberEnded = false
    private var finished = false

    public init(_ input: ByteSource, chunkSize: Int = 64 * 1024) throws {
        self.input = input
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        inputBuffer = .allocate(byteCount: chunkSize, alignment: 16)
        let rc = ccompression_inflate_init_gzip(stream)
        guard rc == Z_OK else {
            stream.deallocate()
            inputBuffer.deallocate()
            throw ImageError.decompression("zlib init failed (\(rc))")
        }
    }

    deinit {
        inflateEnd(stream)
        stream.deallocate()
        inputBuffer.deallocate()
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard let out = buffer.baseAddress, buffer.count > 0, !finished else { return 0 }
        stream.pointee.next_out = out.assumingMemoryBound(to: Bytef.self)
        stream.pointee.avail_out = uInt(min(buffer.count, Int(UInt32.max)))
        while stream.pointee.avail_out > 0 {
            if stream.pointee.avail_in == 0 && !inputEnded {
                let n = try input.read(into: inputBuffer)
                if n == 0 {
                    inputEnded = true
                } else {
                    stream.pointee.next_in = inputBuffer.baseAddress!.assumingMemoryBound(to: Bytef.self)
                    stream.pointee.avail_in = uInt(n)
                }
            }
            if memberEnded {
                // One gzip member is complete; another may follow.
                if stream.pointee.avail_in == 0 && inputEnded { finished = true; break }
                guard inflateReset(stream) == Z_OK else { throw ImageError.decompression("zlib reset failed") }
                memberEnded = false
            }
            if stream.pointee.avail_in == 0 && inputEnded {
                throw ImageError.decompression("gzip stream is truncated")
            }
            let rc = inflate(stream, Z_NO_FLUSH)
            switch rc {
            case Z_OK, Z_BUF_ERROR:
                continue
            case Z_STREAM_END:
                memberEnded = true
            default:
                let why = stream.pointee.msg.map { String(cString: $0) } ?? "error \(rc)"
                throw ImageError.decompression("gzip: \(why)")
            }
        }
        return buffer.count - Int(stream.pointee.avail_out)
    }
}

/// Decodes an xz stream (concatenated streams too) with a bounded memory use.
public final class XZSource: ByteSource {
    private let input: ByteSource
    // liblzma's internal state refers to the lzma_stream: keep it at one address.
    private let stream: UnsafeMutablePointer<lzma_stream>
    private var inputBuffer: UnsafeMutableRawBufferPointer
    private var inputEnded = false
    private var finished = false

    /// - Parameter memoryLimit: the decoder refuses streams needing more
    ///   (xz -9 needs ~65 MiB), so a crafted header cannot make us allocate gigabytes.
    public init(_ input: ByteSource, memoryLimit: UInt64 = 256 << 20, chunkSize: Int = 64 * 1024) throws {
        self.input = input
        stream = .allocate(capacity: 1)
        stream.initialize(to: lzma_stream())
        inputBuffer = .allocate(byteCount: chunkSize, alignment: 16)
        let rc = lzma_stream_decoder(stream, memoryLimit, CCOMPRESSION_LZMA_CONCATENATED)
        guard rc == LZMA_OK else {
            stream.deallocate()
            inputBuffer.deallocate()
            throw ImageError.decompression("liblzma init failed (\(rc.rawValue))")
        }
    }

    deinit {
        lzma_end(stream)
        stream.deallocate()
        inputBuffer.deallocate()
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard let out = buffer.baseAddress, buffer.count > 0, !finished else { return 0 }
        stream.pointee.next_out = out.assumingMemoryBound(to: UInt8.self)
        stream.pointee.avail_out = buffer.count
        while stream.pointee.avail_out > 0 {
            if stream.pointee.avail_in == 0 && !inputEnded {
                let n = try input.read(into: inputBuffer)
                if n == 0 {
                    inputEnded = true
                } else {
                    stream.pointee.next_in = UnsafePointer(inputBuffer.baseAddress!.assumingMemoryBound(to: UInt8.self))
                    stream.pointee.avail_in = n
                }
            }
            // LZMA_CONCATENATED needs LZMA_FINISH to know no further stream follows.
            let rc = lzma_code(stream, inputEnded ? LZMA_FINISH : LZMA_RUN)
            switch rc {
            case LZMA_OK:
                continue
            case LZMA_STREAM_END:
                finished = true
            case LZMA_BUF_ERROR:
                throw ImageError.decompression("xz stream is truncated")
            case LZMA_MEMLIMIT_ERROR:
                throw ImageError.decompression("xz stream needs more memory than the limit; recompress it with a smaller dictionary (xz -6)")
            case LZMA_FORMAT_ERROR, LZMA_DATA_ERROR:
                throw ImageError.decompression("xz data is corrupt")
            default:
                throw ImageError.decompression("xz error \(rc.rawValue)")
            }
            if finished { break }
        }
        return buffer.count - stream.pointee.avail_out
    }
}

/// Wraps `source` in the decompressor `compression` calls for.
public func decompressing(_ source: ByteSource, _ compression: Compression) throws -> ByteSource {
    switch compression {
    case .none: return source
    case .gzip: return try GzipSource(source)
    case .xz: return try XZSource(source)
    }
}
