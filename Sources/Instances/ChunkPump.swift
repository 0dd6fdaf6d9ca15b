import Dispatch
import Synchronization

/// Runs a synchronous producer (a tree encoder writing to a sink) on a thread of its own and
/// hands its output to `send` in parts of `partSize` bytes, one at a time, the last one marked.
/// The producer waits while two parts are pending, so memory stays bounded whatever the size of
/// what it writes; a failed `send` stops it. Returns the bytes produced.
enum ChunkPump {
    private final class Stop: Sendable {
        let flag = Mutex(false)
        var isSet: Bool { flag.withLock { $0 } }
    }

    struct Stopped: Error {}

    static func run(partSize: Int,
                    produce: @escaping @Sendable (_ emit: (UnsafeRawBufferPointer) throws -> Void) throws -> Void,
                    send: @Sendable (_ part: [UInt8], _ index: Int, _ last: Bool) async throws -> Void) async throws -> Int64 {
        precondition(partSize > 0)
        let (parts, continuation) = AsyncThrowingStream<[UInt8], any Error>.makeStream(bufferingPolicy: .unbounded)
        // Starts at 0 and counts parts sent: libdispatch traps when a semaphore is freed with a
        // value below its initial one, which a failed send could leave behind.
        let sent = DispatchSemaphore(value: 0)
        let stop = Stop()
        DispatchQueue(label: "chunk-pump").async {
            var buffer: [UInt8] = []
            buffer.reserveCapacity(partSize)
            var handed = 0
            func hand(_ part: [UInt8]) throws {
                // At most two parts ahead of what was sent.
                if handed >= 2 { sent.wait() }
                if stop.isSet { throw Stopped() }
                continuation.yield(part)
                handed += 1
            }
            do {
                try produce { bytes in
                    var offset = 0
                    while offset < bytes.count {
                        let n = min(partSize - buffer.count, bytes.count - offset)
                        buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + n]))
                        offset += n
                        if buffer.count == partSize {
                            try hand(buffer)
                            buffer = []
                            buffer.reserveCapacity(partSize)
                        }
                    }
                }
                if !buffer.isEmpty { try hand(buffer) }
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
        var pending: [UInt8]?
        var index = 0
        var total: Int64 = 0
        do {
            for try await part in parts {
                if let previous = pending {
                    try await send(previous, index, false)
                    index += 1
                    sent.signal()
                }
                pending = part
                total += Int64(part.count)
            }
            try await send(pending ?? [], index, true)
            if pending != nil { sent.signal() }
            return total
        } catch {
            stop.flag.withLock { $0 = true }
            sent.signal()
            sent.signal()
            // Let the producer see the stop and end before returning.
            do { for try await _ in parts {} } catch {}
            throw error
        }
    }
}
