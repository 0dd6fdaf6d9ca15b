#if canImport(FoundationEssentials)
import FoundationEssentials  // not Foundation: it adds ~10 ms of ICU loading to every lxdctl run
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import Dispatch

/// The local terminal: detection, size, raw mode, and input as a stream.
enum Terminal {
    static func isTerminal(_ fd: Int32) -> Bool { isatty(fd) == 1 }

    static func size(_ fd: Int32) -> (width: Int, height: Int)? {
        var ws = winsize()
        let rc = withUnsafeMutablePointer(to: &ws) { ioctl(fd, UInt(TIOCGWINSZ), $0) }
        guard rc == 0, ws.ws_col > 0, ws.ws_row > 0 else { return nil }
        return (Int(ws.ws_col), Int(ws.ws_row))
    }

    /// Puts `fd` in raw mode until `restore()`; keystrokes such as ^C go to the container.
    final class RawMode {
        private let fd: Int32
        private var saved = termios()
        private var active = false

        init(_ fd: Int32) throws {
            self.fd = fd
            guard tcgetattr(fd, &saved) == 0 else {
                throw CLIError("cannot read terminal settings of fd \(fd): \(String(cString: strerror(errno)))")
            }
            var raw = saved
            cfmakeraw(&raw)
            guard tcsetattr(fd, TCSANOW, &raw) == 0 else {
                throw CLIError("cannot put the terminal in raw mode: \(String(cString: strerror(errno)))")
            }
            active = true
        }

        func restore() {
            guard active else { return }
            active = false
            _ = tcsetattr(fd, TCSANOW, &saved)
        }

        deinit { restore() }
    }

    /// Reads `fd` on a dedicated thread (reads block) and yields chunks; finishes at EOF/error.
    static func input(_ fd: Int32) -> AsyncStream<[UInt8]> {
        AsyncStream { continuation in
            detachThread {
                var buffer = [UInt8](repeating: 0, count: 64 * 1024)
                while true {
                    let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                    if n > 0 {
                        continuation.yield(Array(buffer[..<n]))
                    } else if n < 0 && errno == EINTR {
                        continue
                    } else {
                        break
                    }
                }
                continuation.finish()
            }
        }
    }
}

/// Runs `body` on a new detached OS thread. Blocking reads must not sit on the threads Swift
/// concurrency and GCD share (on Linux, a blocked pool thread is replaced only slowly).
func detachThread(_ body: @escaping @Sendable () -> Void) {
    final class Box: Sendable {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
    let box = Unmanaged.passRetained(Box(body)).toOpaque()
    var thread = pthread_t()
    let rc = pthread_create(&thread, nil, { arg in
        Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue().body()
        return nil
    }, box)
    if rc == 0 {
        pthread_detach(thread)
    } else {
        Unmanaged<Box>.fromOpaque(box).release()
        Output.stderr("Error: cannot start the stdin reader thread (pthread_create: \(rc)); stdin is ignored\n")
    }
}

/// Delivers process signals as a callback on a queue (instead of their default action)
/// for as long as the value lives.
final class SignalForwarder {
    private var sources: [any DispatchSourceSignal] = []

    init(_ signals: [Int32], handler: @escaping @Sendable (Int32) -> Void) {
        for number in signals {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { handler(number) }
            source.resume()
            sources.append(source)
        }
    }

    deinit {
        for source in sources { source.cancel() }
    }
}
