import Glibc
import Testing
@testable import Migration

/// Throughput of encode + apply on this machine, printed (no assert on time). Writes ~400 MB,
/// so it runs only when asked: LXD_SWIFT_TREESYNC_BENCH=1.
@Suite(.serialized,
       .enabled(if: TreeScratch.isRoot, "needs root"),
       .enabled(if: getenv("LXD_SWIFT_TREESYNC_BENCH") != nil, "a benchmark: set LXD_SWIFT_TREESYNC_BENCH=1 to run it"))
struct TreeSyncThroughputTests {
    typealias S = TreeScratch

    static func seconds(_ body: () throws -> Void) rethrows -> Double {
        var start = timespec(), end = timespec()
        clock_gettime(CLOCK_MONOTONIC, &start)
        try body()
        clock_gettime(CLOCK_MONOTONIC, &end)
        return Double(end.tv_sec - start.tv_sec) + Double(end.tv_nsec - start.tv_nsec) / 1e9
    }

    /// Encodes `source` straight into an applier on `target`, as the lead's stream does.
    static func transfer(_ source: String, _ target: String) throws -> (encodeOnly: Double, both: Double, bytes: UInt64) {
        let manifest = try TreeManifest.scan(root: source)
        let delta = TreeDelta.between(previous: nil, current: manifest)
        var bytes: UInt64 = 0
        let encodeOnly = try seconds {
            bytes = try TreeStreamEncoder(root: source, manifest: manifest, delta: delta).encode { _ in }.bytes
        }
        sync()
        let both = try seconds {
            let applier = try TreeStreamApplier(root: target)
            _ = try TreeStreamEncoder(root: source, manifest: manifest, delta: delta).encode { try applier.consume($0) }
            _ = try applier.finish()
        }
        return (encodeOnly, both, bytes)
    }

    static func rounded(_ x: Double) -> Double { (x * 10).rounded() / 10 }

    @Test func twoHundredMegabytesInOneFile() throws {
        let area = try S.Area()
        let source = try area.fresh("source")
        var block = [UInt8](repeating: 0, count: 1 << 20)
        var random = SeededRandom(seed: 1)
        for i in stride(from: 0, to: block.count, by: 8) {
            let value = random.next()
            for j in 0..<8 { block[i + j] = UInt8(truncatingIfNeeded: value >> (8 * j)) }
        }
        let fd = open(source + "/big", O_WRONLY | O_CREAT, 0o644)
        for _ in 0..<200 { _ = block.withUnsafeBytes { write(fd, $0.baseAddress!, $0.count) } }
        close(fd)
        let (encodeOnly, both, bytes) = try Self.transfer(source, area.root)
        let mb = Double(bytes) / 1e6
        print("treesync 200 MB file: encode \(Self.rounded(mb / encodeOnly)) MB/s, encode+apply \(Self.rounded(mb / both)) MB/s (\(bytes) stream bytes)")
        #expect(try S.differences(source, area.root) == [])
    }

    @Test func fiveThousandSmallFiles() throws {
        let area = try S.Area()
        let source = try area.fresh("source")
        let content = [UInt8](repeating: 0x61, count: 1024)
        for d in 0..<50 {
            try S.make(dir: source + "/d\(d)")
            for f in 0..<100 { try S.write(source + "/d\(d)/f\(f)", content) }
        }
        let (encodeOnly, both, bytes) = try Self.transfer(source, area.root)
        print("treesync 5,000 files of 1 KiB: encode \(Int(5050 / encodeOnly)) entries/s, encode+apply \(Int(5050 / both)) entries/s, \(Self.rounded(Double(bytes) / 1e6 / both)) MB/s")
        #expect(try S.differences(source, area.root) == [])
    }
}
