import Foundation

/// The files of a CRIU image directory as the reader needs them: the bytes of the small
/// protobuf images and only the sizes of the raw page files (which can be gigabytes).
public struct ImageFiles: Sendable {
    /// File name (no directory) -> contents.
    public var contents: [String: [UInt8]]
    /// File name -> size in bytes, for `pages-*.img`.
    public var sizes: [String: UInt64]

    public init(contents: [String: [UInt8]] = [:], sizes: [String: UInt64] = [:]) {
        self.contents = contents
        self.sizes = sizes
    }

    /// Whether the reader needs a file's bytes (else only its size, or nothing).
    static func wantsContents(_ name: String) -> Bool {
        ImageKind.of(name) != nil
    }

    static func isPages(_ name: String) -> Bool {
        name.hasPrefix("pages-") && name.hasSuffix(".img")
    }

    /// Loads the files of `directory` that the reader checks.
    public static func load(directory: String) throws(CheckpointImageError) -> ImageFiles {
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: directory) } catch {
            throw .unreadable(directory, "\(error)")
        }
        var files = ImageFiles()
        for name in names {
            let path = directory + "/" + name
            if isPages(name) {
                guard let attrs = try? FileManager.default.attributesOfItem(atPath: path),
                      let size = (attrs[.size] as? NSNumber)?.uint64Value else {
                    throw .unreadable(path, "cannot stat")
                }
                files.sizes[name] = size
            } else if wantsContents(name) {
                guard let data = FileManager.default.contents(atPath: path) else { throw .unreadable(path, "cannot read") }
                files.contents[name] = [UInt8](data)
            }
        }
        return files
    }
}

/// Why an image directory was refused. Each case names the file; the remedy is the same:
/// the images are corrupt, truncated or from another CRIU, so dump again (the source was left
/// resumable) rather than restore them.
public enum CheckpointImageError: Error, Equatable, CustomStringConvertible {
    case unreadable(String, String)
    case missing(String)
    case badMagic(file: String, expected: UInt32, found: UInt32?)
    case truncated(file: String, offset: Int)
    case corrupt(file: String, String)
    case unsupportedVersion(UInt32)
    case pagesMismatch(pagemap: String, pages: String, expectedBytes: UInt64, actualBytes: UInt64)

    public var description: String {
        let remedy = "; do not restore these images, dump again"
        switch self {
        case let .unreadable(path, why): return "checkpoint image \(path) unreadable: \(why)"
        case let .missing(file): return "checkpoint image \(file) is missing\(remedy)"
        case let .badMagic(file, expected, found):
            let got = found.map { "0x" + String($0, radix: 16) } ?? "nothing (file too short)"
            return "checkpoint image \(file): bad magic, expected 0x\(String(expected, radix: 16)), found \(got)\(remedy)"
        case let .truncated(file, offset): return "checkpoint image \(file) is truncated at byte \(offset)\(remedy)"
        case let .corrupt(file, why): return "checkpoint image \(file) is corrupt: \(why)\(remedy)"
        case let .unsupportedVersion(v): return "checkpoint images have format version \(v), this reader knows 2; use the same CRIU on both ends"
        case let .pagesMismatch(pagemap, pages, expected, actual):
            return "checkpoint image \(pagemap) describes \(expected) bytes of pages but \(pages) holds \(actual)\(remedy)"
        }
    }
}

/// The image kinds whose magic and framing the reader checks, by file name.
enum ImageKind {
    static let inventoryMagic: UInt32 = 0x5831_3116
    static let commonMagic: UInt32 = 0x5456_4319
    static let serviceMagic: UInt32 = 0x5510_5940
    static let statsMagic: UInt32 = 0x5709_3306

    case inventory, stats, typed(UInt32)

    static func of(_ name: String) -> ImageKind? {
        if name == "inventory.img" { return .inventory }
        if name == "stats-dump" || name == "stats-restore" { return .stats }
        guard name.hasSuffix(".img") else { return nil }
        let typed: [(prefix: String, magic: UInt32)] = [
            ("pstree.img", 0x5027_3030), ("files.img", 0x5630_3138),
            ("core-", 0x5505_3847), ("mm-", 0x5749_2820), ("pagemap-", 0x5608_4025),
            ("fdinfo-", 0x5621_3732), ("ids-", 0x5443_2030), ("fs-", 0x5140_3912),
        ]
        for t in typed where name.hasPrefix(t.prefix) { return .typed(t.magic) }
        return nil
    }

    /// The magics a file of this kind starts with.
    var header: [UInt32] {
        switch self {
        case .inventory: return [Self.inventoryMagic]
        case .stats: return [Self.serviceMagic, Self.statsMagic]
        case let .typed(m): return [Self.commonMagic, m]
        }
    }
}

/// A CRIU checkpoint, read and validated before anyone restores it: magics and framing of
/// every image it knows, the process tree, dump/restore statistics, and every pagemap checked
/// against its pages file (a lying or truncated image is refused here, not half-restored).
/// Pure: construct from `ImageFiles`; `read(directory:)` only adds the file reading.
public struct CheckpointImage: Sendable {
    public static let pageSize: UInt64 = 4096

    public struct Inventory: Sendable, Equatable {
        public var imageVersion: UInt32
        /// Host uptime at dump (µs), when recorded.
        public var dumpUptime: UInt64?
        public var tcpClose: Bool?
        public var networkLockMethod: UInt32?
    }

    /// One task of the dumped tree, with pids as seen inside its pid namespace.
    public struct Process: Sendable, Equatable {
        public var pid: UInt32
        public var ppid: UInt32
        public var pgid: UInt32
        public var sid: UInt32
        public var threads: [UInt32]
    }

    /// CRIU's own timing of a dump, in microseconds.
    public struct DumpStats: Sendable, Equatable {
        public var freezingTime: UInt32
        /// From freeze to the end of the dump: the downtime of a stop-and-copy move's source.
        public var frozenTime: UInt32
        public var memdumpTime: UInt32
        public var memwriteTime: UInt32
        public var pagesScanned: UInt64
        public var pagesWritten: UInt64
        public var pagesLazy: UInt64

        public var downtime: Duration { .microseconds(Int64(frozenTime)) }
    }

    /// CRIU's own timing of a restore, in microseconds.
    public struct RestoreStats: Sendable, Equatable {
        public var forkingTime: UInt32
        public var restoreTime: UInt32
        public var pagesRestored: UInt64?
    }

    public struct PagemapEntry: Sendable, Equatable {
        public struct Flags: OptionSet, Sendable, Hashable {
            public let rawValue: UInt32
            public init(rawValue: UInt32) { self.rawValue = rawValue }
            /// The pages are in the parent (pre-dump) images.
            public static let parent = Flags(rawValue: 1)
            /// The pages come from a lazy-pages server.
            public static let lazy = Flags(rawValue: 2)
            /// The pages are stored, in order, in this pagemap's pages file.
            public static let present = Flags(rawValue: 4)
        }
        public var vaddr: UInt64
        public var pages: UInt64
        public var flags: Flags
    }

    public struct Pagemap: Sendable, Equatable {
        public var file: String
        public var pagesID: UInt32
        public var entries: [PagemapEntry]
        /// Pages stored in `pages-<pagesID>.img`.
        public var presentPages: UInt64
        public var pagesFile: String { "pages-\(pagesID).img" }
    }

    public var inventory: Inventory
    public var processes: [Process]
    public var dumpStats: DumpStats?
    public var restoreStats: RestoreStats?
    public var pagemaps: [Pagemap]

    /// Bytes of memory stored in the pages files.
    public var storedMemoryBytes: UInt64 { pagemaps.reduce(0) { $0 + $1.presentPages } * Self.pageSize }

    /// Reads and validates the image directory `directory`.
    public static func read(directory: String) throws(CheckpointImageError) -> CheckpointImage {
        try CheckpointImage(files: ImageFiles.load(directory: directory))
    }

    public init(files: ImageFiles) throws(CheckpointImageError) {
        // Magic and framing of every image we know, before interpreting any of them.
        var framed: [String: [ArraySlice<UInt8>]] = [:]
        for (name, bytes) in files.contents {
            guard let kind = ImageKind.of(name) else { continue }
            framed[name] = try Self.frames(name, bytes, header: kind.header)
        }

        guard let inv = framed["inventory.img"] else { throw .missing("inventory.img") }
        inventory = try Self.inventory(inv)
        guard inventory.imageVersion == 2 else { throw .unsupportedVersion(inventory.imageVersion) }

        guard let tree = framed["pstree.img"] else { throw .missing("pstree.img") }
        processes = try Self.processes(tree)
        for p in processes {
            for tid in p.threads where framed["core-\(tid).img"] == nil { throw .missing("core-\(tid).img") }
        }

        dumpStats = try framed["stats-dump"].map(Self.dumpStats)
        restoreStats = try framed["stats-restore"].map(Self.restoreStats)

        var pagemaps: [Pagemap] = []
        var pagesOwner: [UInt32: String] = [:]
        for name in framed.keys.sorted() where name.hasPrefix("pagemap-") {
            let map = try Self.pagemap(name, framed[name]!)
            if let other = pagesOwner[map.pagesID] {
                throw .corrupt(file: name, "pages id \(map.pagesID) is also claimed by \(other)")
            }
            pagesOwner[map.pagesID] = name
            let expected = map.presentPages * Self.pageSize
            let actual = files.sizes[map.pagesFile]
            if actual == nil && expected > 0 { throw .missing(map.pagesFile) }
            if let actual, actual != expected {
                throw .pagesMismatch(pagemap: name, pages: map.pagesFile, expectedBytes: expected, actualBytes: actual)
            }
            pagemaps.append(map)
        }
        self.pagemaps = pagemaps
    }

    /// Checks the header magics and splits the rest into `u32 LE length | message` frames.
    static func frames(_ file: String, _ bytes: [UInt8], header: [UInt32]) throws(CheckpointImageError) -> [ArraySlice<UInt8>] {
        var i = 0
        for expected in header {
            guard bytes.count - i >= 4 else { throw .badMagic(file: file, expected: expected, found: nil) }
            let found = u32(bytes, i)
            guard found == expected else { throw .badMagic(file: file, expected: expected, found: found) }
            i += 4
        }
        var out: [ArraySlice<UInt8>] = []
        while i < bytes.count {
            guard bytes.count - i >= 4 else { throw .truncated(file: file, offset: i) }
            let length = Int(u32(bytes, i))
            guard length <= bytes.count - i - 4 else { throw .truncated(file: file, offset: i) }
            out.append(bytes[(i + 4)..<(i + 4 + length)])
            i += 4 + length
        }
        return out
    }

    private static func u32(_ b: [UInt8], _ i: Int) -> UInt32 {
        UInt32(b[i]) | UInt32(b[i + 1]) << 8 | UInt32(b[i + 2]) << 16 | UInt32(b[i + 3]) << 24
    }

    private static func message(_ file: String, _ frame: ArraySlice<UInt8>) throws(CheckpointImageError) -> ProtoMessage {
        do { return try ProtoMessage(frame) } catch {
            throw .corrupt(file: file, "undecodable protobuf entry (\(error))")
        }
    }

    private static func required<T>(_ value: T?, _ file: String, _ field: String) throws(CheckpointImageError) -> T {
        guard let value else { throw .corrupt(file: file, "required field \(field) is missing") }
        return value
    }

    private static func single(_ file: String, _ frames: [ArraySlice<UInt8>]) throws(CheckpointImageError) -> ProtoMessage {
        guard frames.count == 1 else { throw .corrupt(file: file, "expected one entry, found \(frames.count)") }
        return try message(file, frames[0])
    }

    static func inventory(_ frames: [ArraySlice<UInt8>]) throws(CheckpointImageError) -> Inventory {
        let f = "inventory.img"
        let m = try single(f, frames)
        return Inventory(imageVersion: try required(m.uint32(1), f, "img_version"),
                         dumpUptime: m.varint(8), tcpClose: m.bool(10), networkLockMethod: m.uint32(11))
    }

    static func processes(_ frames: [ArraySlice<UInt8>]) throws(CheckpointImageError) -> [Process] {
        let f = "pstree.img"
        guard !frames.isEmpty else { throw .corrupt(file: f, "no processes") }
        var seen = Set<UInt32>()
        var out: [Process] = []
        for frame in frames {
            let m = try message(f, frame)
            let pid = try required(m.uint32(1), f, "pid")
            let threads: [UInt64]
            do { threads = try m.repeatedVarints(5) } catch { throw .corrupt(file: f, "threads of \(pid): \(error)") }
            guard pid > 0, seen.insert(pid).inserted else { throw .corrupt(file: f, "invalid or duplicate pid \(pid)") }
            out.append(Process(pid: pid, ppid: try required(m.uint32(2), f, "ppid"),
                               pgid: try required(m.uint32(3), f, "pgid"), sid: try required(m.uint32(4), f, "sid"),
                               threads: threads.map { UInt32(truncatingIfNeeded: $0) }))
        }
        for p in out where p.threads.isEmpty { throw .corrupt(file: f, "process \(p.pid) has no threads") }
        return out
    }

    static func dumpStats(_ frames: [ArraySlice<UInt8>]) throws(CheckpointImageError) -> DumpStats {
        let f = "stats-dump"
        let outer = try single(f, frames)
        let d = try message(f, try required(outer.bytes(1), f, "dump"))
        return DumpStats(freezingTime: try required(d.uint32(1), f, "freezing_time"),
                         frozenTime: try required(d.uint32(2), f, "frozen_time"),
                         memdumpTime: try required(d.uint32(3), f, "memdump_time"),
                         memwriteTime: try required(d.uint32(4), f, "memwrite_time"),
                         pagesScanned: try required(d.varint(5), f, "pages_scanned"),
                         pagesWritten: try required(d.varint(7), f, "pages_written"),
                         pagesLazy: d.varint(9) ?? 0)
    }

    static func restoreStats(_ frames: [ArraySlice<UInt8>]) throws(CheckpointImageError) -> RestoreStats {
        let f = "stats-restore"
        let outer = try single(f, frames)
        let r = try message(f, try required(outer.bytes(2), f, "restore"))
        return RestoreStats(forkingTime: try required(r.uint32(3), f, "forking_time"),
                            restoreTime: try required(r.uint32(4), f, "restore_time"),
                            pagesRestored: r.varint(5))
    }

    static func pagemap(_ file: String, _ frames: [ArraySlice<UInt8>]) throws(CheckpointImageError) -> Pagemap {
        guard let headFrame = frames.first else { throw .corrupt(file: file, "no pagemap head") }
        let head = try message(file, headFrame)
        let pagesID = try required(head.uint32(1), file, "pages_id")
        var entries: [PagemapEntry] = []
        var present: UInt64 = 0
        var previousEnd: UInt64 = 0
        for (n, frame) in frames.dropFirst().enumerated() {
            let m = try message(file, frame)
            let vaddr = try required(m.varint(1), file, "vaddr")
            // CRIU >= 4.2 writes the count as u64 in field 5 and leaves field 2 at 0.
            let pages = try required(m.varint(5) ?? m.varint(2), file, "nr_pages")
            // Images without flags mark parent pages with the old in_parent bool.
            let flags: PagemapEntry.Flags = m.uint32(4).map { PagemapEntry.Flags(rawValue: $0) }
                ?? (m.bool(3) == true ? .parent : .present)
            guard vaddr % pageSize == 0 else { throw .corrupt(file: file, "entry \(n): unaligned address 0x\(String(vaddr, radix: 16))") }
            guard pages > 0 else { throw .corrupt(file: file, "entry \(n): zero pages") }
            let (bytes, o1) = pages.multipliedReportingOverflow(by: pageSize)
            let (end, o2) = vaddr.addingReportingOverflow(bytes)
            guard !o1, !o2 else { throw .corrupt(file: file, "entry \(n): range overflows the address space") }
            guard vaddr >= previousEnd else {
                throw .corrupt(file: file, "entry \(n): 0x\(String(vaddr, radix: 16)) overlaps or precedes the previous entry")
            }
            previousEnd = end
            if flags.contains(.present) {
                let (sum, o3) = present.addingReportingOverflow(pages)
                guard !o3 else { throw .corrupt(file: file, "page count overflows") }
                present = sum
            }
            entries.append(PagemapEntry(vaddr: vaddr, pages: pages, flags: flags))
        }
        return Pagemap(file: file, pagesID: pagesID, entries: entries, presentPages: present)
    }
}
