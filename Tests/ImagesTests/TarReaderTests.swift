import Testing
@testable import Images

@Suite struct TarHeaderTests {
    @Test func octalNumbersWithSpacesAndNuls() throws {
        #expect(try TarHeaderBlock.parseNumber(ArraySlice(Array("0000755\0".utf8)), field: "mode") == 0o755)
        #expect(try TarHeaderBlock.parseNumber(ArraySlice(Array("  1234 \0".utf8)), field: "x") == 0o1234)
        #expect(try TarHeaderBlock.parseNumber(ArraySlice([UInt8](repeating: 0, count: 8)), field: "x") == 0)
        #expect(throws: ImageError.self) { try TarHeaderBlock.parseNumber(ArraySlice(Array("0000789\0".utf8)), field: "x") }
        #expect(throws: ImageError.self) { try TarHeaderBlock.parseNumber(ArraySlice(Array("12 34\0\0\0".utf8)), field: "x") }
    }

    @Test func base256Numbers() throws {
        // GNU writes sizes >= 8 GiB as 0x80 followed by big-endian bytes.
        var field = [UInt8](repeating: 0, count: 12)
        field[0] = 0x80
        field[7] = 0x02  // 2 << 32
        #expect(try TarHeaderBlock.parseNumber(ArraySlice(field), field: "size") == 2 << 32)
        let negative: [UInt8] = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]
        #expect(try TarHeaderBlock.parseNumber(ArraySlice(negative), field: "mtime") == -2)
        var huge = [UInt8](repeating: 0xff, count: 12)
        huge[0] = 0x80
        #expect(throws: ImageError.self) { try TarHeaderBlock.parseNumber(ArraySlice(huge), field: "size") }
    }

    @Test func parsesAWrittenHeader() throws {
        var w = TarWriter()
        w.entry("rootfs/usr/bin/passwd", type: "0", mode: 0o4755, uid: 1000, gid: 5, mtime: 1_234_567_890, data: Array("x".utf8))
        let h = try TarHeaderBlock.parse(Array(w.bytes[0..<512]))
        #expect(h.name == "rootfs/usr/bin/passwd")
        #expect(h.type == .entry(.regular))
        #expect(h.mode == 0o4755)
        #expect(h.uid == 1000 && h.gid == 5)
        #expect(h.size == 1)
        #expect(h.mtime == 1_234_567_890)
    }

    @Test func checksumMismatchIsRejected() {
        var w = TarWriter()
        w.file("metadata.yaml", "x", mode: 0o644)
        var block = Array(w.bytes[0..<512])
        block[0] ^= 1  // one flipped bit in the name
        #expect(throws: ImageError.self) { try TarHeaderBlock.parse(block) }
    }

    @Test func unsupportedTypeIsRejected() {
        var w = TarWriter()
        w.entry("rootfs/sparse", type: "S")
        #expect {
            try TarHeaderBlock.parse(Array(w.bytes[0..<512]))
        } throws: { error in
            "\(error)".contains("unsupported tar type 'S'")
        }
    }

    @Test func paxRecords() throws {
        let records = [("path", "rootfs/a/very/long/x"), ("linkpath", "target"), ("size", "42"), ("mtime", "1700000000.123456789"), ("comment", "ignored")]
        let data = records.flatMap { TarWriter.paxRecord($0.0, $0.1) }
        #expect(String(decoding: data.prefix(29), as: UTF8.self) == "29 path=rootfs/a/very/long/x\n")
        let pax = try PaxOverrides.parse(data)
        #expect(pax.path == "rootfs/a/very/long/x")
        #expect(pax.linkPath == "target")
        #expect(pax.size == 42)
        #expect(pax.mtime?.seconds == 1_700_000_000)
        #expect(pax.mtime?.nanoseconds == 123_456_789)
        #expect(throws: ImageError.self) { try PaxOverrides.parse(Array("99 path=x\n".utf8)) }
        #expect(throws: ImageError.self) { try PaxOverrides.parse(Array("5 a\n".utf8)) }
    }

    @Test func paxTimes() {
        #expect(PaxOverrides.parseTime("12") ?? (0, 0) == (12, 0))
        #expect(PaxOverrides.parseTime("12.5") ?? (0, 0) == (12, 500_000_000))
        #expect(PaxOverrides.parseTime("-1.25") ?? (0, 0) == (-2, 750_000_000))
        #expect(PaxOverrides.parseTime("abc") == nil)
    }
}

@Suite struct TarReaderTests {
    func entries(_ bytes: [UInt8], chunk: Int = 7) throws -> [(TarEntry, String)] {
        let reader = TarReader(ChunkedSource(bytes, chunk: chunk), bufferSize: 512)
        var out: [(TarEntry, String)] = []
        while let e = try reader.next() {
            var data: [UInt8] = []
            try reader.readData { data += $0 }
            out.append((e, String(decoding: data, as: UTF8.self)))
        }
        return out
    }

    @Test func readsEntriesOfEveryKind() throws {
        var w = TarWriter()
        w.dir("rootfs/")
        w.file("rootfs/hello", String(repeating: "hello ", count: 200), mode: 0o2755, uid: 3, gid: 4)
        w.symlink("rootfs/link", to: "/bin/busybox")
        w.hardlink("rootfs/hard", to: "rootfs/hello")
        w.entry("rootfs/null", type: "3", mode: 0o666, devMajor: 1, devMinor: 3)
        w.entry("rootfs/fifo", type: "6", mode: 0o600)
        w.end()
        let got = try entries(w.bytes)
        #expect(got.map(\.0.kind) == [.directory, .regular, .symlink, .hardlink, .characterDevice, .fifo])
        #expect(got[1].1 == String(repeating: "hello ", count: 200))
        #expect(got[1].0.mode == 0o2755 && got[1].0.uid == 3 && got[1].0.gid == 4)
        #expect(got[2].0.linkTarget == "/bin/busybox")
        #expect(got[3].0.linkTarget == "rootfs/hello")
        #expect(got[4].0.deviceMajor == 1 && got[4].0.deviceMinor == 3)
    }

    @Test func unreadDataIsSkipped() throws {
        var w = TarWriter()
        w.file("a", String(repeating: "a", count: 1000))
        w.file("b", "bee")
        w.end()
        let reader = TarReader(MemorySource(w.bytes))
        #expect(try reader.next()?.path == "a")
        let b = try #require(try reader.next())
        var data: [UInt8] = []
        try reader.readData { data += $0 }
        #expect(b.path == "b" && data == Array("bee".utf8))
        #expect(try reader.next() == nil)
    }

    @Test func gnuLongNamesAndPaxOverrides() throws {
        let long = "rootfs/" + String(repeating: "d/", count: 80) + "file"
        let longTarget = String(repeating: "../", count: 50) + "target"
        var w = TarWriter()
        w.gnuLongName(long)
        w.file("rootfs/truncated-name", "one")
        w.entry("././@LongLink", type: "K", data: Array(longTarget.utf8) + [0])
        w.symlink("rootfs/l", to: "short")
        w.pax([("path", long + "2"), ("uid", "123456"), ("mtime", "1700000001.5")])
        w.file("rootfs/ignored", "two")
        w.entry("pax_global_header", type: "g", data: Array("20 comment=whatever\n".utf8))
        w.file("rootfs/plain", "three")
        w.end()
        let got = try entries(w.bytes)
        #expect(got.map(\.0.path) == [long, "rootfs/l", long + "2", "rootfs/plain"])
        #expect(got[1].0.linkTarget == longTarget)
        #expect(got[2].0.uid == 123456 && got[2].0.mtime == 1_700_000_001 && got[2].0.mtimeNanoseconds == 500_000_000)
        #expect(got[2].1 == "two" && got[3].1 == "three")
    }

    @Test func truncationIsAnError() throws {
        var w = TarWriter()
        w.file("a", String(repeating: "a", count: 1000))
        w.file("b", "b")
        w.end()
        // Inside data, inside a header, and at a block boundary without the end marker.
        for cut in [700, 1536 + 100, 2048] {
            #expect(throws: ImageError.self, "cut at \(cut)") { _ = try entries(Array(w.bytes[..<cut])) }
        }
        #expect(try entries(w.bytes).count == 2)
    }

    @Test func budgetIsEnforcedBeforeReading() {
        var w = TarWriter()
        w.file("big", String(repeating: "x", count: 10_000))
        w.end()
        let reader = TarReader(MemorySource(w.bytes), maxBytes: 5_000)
        #expect(throws: ImageError.tooLarge(limit: 5_000)) { _ = try reader.next() }
    }
}

/// Hands out at most `chunk` bytes per read, to exercise buffer boundaries.
final class ChunkedSource: ByteSource {
    let bytes: [UInt8]
    let chunk: Int
    var offset = 0
    init(_ bytes: [UInt8], chunk: Int) { self.bytes = bytes; self.chunk = chunk }
    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let n = min(chunk, buffer.count, bytes.count - offset)
        for i in 0..<n { buffer[i] = bytes[offset + i] }
        offset += n
        return n
    }
}
