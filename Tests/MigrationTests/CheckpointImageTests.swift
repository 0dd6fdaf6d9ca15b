import Testing
@testable import Migration

@Suite struct CheckpointImageTests {
    let good = ImageFiles(contents: syntheticCheckpoint(), sizes: ["pages-1.img": 3 * 4096])

    @Test func readsASyntheticCheckpoint() throws {
        let img = try CheckpointImage(files: good)
        #expect(img.inventory.imageVersion == 2)
        #expect(img.inventory.dumpUptime == 123_456)
        #expect(img.inventory.tcpClose == false)
        #expect(img.processes.map(\.pid) == [1, 7])
        #expect(img.processes[1].ppid == 1)
        #expect(img.processes[1].threads == [7, 8])   // packed encoding
        #expect(img.processes[0].threads == [1])      // unpacked encoding
        let stats = try #require(img.dumpStats)
        #expect(stats.freezingTime == 2299)
        #expect(stats.frozenTime == 19_849)
        #expect(stats.downtime == .microseconds(19_849))
        #expect(stats.pagesWritten == 107)
        #expect(img.restoreStats == nil)
        #expect(img.pagemaps.count == 1)
        #expect(img.pagemaps[0].presentPages == 3)
        #expect(img.pagemaps[0].entries.map(\.flags) == [.present, .parent, .lazy, .present])
        #expect(img.storedMemoryBytes == 3 * 4096)
    }

    @Test func oldStyleNrPagesAndInParent() throws {
        var files = good
        files.contents["pagemap-1.img"] = image([Magic.common, Magic.pagemap], [
            build { $0.varint(1, 1) },
            build { $0.varint(1, 0x1000); $0.varint(2, 2) },                    // no flags: present
            build { $0.varint(1, 0x10000); $0.varint(2, 5); $0.varint(3, 1) },  // in_parent
            build { $0.varint(1, 0x20000); $0.varint(2, 1) },
        ])
        let img = try CheckpointImage(files: files)
        #expect(img.pagemaps[0].entries.map(\.pages) == [2, 5, 1])
        #expect(img.pagemaps[0].presentPages == 3)
    }

    @Test func restoreStats() throws {
        var files = good
        files.contents["stats-restore"] = image([Magic.service, Magic.stats], [build {
            $0.message(2, build { r in r.varint(1, 10); r.varint(2, 0); r.varint(3, 1500); r.varint(4, 42_000); r.varint(5, 99) })
        }])
        let stats = try #require(try CheckpointImage(files: files).restoreStats)
        #expect(stats.forkingTime == 1500)
        #expect(stats.restoreTime == 42_000)
        #expect(stats.pagesRestored == 99)
    }

    @Test func refusesPagesFileOfTheWrongSize() {
        for size: UInt64 in [0, 2 * 4096, 4 * 4096, 3 * 4096 - 1] {
            var files = good
            files.sizes["pages-1.img"] = size
            #expect(throws: CheckpointImageError.pagesMismatch(pagemap: "pagemap-1.img", pages: "pages-1.img",
                                                               expectedBytes: 3 * 4096, actualBytes: size)) {
                try CheckpointImage(files: files)
            }
        }
    }

    @Test func refusesMissingFiles() {
        for name in ["inventory.img", "pstree.img", "core-8.img"] {
            var files = good
            files.contents[name] = nil
            #expect(throws: CheckpointImageError.missing(name)) { try CheckpointImage(files: files) }
        }
        var noPages = good
        noPages.sizes = [:]
        #expect(throws: CheckpointImageError.missing("pages-1.img")) { try CheckpointImage(files: noPages) }
    }

    @Test func refusesWrongMagics() {
        var files = good
        files.contents["pstree.img"]![4] ^= 0xff
        #expect(throws: CheckpointImageError.badMagic(file: "pstree.img", expected: Magic.pstree,
                                                      found: Magic.pstree ^ 0xff)) { try CheckpointImage(files: files) }
        files = good
        files.contents["inventory.img"] = image([Magic.common], [])
        #expect(throws: CheckpointImageError.badMagic(file: "inventory.img", expected: Magic.inventory,
                                                      found: Magic.common)) { try CheckpointImage(files: files) }
        files = good
        files.contents["stats-dump"] = [0x40, 0x59]
        #expect(throws: CheckpointImageError.badMagic(file: "stats-dump", expected: Magic.service, found: nil)) {
            try CheckpointImage(files: files)
        }
        // A pagemap that carries a core magic is not a pagemap.
        files = good
        files.contents["pagemap-1.img"] = image([Magic.common, Magic.core], [build { $0.varint(1, 1) }])
        #expect(throws: CheckpointImageError.badMagic(file: "pagemap-1.img", expected: Magic.pagemap, found: Magic.core)) {
            try CheckpointImage(files: files)
        }
    }

    @Test func refusesTruncatedFrames() {
        var files = good
        let tree = files.contents["pstree.img"]!
        files.contents["pstree.img"] = Array(tree.dropLast(3))
        #expect(throws: CheckpointImageError.self) { try CheckpointImage(files: files) }
        // A length prefix claiming more than the file holds.
        files.contents["pstree.img"] = le32(Magic.common) + le32(Magic.pstree) + le32(1 << 30) + [0x08, 0x01]
        #expect(throws: CheckpointImageError.truncated(file: "pstree.img", offset: 8)) { try CheckpointImage(files: files) }
    }

    @Test func refusesLyingPagemaps() {
        let cases: [(String, [Proto])] = [
            ("unaligned", [build { $0.varint(1, 0x1001); $0.varint(4, 4); $0.varint(5, 3) }]),
            ("zero pages", [build { $0.varint(1, 0x1000); $0.varint(4, 4); $0.varint(5, 0) }]),
            ("overlap", [build { $0.varint(1, 0x1000); $0.varint(4, 4); $0.varint(5, 2) },
                         build { $0.varint(1, 0x2000); $0.varint(4, 4); $0.varint(5, 1) }]),
            ("overflow", [build { $0.varint(1, 0xffff_ffff_ffff_f000); $0.varint(4, 4); $0.varint(5, 3) }]),
            ("huge count", [build { $0.varint(1, 0); $0.varint(4, 4); $0.varint(5, UInt64.max) }]),
            ("no vaddr", [build { $0.varint(4, 4); $0.varint(5, 3) }]),
        ]
        for (what, entries) in cases {
            var files = good
            files.contents["pagemap-1.img"] = image([Magic.common, Magic.pagemap], [build { $0.varint(1, 1) }] + entries)
            #expect(throws: CheckpointImageError.self, "\(what)") { try CheckpointImage(files: files) }
        }
        var twoOwners = good
        twoOwners.contents["pagemap-7.img"] = twoOwners.contents["pagemap-1.img"]
        #expect(throws: CheckpointImageError.self) { try CheckpointImage(files: twoOwners) }
    }

    @Test func refusesBadProtobuf() {
        let bodies: [[UInt8]] = [
            [0x08],                                      // varint cut short
            [0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],  // > 64 bits
            [0x0b],                                      // wire type 3 (groups): unsupported
            [0x00, 0x01],                                // field number 0
            [0x12, 0x05, 0x01],                          // bytes longer than the message
            [0x0d, 0x01, 0x02],                          // fixed32 cut short
        ]
        for body in bodies {
            var files = good
            files.contents["inventory.img"] = le32(Magic.inventory) + le32(UInt32(body.count)) + body
            #expect(throws: CheckpointImageError.self, "\(body)") { try CheckpointImage(files: files) }
        }
    }

    @Test func refusesOtherImageVersions() {
        var files = good
        files.contents["inventory.img"] = image([Magic.inventory], [build { $0.varint(1, 1) }])
        #expect(throws: CheckpointImageError.unsupportedVersion(1)) { try CheckpointImage(files: files) }
    }

    /// Every prefix and many bit flips of every file: an error or a valid image, never a trap.
    @Test func neverCrashesOnDamagedBytes() {
        var rng = SplitMix(seed: 42)
        var refused = 0
        for (name, bytes) in good.contents {
            for cut in 0..<bytes.count {
                var files = good
                files.contents[name] = Array(bytes.prefix(cut))
                if (try? CheckpointImage(files: files)) == nil { refused += 1 }
            }
            for _ in 0..<200 {
                var damaged = bytes
                let at = Int(rng.next() % UInt64(damaged.count))
                damaged[at] ^= UInt8(truncatingIfNeeded: rng.next() | 1)
                var files = good
                files.contents[name] = damaged
                _ = try? CheckpointImage(files: files)
            }
        }
        #expect(refused > 100)
    }

    @Test func errorsSayWhatToDo() {
        let e = CheckpointImageError.pagesMismatch(pagemap: "pagemap-1.img", pages: "pages-1.img", expectedBytes: 8192, actualBytes: 4096)
        #expect(e.description.contains("pages-1.img holds 4096"))
        #expect(e.description.contains("dump again"))
    }
}

/// Deterministic random numbers for the damage test.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}
