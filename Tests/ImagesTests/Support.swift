import Foundation
import Glibc
import Logging
@testable import Images

/// Builds tar archives byte by byte, so tests can craft what no tar tool writes
/// (escapes, bad checksums, symlink tricks).
struct TarWriter {
    private(set) var bytes: [UInt8] = []

    mutating func entry(
        _ name: String, type: Character, mode: Int = 0o644, uid: Int = 0, gid: Int = 0,
        mtime: Int = 1_600_000_000, linkName: String = "", data: [UInt8] = [],
        devMajor: Int = 0, devMinor: Int = 0, corruptChecksum: Bool = false
    ) {
        var h = [UInt8](repeating: 0, count: 512)
        func put(_ s: String, _ offset: Int, _ width: Int) {
            let b = Array(s.utf8)
            precondition(b.count <= width, "\(s) does not fit in \(width) bytes")
            h.replaceSubrange(offset..<(offset + b.count), with: b)
        }
        func octal(_ v: Int, _ offset: Int, _ width: Int) {
            let s = String(v, radix: 8)
            put(String(repeating: "0", count: width - 1 - s.count) + s, offset, width - 1)
        }
        put(name, 0, 100)
        octal(mode, 100, 8)
        octal(uid, 108, 8)
        octal(gid, 116, 8)
        octal(data.count, 124, 12)
        octal(mtime, 136, 12)
        h[156] = type.asciiValue!
        put(linkName, 157, 100)
        put("ustar\0", 257, 6)
        put("00", 263, 2)
        octal(devMajor, 329, 8)
        octal(devMinor, 337, 8)
        for i in 148..<156 { h[i] = 0x20 }
        var sum = h.reduce(0) { $0 + Int($1) }
        if corruptChecksum { sum += 1 }
        let s = String(sum, radix: 8)
        put(String(repeating: "0", count: 6 - s.count) + s + "\0 ", 148, 8)
        bytes += h
        bytes += data
        let pad = (512 - data.count % 512) % 512
        bytes += [UInt8](repeating: 0, count: pad)
    }

    mutating func file(_ name: String, _ content: String, mode: Int = 0o644, uid: Int = 0, gid: Int = 0) {
        entry(name, type: "0", mode: mode, uid: uid, gid: gid, data: Array(content.utf8))
    }
    mutating func dir(_ name: String, mode: Int = 0o755) { entry(name, type: "5", mode: mode) }
    mutating func symlink(_ name: String, to target: String) { entry(name, type: "2", mode: 0o777, linkName: target) }
    mutating func hardlink(_ name: String, to target: String) { entry(name, type: "1", linkName: target) }

    mutating func pax(_ records: [(String, String)]) {
        entry("PaxHeaders/x", type: "x", data: records.flatMap { Self.paxRecord($0.0, $0.1) })
    }

    /// "<length> key=value\n", where length counts the whole record including its own digits.
    static func paxRecord(_ key: String, _ value: String) -> [UInt8] {
        let body = " \(key)=\(value)\n".utf8.count
        var len = body + 1
        while String(len).count + body != len { len = String(len).count + body }
        return Array("\(len) \(key)=\(value)\n".utf8)
    }

    mutating func gnuLongName(_ name: String) {
        entry("././@LongLink", type: "L", data: Array(name.utf8) + [0])
    }

    mutating func metadata(_ text: String = "architecture: x86_64\ncreation_date: 1700000000\nproperties:\n  os: test\n") {
        file("metadata.yaml", text)
    }

    mutating func end() { bytes += [UInt8](repeating: 0, count: 1024) }
}

/// A fresh directory under /tmp, removed by `cleanup()`.
struct Scratch {
    let path: String

    init() {
        var template = Array("/tmp/images-test-XXXXXX".utf8CString)
        let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }!
        path = String(cString: p)
    }

    var images: String { path + "/lxd/images" }

    func cleanup() { try? FileManager.default.removeItem(atPath: path) }

    func write(_ name: String, _ bytes: [UInt8]) -> String {
        let file = path + "/" + name
        _ = FileManager.default.createFile(atPath: file, contents: Data(bytes))
        return file
    }

    func store() -> ImageStore {
        var logger = Logger(label: "images-test")
        logger.logLevel = .debug
        return ImageStore(directory: images, logger: logger)
    }

    /// Names in the images directory (empty if it does not exist).
    func imagesEntries() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: images)) ?? []).sorted()
    }
}

/// Runs a program for test set-up (the tests may spawn; the agent may not).
@discardableResult
func run(_ argv: [String], in directory: String? = nil) throws -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: argv[0])
    p.arguments = Array(argv.dropFirst())
    if let directory { p.currentDirectoryURL = URL(fileURLWithPath: directory) }
    let out = Pipe()
    p.standardOutput = out
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    guard p.terminationStatus == 0 else {
        throw TestFailure("\(argv.joined(separator: " ")) exited with \(p.terminationStatus)")
    }
    return String(decoding: data, as: UTF8.self)
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

func lstatOf(_ path: String) -> stat? {
    var st = stat()
    return lstat(path, &st) == 0 ? st : nil
}

func readLink(_ path: String) -> String? {
    try? FileManager.default.destinationOfSymbolicLink(atPath: path)
}

func contents(_ path: String) -> String? {
    FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) }
}
