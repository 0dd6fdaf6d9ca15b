import CTerminal
import Foundation

/// A flag set once from any thread (a reader's stop request).
final class StopFlag: Sendable {
    // Protected by `lock`; Sendable because every access takes it.
    private let lock = NSLock()
    nonisolated(unsafe) private var value = false

    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}

/// Blocking reads of a pipe or pty master on a dedicated thread (never on Swift's cooperative pool),
/// delivered as an async stream of chunks. The stream ends at EOF, on EIO (pty with no slave left)
/// or when `stop` is set; the fd is closed at the end.
func readStream(fd: Int32, stop: StopFlag) -> AsyncStream<[UInt8]> {
    let (stream, continuation) = AsyncStream<[UInt8]>.makeStream(bufferingPolicy: .bufferingNewest(256))
    let thread = Thread {
        var buffer = [UInt8](repeating: 0, count: 32 * 1024)
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
final class FDWriter: Sendable {
    private let fd: Int32
    private let queue = DispatchQueue(label: "exec-writer")

    init(fd: Int32) { self.fd = fd }

    func write(_ bytes: [UInt8]) {
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
    func close() {
        queue.async { [fd] in _ = Glibc.close(fd) }
    }
}

/// Creates a pipe with both ends close-on-exec (the runtime passes the child's end explicitly).
func cloexecPipe() throws -> (read: Int32, write: Int32) {
    var fds: [Int32] = [0, 0]
    guard ct_pipe_cloexec(&fds) == 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
    return (fds[0], fds[1])
}

/// A pseudo-terminal for interactive exec: the agent keeps the master, the command gets the slave.
func openTerminal(width: Int?, height: Int?) throws -> (master: Int32, slave: Int32) {
    var master: Int32 = -1, slave: Int32 = -1
    guard ct_open_pty(&master, &slave, UInt16(clamping: width ?? 0), UInt16(clamping: height ?? 0)) == 0 else {
        throw POSIXError(.init(rawValue: errno) ?? .EIO)
    }
    return (master, slave)
}

func setWindowSize(fd: Int32, width: Int, height: Int) {
    _ = ct_set_winsize(fd, UInt16(clamping: width), UInt16(clamping: height))
}
