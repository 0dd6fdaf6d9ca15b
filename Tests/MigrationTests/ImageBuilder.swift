/// Builds synthetic CRIU images for the reader's tests: a small protobuf encoder and the
/// `magic | (u32 length | message)*` framing, written here from the format description in
/// NOTES-criu.md.
struct Proto {
    var bytes: [UInt8] = []

    static func varintBytes(_ v: UInt64) -> [UInt8] {
        var v = v
        var out: [UInt8] = []
        repeat {
            var b = UInt8(v & 0x7f)
            v >>= 7
            if v != 0 { b |= 0x80 }
            out.append(b)
        } while v != 0
        return out
    }

    mutating func varint(_ field: Int, _ v: UInt64) {
        bytes += Self.varintBytes(UInt64(field << 3))
        bytes += Self.varintBytes(v)
    }

    mutating func message(_ field: Int, _ m: Proto) {
        bytes += Self.varintBytes(UInt64(field << 3 | 2))
        bytes += Self.varintBytes(UInt64(m.bytes.count))
        bytes += m.bytes
    }

    mutating func packed(_ field: Int, _ values: [UInt64]) {
        let body = values.flatMap(Self.varintBytes)
        bytes += Self.varintBytes(UInt64(field << 3 | 2))
        bytes += Self.varintBytes(UInt64(body.count))
        bytes += body
    }
}

enum Magic {
    static let inventory: UInt32 = 0x5831_3116
    static let common: UInt32 = 0x5456_4319
    static let service: UInt32 = 0x5510_5940
    static let stats: UInt32 = 0x5709_3306
    static let core: UInt32 = 0x5505_3847
    static let pagemap: UInt32 = 0x5608_4025
    static let pstree: UInt32 = 0x5027_3030
}

func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }

func image(_ magics: [UInt32], _ entries: [Proto]) -> [UInt8] {
    magics.flatMap(le32) + entries.flatMap { le32(UInt32($0.bytes.count)) + $0.bytes }
}

func build(_ body: (inout Proto) -> Void) -> Proto {
    var p = Proto()
    body(&p)
    return p
}

/// A consistent two-process checkpoint: init (pid 1, threads 1) and a child (pid 7), one
/// pagemap with 3 present pages, 2 parent pages and 1 lazy page (4.2-style nr_pages in field 5).
func syntheticCheckpoint() -> [String: [UInt8]] {
    var files: [String: [UInt8]] = [:]
    files["inventory.img"] = image([Magic.inventory], [build { $0.varint(1, 2); $0.varint(8, 123_456); $0.varint(10, 0) }])
    files["pstree.img"] = image([Magic.common, Magic.pstree], [
        build { $0.varint(1, 1); $0.varint(2, 0); $0.varint(3, 1); $0.varint(4, 1); $0.varint(5, 1) },
        build { $0.varint(1, 7); $0.varint(2, 1); $0.varint(3, 1); $0.varint(4, 1); $0.packed(5, [7, 8]) },
    ])
    for tid in [1, 7, 8] {
        files["core-\(tid).img"] = image([Magic.common, Magic.core], [build { $0.varint(1, 1) }])
    }
    files["stats-dump"] = image([Magic.service, Magic.stats], [build {
        $0.message(1, build { d in
            d.varint(1, 2299); d.varint(2, 19_849); d.varint(3, 1068); d.varint(4, 341)
            d.varint(5, 167); d.varint(6, 0); d.varint(7, 107); d.varint(9, 0)
        })
    }])
    files["pagemap-1.img"] = image([Magic.common, Magic.pagemap], [
        build { $0.varint(1, 1) },
        build { $0.varint(1, 0x40_0000); $0.varint(2, 0); $0.varint(4, 4); $0.varint(5, 2) },
        build { $0.varint(1, 0x40_2000); $0.varint(2, 0); $0.varint(4, 1); $0.varint(5, 2) },
        build { $0.varint(1, 0x50_0000); $0.varint(2, 0); $0.varint(4, 2); $0.varint(5, 1) },
        build { $0.varint(1, 0x7fff_0000); $0.varint(2, 0); $0.varint(4, 4); $0.varint(5, 1) },
    ])
    return files
}
