import Glibc

/// A connected pair of local stream sockets: one end for a child process (CRIU), the other
/// pumped over a member link. Close-on-exec: the spawner hands the child its end explicitly.
enum SocketPair {
    static func make() throws -> (Int32, Int32) {
        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            throw InstancesError.internal("socketpair failed: \(String(cString: strerror(errno)))")
        }
        return (pair[0], pair[1])
    }
}

/// CRIU's `--status-fd`: one byte when a daemon is ready (a lazy dump serving, lazy-pages
/// accepting a restore). The caller closes `write` once the child has exited, so a child that
/// died first reads as EOF.
struct StatusPipe {
    let read: Int32
    let write: Int32

    static func make() throws -> StatusPipe {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { throw InstancesError.internal("pipe failed: \(String(cString: strerror(errno)))") }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        return StatusPipe(read: fds[0], write: fds[1])
    }

    /// Waits (off the cooperative pool) for the ready byte; false on EOF. Closes the read end.
    func ready() async -> Bool {
        let fd = read
        let got = (try? await Blocking.run { () -> Bool in
            var byte: UInt8 = 0
            while true {
                let n = Glibc.read(fd, &byte, 1)
                if n < 0 && errno == EINTR { continue }
                return n == 1
            }
        }) ?? false
        close(fd)
        return got
    }
}
