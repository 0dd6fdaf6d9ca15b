import CRuntime
import Foundation
import Synchronization

/// A flag set once from any thread (a reader's stop request).
public final class StopFlag: Sendable {
    private let value = Atomic<Bool>(false)

    public init() {}

    public var isSet: Bool { value.load(ordering: .acquiring) }
    public func set() { value.store(true, ordering: .releasing) }
}

/// Blocking reads of a pipe or pty master on a dedicated thread (never on Swift's cooperative pool),
/// delivered as an async stream of chunks. The stream ends at EOF, on EIO (pty with no slave left)
/// or when `stop` is set; the fd is closed at the end. On a packet socket each chunk is one
/// packet, cut at `bufferSize`.
public func readStream(fd: Int32, stop: StopFlag, bufferSize: Int = 32 * 1024) -> AsyncStream<[UInt8]> {
    let (stream, continuation) = AsyncStream<[UInt8]>.makeStream(bufferingPolicy: .bufferingNewest(256))
    let thread = Thread {
        var buffer = [UInt8](repeating: 0, count: bufferSize)
        loop: while !stop.isSet {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&pfd, 1, 100)
            if ready < 0 {
                if errno == EINTR { continue }
                break
            }
            if ready == 0 { continue }
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            switch n {
            case 0: break loop
            case ..<0:
                if errno == EINTR || errno == EAGAIN { continue }
                break loop
            default: continuation.yield(Array(buffer[0..<n]))
            }
        }
        close(fd)
        continuation.finish()
    }
    thread.name = "exec-reader"
    thread.start()
    return stream
}

/// Writes to a pipe or pty on its own serial queue, so a process that does not read its stdin
/// never blocks the cooperative pool.
public final class FDWriter: Sendable {
    private let fd: Int32
    private let queue = DispatchQueue(label: "exec-writer")

    public init(fd: Int32) { self.fd = fd }

    public func write(_ bytes: [UInt8]) {
        queue.async { [fd] in
            var offset = 0
            while offset < bytes.count {
                let n = bytes[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
                if n < 0 {
                    if errno == EINTR { continue }
                    return
                }
                offset += n
            }
        }
    }

    /// Closes after the queued writes (the process sees EOF on stdin).
    public func close() {
        queue.async { [fd] in _ = Glibc.close(fd) }
    }
}

/// Creates a pipe with both ends close-on-exec (the runtime passes the child's end explicitly).
public func cloexecPipe() throws(RuntimeError) -> (read: Int32, write: Int32) {
    var fds: [Int32] = [0, 0]
    if cr_pipe2(&fds, O_CLOEXEC) != 0 { throw .system("pipe", on: "exec stream", errno) }
    return (fds[0], fds[1])
}
