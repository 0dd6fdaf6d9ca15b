import Foundation
import Glibc
import Testing
@testable import Images

@Suite(.enabled(if: access("/usr/bin/gzip", X_OK) == 0 && access("/usr/bin/xz", X_OK) == 0, "needs gzip and xz to make inputs"))
struct DecompressionTests {
    func readAll(_ source: ByteSource, chunk: Int = 1000) throws -> [UInt8] {
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: chunk)
        while true {
            let n = try buffer.withUnsafeMutableBytes { try source.read(into: $0) }
            if n == 0 { return out }
            out += buffer[..<n]
        }
    }

    func compress(_ tool: String, _ text: String, scratch: Scratch, name: String) throws -> [UInt8] {
        let path = scratch.write(name, Array(text.utf8))
        try run([tool, "-f", path])
        return Array(try Data(contentsOf: URL(fileURLWithPath: path + (tool.hasSuffix("gzip") ? ".gz" : ".xz"))))
    }

    @Test func detectsByMagic() {
        #expect(Compression.detect(magic: [0x1f, 0x8b, 8, 0]) == .gzip)
        #expect(Compression.detect(magic: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0]) == .xz)
        #expect(Compression.detect(magic: Array("metada".utf8)) == .none)
        #expect(Compression.detect(magic: []) == .none)
    }

    @Test func concatenatedStreamsAreRead() throws {
        let scratch = Scratch()
        defer { scratch.cleanup() }
        let a = String(repeating: "first member ", count: 5000)
        let b = String(repeating: "second member ", count: 3000)
        for tool in ["/usr/bin/gzip", "/usr/bin/xz"] {
            let joined = try compress(tool, a, scratch: scratch, name: "a") + compress(tool, b, scratch: scratch, name: "b")
            let source = tool.hasSuffix("gzip") ? try GzipSource(MemorySource(joined)) as ByteSource : try XZSource(MemorySource(joined))
            #expect(try readAll(source, chunk: 777) == Array((a + b).utf8), "\(tool)")
        }
    }

    @Test func xzMemoryLimitIsEnforced() throws {
        let scratch = Scratch()
        defer { scratch.cleanup() }
        let data = try compress("/usr/bin/xz", "hello", scratch: scratch, name: "small")
        #expect {
            _ = try readAll(XZSource(MemorySource(data), memoryLimit: 4096))
        } throws: { error in
            "\(error)".contains("more memory than the limit")
        }
    }

    @Test func trailingGarbageAfterGzipIsAnError() throws {
        let scratch = Scratch()
        defer { scratch.cleanup() }
        let data = try compress("/usr/bin/gzip", "hello", scratch: scratch, name: "g") + Array("garbage".utf8)
        #expect(throws: ImageError.self) { _ = try readAll(GzipSource(MemorySource(data))) }
    }
}
