import Dqlite
import Glibc
import Logging
import Migration

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

    /// Runs `body` with one end of a new pair whose other end `PeerPump` carries over `stream`.
    /// Afterwards, also when `body` throws, that end is shut down and closed, which ends the pump
    /// (and with it the stream), and the pump is waited for.
    static func pumped<T>(over stream: any PeerStream, _ body: (Int32) async throws -> T) async throws -> T {
        let ours: Int32, theirs: Int32
        do { (ours, theirs) = try make() } catch {
            await stream.close()
            throw error
        }
        let pump = Task { await PeerPump.run(fd: theirs, stream: stream) }
        let result: Result<T, any Error>
        do { result = .success(try await body(ours)) } catch { result = .failure(error) }
        shutdown(ours, Int32(SHUT_RDWR))
        close(ours)
        await pump.value
        return try result.get()
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

/// A CRIU process of post-copy (the source's `dump --lazy-pages`, the target's `lazy-pages`):
/// it talks to its peer through one end of a socketpair whose other end is pumped over the
/// members' link, and says on a status pipe when it serves.
struct LazyPagesSession {
    let criu: Task<String?, Never>
    let pump: Task<Void, Never>
    let socket: Int32
    /// What holds the link besides the pump (the target's parked stream); run last.
    let release: @Sendable () async -> Void

    /// Starts `run` (given its socket and status fd) with its socket pumped to `stream`; returns
    /// once CRIU serves. Throws, naming `what` and why, when it exits first. Raises the host's
    /// pipe size first, which both ends of post-copy need (`PostCopyHost.ensurePipes`).
    static func start(_ what: String, stream: any PeerStream, logger: Logger, release: @escaping @Sendable () async -> Void = {},
                      run: @escaping @Sendable (_ socket: Int32, _ status: Int32) async throws -> Void) async throws -> LazyPagesSession {
        PostCopyHost.ensurePipes(logger: logger)
        let ours: Int32, theirs: Int32
        do { (ours, theirs) = try SocketPair.make() } catch {
            await stream.close()
            await release()
            throw error
        }
        let pump = Task { await PeerPump.run(fd: theirs, stream: stream) }
        let status: StatusPipe
        do { status = try StatusPipe.make() } catch {
            close(ours)
            await pump.value
            await release()
            throw error
        }
        let statusWrite = status.write
        let criu = Task { () -> String? in
            // Closed once criu has exited, so the reader sees EOF if it died before serving.
            defer { close(statusWrite) }
            do {
                try await run(ours, statusWrite)
                return nil
            } catch {
                return "\(error)"
            }
        }
        let ready = await status.ready()
        let session = LazyPagesSession(criu: criu, pump: pump, socket: ours, release: release)
        guard ready else {
            let why = await session.finish() ?? "it exited before serving"
            throw InstancesError.internal("\(what) failed: \(why)")
        }
        return session
    }

    /// Waits for CRIU to end by itself (every page across, or the peer lost) and releases the
    /// link; nil when it succeeded, else why not.
    func finish() async -> String? {
        let outcome = await criu.value
        shutdown(socket, Int32(SHUT_RDWR))
        await pump.value
        close(socket)
        await release()
        return outcome
    }

    /// Ends the session before CRIU is done. `killing`: CRIU is stopped (the target's daemon,
    /// its restore failed or the move was called off); otherwise the link is shut and CRIU ends
    /// by itself (the source's dump, which must hand the frozen tasks back).
    @discardableResult
    func end(killing: Bool) async -> String? {
        if killing { criu.cancel() } else { shutdown(socket, Int32(SHUT_RDWR)) }
        return await finish()
    }
}
