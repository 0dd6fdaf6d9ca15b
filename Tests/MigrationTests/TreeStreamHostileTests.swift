import Glibc
import Testing
@testable import Migration

/// Builds tree streams by hand, lies included.
struct StreamBuilder {
    typealias Kind = TreeStreamFormat.RecordKind
    var bytes: [UInt8] = TreeStreamFormat.magic + [1, 0, 0, 0, 0, 0, 0, 0]
    var records = 0
    var dataBytes: UInt64 = 0

    mutating func header(_ h: TreeStreamFormat.RecordHeader) {
        var raw = [UInt8](repeating: 0, count: TreeStreamFormat.recordHeaderSize)
        raw.withUnsafeMutableBytes { h.write(to: $0.baseAddress!) }
        bytes += raw
    }

    mutating func record(
        _ kind: Kind, _ path: String, mode: UInt32 = 0o644, uid: UInt32 = 0, gid: UInt32 = 0,
        xattrs: [UInt8] = [], payload: [UInt8] = [], rdev: (UInt32, UInt32) = (0, 0),
        edit: (inout TreeStreamFormat.RecordHeader) -> Void = { _ in }
    ) {
        var h = TreeStreamFormat.RecordHeader()
        h.kind = kind.rawValue
        h.pathLength = UInt32(path.utf8.count)
        h.xattrLength = UInt32(xattrs.count)
        h.mode = mode
        h.uid = uid
        h.gid = gid
        h.rdevMajor = rdev.0
        h.rdevMinor = rdev.1
        h.payloadLength = UInt64(payload.count)
        edit(&h)
        header(h)
        bytes += Array(path.utf8) + xattrs + payload
        records += 1
    }

    mutating func file(_ path: String, _ content: [UInt8], size: UInt64? = nil, edit: (inout TreeStreamFormat.RecordHeader) -> Void = { _ in }) {
        record(.regular, path) { h in
            h.payloadLength = size ?? UInt64(content.count)
            edit(&h)
        }
        if !content.isEmpty { extent(0, UInt64(content.count), content) }
        extent(TreeStreamFormat.endOfExtents, 0, [])
    }

    mutating func extent(_ offset: UInt64, _ length: UInt64, _ data: [UInt8]) {
        var raw = [UInt8](repeating: 0, count: 16)
        raw.withUnsafeMutableBytes {
            store(offset, $0.baseAddress!, 0)
            store(length, $0.baseAddress!, 8)
        }
        bytes += raw + data
        if length > 0, offset != TreeStreamFormat.endOfExtents { dataBytes += UInt64(data.count) }
    }

    static func xattr(_ name: String, _ value: [UInt8]) -> [UInt8] {
        var raw = [UInt8](repeating: 0, count: 6)
        raw.withUnsafeMutableBytes {
            store(UInt16(name.utf8.count), $0.baseAddress!, 0)
            store(UInt32(value.count), $0.baseAddress!, 2)
        }
        return raw + Array(name.utf8) + value
    }

    mutating func end(records: Int? = nil, dataBytes: UInt64? = nil) {
        var h = TreeStreamFormat.RecordHeader()
        h.kind = Kind.end.rawValue
        h.payloadLength = 16
        header(h)
        var counts = [UInt8](repeating: 0, count: 16)
        counts.withUnsafeMutableBytes {
            store(UInt64(records ?? self.records), $0.baseAddress!, 0)
            store(dataBytes ?? self.dataBytes, $0.baseAddress!, 8)
        }
        bytes += counts
    }
}

/// A stream from a lying peer is refused with a reason and never changes anything outside the
/// target root.
@Suite(.serialized, .enabled(if: TreeScratch.isRoot, "needs root: owners and device nodes as the applier makes them"))
struct TreeStreamHostileTests {
    typealias S = TreeScratch

    /// Applies `stream` in one piece to a fresh root; the error it threw (nil if none).
    static func apply(_ stream: [UInt8], area: S.Area, limits: TreeApplyLimits = TreeApplyLimits()) throws -> TreeSyncError? {
        let before = area.outsideListing()
        S.removeTree(area.root)
        try S.make(dir: area.root)
        var thrown: TreeSyncError?
        do {
            let applier = try TreeStreamApplier(root: area.root, limits: limits)
            try applier.consume(stream)
            _ = try applier.finish()
        } catch {
            thrown = error
        }
        #expect(area.outsideListing() == before, "nothing appears beside the root or in outside/")
        return thrown
    }

    static func expectError(_ stream: [UInt8], area: S.Area, limits: TreeApplyLimits = TreeApplyLimits(), _ check: (TreeSyncError) -> Bool, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let error = try apply(stream, area: area, limits: limits)
        #expect(error.map(check) == true, "got \(error.map { "\($0)" } ?? "no error")", sourceLocation: sourceLocation)
    }

    @Test func aValidHandBuiltStreamApplies() throws {
        let area = try S.Area()
        var b = StreamBuilder()
        b.record(.directory, "", mode: 0o755)
        b.record(.directory, "d", mode: 0o700, xattrs: StreamBuilder.xattr("user.x", [1]))
        b.file("d/f", Array("hello".utf8))
        b.record(.hardlink, "g", payload: Array("d/f".utf8))
        b.end()
        #expect(try Self.apply(b.bytes, area: area) == nil)
        #expect(S.read(area.root + "/g") == Array("hello".utf8))
        #expect(S.xattrs(area.root + "/d")["user.x"] == [1])
    }

    @Test func aRecordReplacesWhateverIsAtItsPath() throws {
        let area = try S.Area()
        var first = StreamBuilder()
        first.record(.directory, "x")
        first.file("x/c", [1])
        first.record(.symlink, "s", payload: Array(area.outside.utf8))
        first.file("f", [2])
        first.record(.fifo, "p")
        first.end()
        #expect(try Self.apply(first.bytes, area: area) == nil)
        let applier = try TreeStreamApplier(root: area.root)
        var second = StreamBuilder()
        second.file("x", [3])  // over a directory with a child
        second.file("s", [4])  // over a symlink: replaces the link, writes nothing where it points
        second.record(.directory, "f", mode: 0o711)  // over a file
        second.record(.hardlink, "p", payload: Array("x".utf8))  // over a fifo
        // A directory with times, then a file in its place: the file keeps its own times.
        second.record(.directory, "y") { $0.mtimeSeconds = 1000 }
        second.file("y/c", [5])
        second.file("y", [6]) { $0.mtimeSeconds = 7 }
        second.end()
        try applier.consume(second.bytes)
        _ = try applier.finish()
        #expect(S.read(area.root + "/x") == [3])
        #expect(S.read(area.root + "/s") == [4])
        #expect(S.lstatOf(area.root + "/f").map { $0.st_mode & 0o170777 } == S_IFDIR | 0o711)
        #expect(S.lstatOf(area.root + "/p")?.st_ino == S.lstatOf(area.root + "/x")?.st_ino)
        #expect(S.names(area.outside) == [])
        #expect(S.lstatOf(area.root + "/y").map { ($0.st_mode & S_IFMT, $0.st_mtim.tv_sec) } ?? (0, 0) == (S_IFREG, 7))
        #expect(S.names(area.root).sorted() == ["f", "p", "s", "x", "y"], "no temporary names left")
    }

    @Test func pathsThatLeaveTheRootAreMalformed() throws {
        let area = try S.Area()
        for path in ["..", "../outside/pwned", "d/../../outside/pwned", area.outside + "/pwned", "./x", "a//b", "a/", "x\u{0}y"] {
            var b = StreamBuilder()
            b.record(.directory, "d")
            b.file(path, Array("pwned".utf8))
            b.end()
            try Self.expectError(b.bytes, area: area) {
                if case .malformed(record: 2, _) = $0 { return true } else { return false }
            }
        }
        // A hard link to a path outside.
        var link = StreamBuilder()
        link.record(.hardlink, "passwd", payload: Array("../../../../etc/passwd".utf8))
        link.end()
        try Self.expectError(link.bytes, area: area) { if case .malformed = $0 { true } else { false } }
    }

    @Test func nothingIsWrittenThroughASymlinkTheStreamMade() throws {
        let area = try S.Area()
        let writes: [(inout StreamBuilder) -> Void] = [
            { $0.file("a/x", Array("pwned".utf8)) },
            { $0.record(.directory, "a/sub") },
            { $0.record(.symlink, "a/link", payload: Array("target".utf8)) },
            { $0.record(.fifo, "a/fifo") },
            { $0.record(.remove, "a/keep") },
            { $0.record(.hardlink, "a/y", payload: Array("f".utf8)) },
            { $0.record(.hardlink, "z", payload: Array("a/keep".utf8)) },
        ]
        try S.write(area.outside + "/keep", "must stay")
        for write in writes {
            var b = StreamBuilder()
            b.file("f", Array("f".utf8))
            b.record(.symlink, "a", mode: 0o777, payload: Array(area.outside.utf8))
            write(&b)
            b.end()
            let error = try Self.apply(b.bytes, area: area)
            #expect(error != nil)
            #expect(S.names(area.outside) == ["keep"])
            #expect(S.read(area.outside + "/keep") == Array("must stay".utf8))
        }
    }

    @Test func everyCutOfAStreamIsDetected() throws {
        let area = try S.Area()
        var b = StreamBuilder()
        b.record(.directory, "", mode: 0o755)
        b.record(.directory, "d", xattrs: StreamBuilder.xattr("user.a", [1, 2]))
        b.file("d/f", [UInt8](repeating: 7, count: 100))
        b.record(.symlink, "s", payload: Array("d/f".utf8))
        b.record(.remove, "old")
        b.end()
        #expect(try Self.apply(b.bytes, area: area) == nil)
        for length in 0..<b.bytes.count {
            let error = try Self.apply(Array(b.bytes[0..<length]), area: area)
            #expect(error.map { if case .truncated = $0 { true } else { false } } == true, "cut at \(length): \(String(describing: error))")
        }
    }

    @Test func lengthFieldsAreCheckedBeforeAnythingIsAllocated() throws {
        let area = try S.Area()
        let small = TreeApplyLimits(maxTotalBytes: 1000, maxEntries: 5, maxFileSize: 1 << 20, maxXattrBytes: 4096)
        func only(_ build: (inout StreamBuilder) -> Void) -> [UInt8] {
            var b = StreamBuilder()
            build(&b)
            return b.bytes  // no end record: the lie must be refused before anything else is needed
        }
        let cases: [(String, [UInt8], (TreeSyncError) -> Bool)] = [
            ("path length", only { $0.record(.directory, "d") { $0.pathLength = .max } }, { if case .malformed(1, _) = $0 { true } else { false } }),
            ("xattr length", only { $0.record(.directory, "d") { $0.xattrLength = .max } }, { if case .overLimit(1, _) = $0 { true } else { false } }),
            ("symlink length", only { $0.record(.symlink, "s") { $0.payloadLength = .max } }, { if case .malformed(1, _) = $0 { true } else { false } }),
            ("file size", only { $0.record(.regular, "f") { $0.payloadLength = .max } }, { if case .overLimit(1, _) = $0 { true } else { false } }),
            ("extent past the size", only { $0.record(.regular, "f") { $0.payloadLength = 10 }; $0.extent(5, .max - 2, []) }, { if case .malformed(1, _) = $0 { true } else { false } }),
            ("data over the total", only { $0.record(.regular, "f") { $0.payloadLength = 5000 }; $0.extent(0, 5000, []) }, { if case .overLimit(1, _) = $0 { true } else { false } }),
            ("entries", only { for i in 0..<6 { $0.record(.directory, "d\(i)") } }, { if case .overLimit(6, _) = $0 { true } else { false } }),
            ("xattr inside its block", only { $0.record(.directory, "d", xattrs: [255, 0, 0, 0, 0, 1] + Array("user.a".utf8)) }, { if case .malformed(1, _) = $0 { true } else { false } }),
            ("xattr namespace", only { $0.record(.directory, "d", xattrs: StreamBuilder.xattr("system.sockprotoname", [1])) }, { if case .malformed(1, _) = $0 { true } else { false } }),
            ("unknown kind", only { $0.record(.directory, "d") { $0.kind = 77 } }, { if case .malformed(1, _) = $0 { true } else { false } }),
            ("mode bits", only { $0.record(.directory, "d", mode: 0o170755) }, { if case .malformed(1, _) = $0 { true } else { false } }),
            ("payload on a directory", only { $0.record(.directory, "d") { $0.payloadLength = 1 << 40 } }, { if case .malformed(1, _) = $0 { true } else { false } }),
            ("root as a file", only { $0.file("", [1]) }, { if case .malformed(1, _) = $0 { true } else { false } }),
            ("remove the root", only { $0.record(.remove, "") }, { if case .malformed(1, _) = $0 { true } else { false } }),
        ]
        for (name, stream, check) in cases {
            let error = try Self.apply(stream, area: area, limits: small)
            #expect(error.map(check) == true, "\(name): \(String(describing: error))")
        }
        // Limits as large as they go: the arithmetic on lengths still cannot overflow.
        let huge = TreeApplyLimits(maxTotalBytes: .max, maxFileSize: .max)
        let hugeCases: [[UInt8]] = [
            only { $0.record(.regular, "f") { $0.payloadLength = .max } },
            only { $0.record(.regular, "f") { $0.payloadLength = UInt64(Int64.max) }; $0.extent(1, UInt64(Int64.max), []) },
            only { $0.record(.regular, "f") { $0.payloadLength = UInt64(Int64.max) }; $0.extent(.max - 1, 1, []) },
            only { $0.record(.regular, "f") { $0.payloadLength = UInt64(Int64.max) }; $0.extent(0, UInt64(Int64.max), [1, 2, 3]) },
        ]
        for stream in hugeCases {
            #expect(try Self.apply(stream, area: area, limits: huge) != nil)
        }
    }

    @Test func headerAndEndLiesAreRefused() throws {
        let area = try S.Area()
        var garbage = StreamBuilder()
        garbage.bytes[0] = UInt8(ascii: "X")
        garbage.end()
        try Self.expectError(garbage.bytes, area: area) { if case .malformed(0, _) = $0 { true } else { false } }
        var version = StreamBuilder()
        version.bytes[8] = 2
        version.end()
        try Self.expectError(version.bytes, area: area) { if case .malformed(0, _) = $0 { true } else { false } }
        try Self.expectError(Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8), area: area) { if case .malformed(0, _) = $0 { true } else { false } }

        var counts = StreamBuilder()
        counts.file("f", [1, 2, 3])
        counts.end(records: 2)
        try Self.expectError(counts.bytes, area: area) { if case .malformed(2, _) = $0 { true } else { false } }
        var data = StreamBuilder()
        data.file("f", [1, 2, 3])
        data.end(dataBytes: 2)
        try Self.expectError(data.bytes, area: area) { if case .malformed(2, _) = $0 { true } else { false } }
        var trailing = StreamBuilder()
        trailing.end()
        try Self.expectError(trailing.bytes + [0], area: area) { if case .malformed = $0 { true } else { false } }
    }

    @Test func devicesAndOwnersFollowThePolicy() throws {
        let area = try S.Area()
        var block = StreamBuilder()
        block.record(.blockDevice, "sda", rdev: (8, 0))
        block.end()
        try Self.expectError(block.bytes, area: area) { if case .refused(1, "sda", _) = $0 { true } else { false } }
        var null = StreamBuilder()
        null.record(.characterDevice, "null", rdev: (1, 3))
        null.end()
        try Self.expectError(null.bytes, area: area) { if case .refused(1, "null", _) = $0 { true } else { false } }
        #expect(try Self.apply(null.bytes, area: area, limits: TreeApplyLimits(devices: .any)) == nil)
        #expect(S.lstatOf(area.root + "/null").map { $0.st_rdev } == 0x103)

        var whiteout = StreamBuilder()
        whiteout.record(.characterDevice, "gone", mode: 0, uid: 1_000_000, gid: 1_000_000)
        whiteout.end()
        let mapped = TreeApplyLimits(ownerRange: 1_000_000...1_065_535)
        #expect(try Self.apply(whiteout.bytes, area: area, limits: mapped) == nil)
        // Overlayfs makes whiteouts as host root: those pass the owner range, other root-owned
        // devices do not get through as whiteouts.
        var rootWhiteout = StreamBuilder()
        rootWhiteout.record(.characterDevice, "gone-too", mode: 0, uid: 0, gid: 0)
        rootWhiteout.end()
        #expect(try Self.apply(rootWhiteout.bytes, area: area, limits: mapped) == nil)
        var rootNull = StreamBuilder()
        rootNull.record(.characterDevice, "null-too", uid: 0, gid: 0, rdev: (1, 3))
        rootNull.end()
        try Self.expectError(rootNull.bytes, area: area, limits: mapped) { if case .refused(1, "null-too", _) = $0 { true } else { false } }
        var hostRoot = StreamBuilder()
        hostRoot.file("setuid", [1]) { $0.mode = 0o4755 }
        hostRoot.end()
        try Self.expectError(hostRoot.bytes, area: area, limits: mapped) { if case .overLimit(1, _) = $0 { true } else { false } }
    }

    @Test func aDeepTreeIsBuiltAndRemoved() throws {
        let area = try S.Area()
        var build = StreamBuilder()
        var path = "d"
        for _ in 0..<1500 {
            build.record(.directory, path, mode: 0o755)
            path += "/d"
        }
        build.file(path, [1])
        build.end()
        #expect(try Self.apply(build.bytes, area: area) == nil)
        #expect(S.lstatOf(area.root + "/" + path) != nil)
        let applier = try TreeStreamApplier(root: area.root)
        var remove = StreamBuilder()
        remove.record(.remove, "d")
        remove.end()
        try applier.consume(remove.bytes)
        #expect(try applier.finish().removed == 1)
        #expect(S.names(area.root) == [])
    }

    /// Random byte flips in a valid stream: errors, never a crash, never a write outside.
    @Test func flippedBytesNeverEscape() throws {
        let area = try S.Area()
        let source = try area.fresh("source")
        try S.make(dir: source + "/d")
        try S.write(source + "/d/f", [UInt8](repeating: 0x5a, count: 200))
        try S.check(link(source + "/d/f", source + "/hard"), "link")
        try S.check(symlink(area.outside, source + "/esc"), "symlink")
        try S.check(symlink(area.base, source + "/up"), "symlink")
        try S.check(mknod(source + "/d/wh", S_IFCHR, 0), "mknod")
        try S.check(mkfifo(source + "/d/p", 0o600), "mkfifo")
        try S.setXattr(source + "/d", "trusted.overlay.opaque", Array("y".utf8))
        try S.write(source + "/esc-later", "x")
        let valid = try S.round(from: source, to: try area.fresh("first"), previous: nil).stream
        S.removeTree(area.base + "/first")
        try S.write(area.outside + "/keep", "must stay")
        let listing = area.outsideListing()

        let limits = TreeApplyLimits(maxTotalBytes: 1 << 20, maxEntries: 100, maxFileSize: 1 << 20, maxXattrBytes: 4096)
        var random = SeededRandom(seed: 0x7EE5)
        var outcomes: [String: Int] = [:]
        for _ in 0..<300 {
            var stream = valid
            for _ in 0..<Int.random(in: 1...4, using: &random) {
                let at = Int.random(in: 0..<stream.count, using: &random)
                stream[at] ^= UInt8.random(in: 1...255, using: &random)
            }
            S.removeTree(area.root)
            try S.make(dir: area.root)
            do {
                let applier = try TreeStreamApplier(root: area.root, limits: limits)
                var at = 0
                while at < stream.count {
                    let n = min(Int.random(in: 1...512, using: &random), stream.count - at)
                    try stream[at..<(at + n)].withUnsafeBytes { try applier.consume($0) }
                    at += n
                }
                _ = try applier.finish()
                outcomes["applied", default: 0] += 1
            } catch let error as TreeSyncError {
                let kind = switch error {
                case .io: "io"
                case .malformed: "malformed"
                case .overLimit: "over limit"
                case .truncated: "truncated"
                case .refused: "refused"
                }
                outcomes[kind, default: 0] += 1
            }
            #expect(area.outsideListing() == listing)
            #expect(S.read(area.outside + "/keep") == Array("must stay".utf8))
        }
        print("flipped streams: \(outcomes.sorted { $0.key < $1.key })")

        // Random bytes after a valid stream header.
        for _ in 0..<200 {
            var stream = Array(valid[0..<TreeStreamFormat.streamHeaderSize])
            for _ in 0..<Int.random(in: 1...2000, using: &random) { stream.append(UInt8.random(in: 0...255, using: &random)) }
            S.removeTree(area.root)
            try S.make(dir: area.root)
            let applier = try TreeStreamApplier(root: area.root, limits: limits)
            #expect(throws: TreeSyncError.self) {
                try applier.consume(stream)
                _ = try applier.finish()
            }
            #expect(area.outsideListing() == listing)
        }
    }
}
