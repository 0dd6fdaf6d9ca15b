import CRuntime
import Glibc

/// What stays of `lxd-start start` once init runs: the holder of the container's console.
///
/// A pty whose master is closed hangs up its slave, and systemd's console-getty would then
/// restart in a loop and fail, so the master must live as long as the container, and outside
/// the agent, which may restart. The monitor appends everything the console prints to
/// console.log (bounded: past 1 MiB the last 256 KiB are kept) and serves console.sock to one
/// attached client at a time (a new client replaces the previous one). SOCK_SEQPACKET, one
/// message per packet: 'd' + bytes both ways (output, keyboard input), and to the monitor
/// 'w' + rows + cols (UInt16 big-endian each) for a window size. It exits when init ends.
struct ConsoleMonitor {
    let master: Int32
    let initPidfd: Int32
    let logPath: String
    let socketPath: String

    static let logLimit: off_t = 1 << 20
    static let logKeep = 256 << 10
    static let chunk = 64 << 10

    func run() -> Never {
        signal(SIGPIPE, SIG_IGN)
        _ = fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK)
        let log = open(logPath, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        var logSize = log >= 0 ? lseek(log, 0, SEEK_END) : 0
        // Without a socket the console still works and is logged; only attaching is lost.
        let listener = cr_listen_unix_seqpacket(socketPath)
        var client: Int32 = -1
        var masterPaused = false
        var buf = [UInt8](repeating: 0, count: Self.chunk + 1)
        buf[0] = UInt8(ascii: "d")

        func drainMaster() -> Bool {
            let n = buf.withUnsafeMutableBytes { read(master, $0.baseAddress! + 1, Self.chunk) }
            guard n > 0 else { return false }   // EAGAIN, or EIO: nobody has the slave open
            if log >= 0 {
                buf.withUnsafeBytes { _ = write(log, $0.baseAddress! + 1, n) }
                logSize += off_t(n)
                if logSize > Self.logLimit { logSize = Self.keepTail(log: log, path: logPath) }
            }
            if client >= 0 {
                // Never wait for a slow client: the log has everything.
                let sent = buf.withUnsafeBytes { send(client, $0.baseAddress!, n + 1, Int32(MSG_DONTWAIT | MSG_NOSIGNAL)) }
                if sent < 0 && errno != EAGAIN && errno != EINTR { close(client); client = -1 }
            }
            return true
        }

        while true {
            var fds = [
                pollfd(fd: initPidfd, events: Int16(POLLIN), revents: 0),
                pollfd(fd: listener, events: Int16(POLLIN), revents: 0),
                pollfd(fd: client, events: Int16(POLLIN), revents: 0),
                pollfd(fd: masterPaused ? -1 : master, events: Int16(POLLIN), revents: 0),
            ]
            // While no process has the slave open, the master reports a hang-up without end:
            // look again every 100 ms instead of spinning.
            let n = poll(&fds, nfds_t(fds.count), masterPaused ? 100 : -1)
            if n < 0 {
                if errno == EINTR { continue }
                _exit(1)
            }
            if n == 0 { masterPaused = false; continue }
            if fds[3].revents & Int16(POLLIN) != 0 {
                if !drainMaster() { masterPaused = true }
            } else if fds[3].revents & Int16(POLLHUP | POLLERR) != 0 {
                masterPaused = true
            }
            if fds[1].revents & Int16(POLLIN) != 0 {
                let fd = cr_accept_cloexec(listener)
                if fd >= 0 {
                    if client >= 0 { close(client) }
                    client = fd
                }
            }
            if client >= 0, fds[2].revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 {
                let got = buf.withUnsafeMutableBytes { recv(client, $0.baseAddress!, Self.chunk + 1, 0) }
                if got <= 0 {
                    close(client)
                    client = -1
                } else {
                    handle(Array(buf[0..<got]))
                    buf[0] = UInt8(ascii: "d")
                }
            }
            if fds[0].revents & Int16(POLLIN) != 0 {
                // Init ended: keep what it printed last, then go.
                while drainMaster() {}
                _exit(0)
            }
        }
    }

    /// One packet from the client; anything malformed is ignored.
    private func handle(_ packet: [UInt8]) {
        guard let kind = packet.first else { return }
        switch kind {
        case UInt8(ascii: "d"):
            writeMaster(packet[1...])
        case UInt8(ascii: "w") where packet.count == 5:
            let rows = UInt16(packet[1]) << 8 | UInt16(packet[2])
            let cols = UInt16(packet[3]) << 8 | UInt16(packet[4])
            if rows > 0 && cols > 0 { _ = cr_set_window_size(master, rows, cols) }
        default:
            return
        }
    }

    /// Input for the console; waits at most a second for room (a container that never reads
    /// its console must not stall the monitor), then drops the rest.
    private func writeMaster(_ bytes: ArraySlice<UInt8>) {
        var rest = bytes
        while !rest.isEmpty {
            let n = rest.withUnsafeBytes { write(master, $0.baseAddress!, $0.count) }
            if n > 0 { rest = rest.dropFirst(n); continue }
            if n < 0 && errno == EINTR { continue }
            guard n < 0 && errno == EAGAIN else { return }
            var p = pollfd(fd: master, events: Int16(POLLOUT), revents: 0)
            if poll(&p, 1, 1000) <= 0 { return }
        }
    }

    /// Cuts the log to its last `logKeep` bytes; returns the new size.
    private static func keepTail(log: Int32, path: String) -> off_t {
        let rd = open(path, O_RDONLY | O_CLOEXEC)
        guard rd >= 0 else { return 0 }
        defer { close(rd) }
        let size = lseek(rd, 0, SEEK_END)
        var tail = [UInt8](repeating: 0, count: logKeep)
        let n = tail.withUnsafeMutableBytes { pread(rd, $0.baseAddress!, logKeep, max(0, size - off_t(logKeep))) }
        guard n >= 0 else { return size }
        _ = ftruncate(log, 0)
        tail.withUnsafeBytes { _ = write(log, $0.baseAddress!, n) }
        return off_t(n)
    }
}
