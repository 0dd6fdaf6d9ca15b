@testable import Instances
import Synchronization
import Testing

/// The bridge from a synchronous tree encoder to the parts a move uploads.
@Suite struct ChunkPumpTests {
    struct SendFailed: Error {}

    /// Writes `total` bytes in writes of `step`.
    static func producer(total: Int, step: Int) -> @Sendable ((UnsafeRawBufferPointer) throws -> Void) throws -> Void {
        { emit in
            var left = total
            let bytes = [UInt8](repeating: 7, count: step)
            while left > 0 {
                let n = min(step, left)
                try bytes.withUnsafeBytes { try emit(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                left -= n
            }
        }
    }

    @Test func partsArriveInOrderWithTheLastOneMarked() async throws {
        let seen = Mutex<[(Int, Int, Bool)]>([])
        let total = try await ChunkPump.run(partSize: 1000, produce: Self.producer(total: 3500, step: 333)) { part, index, last in
            seen.withLock { $0.append((part.count, index, last)) }
        }
        #expect(total == 3500)
        let parts = seen.withLock { $0 }
        #expect(parts.map(\.0) == [1000, 1000, 1000, 500])
        #expect(parts.map(\.1) == [0, 1, 2, 3])
        #expect(parts.map(\.2) == [false, false, false, true])
    }

    @Test func nothingProducedStillSendsOneEmptyLastPart() async throws {
        let seen = Mutex<[(Int, Bool)]>([])
        _ = try await ChunkPump.run(partSize: 10, produce: { _ in }) { part, _, last in seen.withLock { $0.append((part.count, last)) } }
        #expect(seen.withLock { $0.map(\.0) } == [0])
        #expect(seen.withLock { $0.map(\.1) } == [true])
    }

    /// A send that fails midway stops the producer (it would otherwise wait forever) and the
    /// error comes back; repeated many times, since the crash this guards against (a semaphore
    /// freed while below its initial value) depended on timing.
    @Test func aFailedSendStopsTheProducerAndReportsTheError() async throws {
        for failAt in [0, 1, 2, 5] {
            for _ in 0..<20 {
                await #expect(throws: SendFailed.self) {
                    _ = try await ChunkPump.run(partSize: 100, produce: Self.producer(total: 100_000, step: 64)) { _, index, _ in
                        if index == failAt { throw SendFailed() }
                    }
                }
            }
        }
    }

    @Test func theProducerStaysAtMostTwoPartsAhead() async throws {
        let produced = Mutex(0)
        let maxAhead = Mutex(0)
        let sent = Mutex(0)
        _ = try await ChunkPump.run(partSize: 10, produce: { emit in
            for _ in 0..<50 {
                try [UInt8](repeating: 1, count: 10).withUnsafeBytes { try emit($0) }
                let ahead = produced.withLock { $0 += 1; return $0 } - sent.withLock { $0 }
                maxAhead.withLock { $0 = max($0, ahead) }
            }
        }) { _, _, _ in
            try await Task.sleep(for: .milliseconds(1))
            sent.withLock { $0 += 1 }
        }
        // Handed parts: two queued, one held back to learn whether it is the last, one in the send.
        #expect(maxAhead.withLock { $0 } <= 4)
    }
}
