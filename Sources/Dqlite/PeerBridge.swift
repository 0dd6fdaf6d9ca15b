import Dispatch
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A byte stream to another member's agent that carries one dqlite connection (raft peer
/// traffic or a SQL client talking to a remote leader). In the agent it is a websocket over
/// the members' mutual-TLS link, so no dqlite byte ever crosses the network in the clear.
public protocol PeerStream: Sendable {
    /// Sends bytes in order; throws once the stream is closed.
    func send(_ bytes: [UInt8]) async throws
    /// What the other end sent; finishes when either side closes.
    var received: AsyncStream<[UInt8]> { get }
    /// Ends the stream in both directions.
    func close() async
}

/// Dials peers by opening a `PeerStream` to the agent at `address` and handing dqlite one end
/// of a socketpair whose other end is pumped over that stream.
public struct BridgedPeerDialer: DqlitePeerDialer {
    public typealias Opener = @Sendable (_ address: String) async throws -> any PeerStream
    let open: Opener
    let timeout: Duration

    /// - Parameter timeout: how long raft's libuv worker may block on one dial before raft
    ///   retries later (it must stay short: raft's own timers run meanwhile).
    public init(timeout: Duration = .seconds(2), open: @escaping Opener) {
        self.open = open
        self.timeout = timeout
    }

    public func dial(address: String) throws -> Int32 {
        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            throw DqliteError.io(operation: "socketpair for a peer link to \(address)", errno: errno)
        }
        let stream: any PeerStream
        do {
            stream = try Self.blockingAwait(timeout: timeout, address: address, abandoned: { await $0.close() }) { [open] in
                try await open(address)
            }
        } catch {
            close(pair[0])
            close(pair[1])
            throw error
        }
        PeerPump.start(fd: pair[1], stream: stream)
        return pair[0]
    }

    /// Runs async work from a thread outside Swift concurrency (raft's libuv worker) and waits for it.
    /// Work that finishes after the timeout hands its value to `abandoned` (a link nobody will use
    /// must be closed, or the peer keeps serving it).
    static func blockingAwait<T: Sendable>(timeout: Duration, address: String, abandoned: @escaping @Sendable (T) async -> Void = { _ in },
                                           _ work: @escaping @Sendable () async throws -> T) throws -> T {
        // nil: still running; .some: finished; gaveUp: the caller left.
        let state = Mutex<(result: Result<T, any Error>?, gaveUp: Bool)>((nil, false))
        let done = DispatchSemaphore(value: 0)
        let task = Task {
            let r: Result<T, any Error>
            do { r = .success(try await work()) } catch { r = .failure(error) }
            let late = state.withLock { s in
                s.result = r
                return s.gaveUp
            }
            if late, case .success(let value) = r { await abandoned(value) }
            done.signal()
        }
        let ms = Int(timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        if done.wait(timeout: .now() + .milliseconds(ms)) == .timedOut {
            let finished = state.withLock { s in
                s.gaveUp = s.result == nil
                return s.result
            }
            if let finished { return try finished.get() }
            task.cancel()
            throw DqliteError.io(operation: "dial \(address) (no answer within \(timeout))", errno: ETIMEDOUT)
        }
        return try state.withLock { $0.result! }.get()
    }
}

/// The receiving side: a peer agent opened a stream for our node; connect it to our node's
/// abstract socket (which only accepts connections from this process) and pump.
public enum DqlitePeerService {
    public static func serve(_ stream: any PeerStream, bindAddress: String, logger: Logger) async {
        let fd: Int32
        do {
            fd = try connectAbstractSocket(bindAddress)
        } catch {
            logger.warning("peer link refused: local dqlite node unreachable", metadata: ["error": "\(error)"])
            await stream.close()
            return
        }
        await PeerPump.run(fd: fd, stream: stream)
    }
}

/// Copies bytes both ways between a local stream socket and a `PeerStream` until either side
/// ends, then closes both. Reads of the socket block on a thread of their own (never on
/// Swift's cooperative pool); writes go through a serial queue to keep their order.
/// Carries dqlite's links and a move's CRIU page-server connection.
public enum PeerPump {
    static func start(fd: Int32, stream: any PeerStream) {
        Task { await run(fd: fd, stream: stream) }
    }

    /// Returns when both directions are done; `fd` is closed by then.
    public static func run(fd: Int32, stream: any PeerStream) async {
        let (fromSocket, continuation) = AsyncStream<[UInt8]>.makeStream(bufferingPolicy: .unbounded)
        // A queue of its own (overcommit: a blocked read gets its own thread, never a cooperative one).
        DispatchQueue(label: "dqlite-peer-read").async {
            var buffer = [UInt8](repeating: 0, count: 64 * 1024)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n > 0 {
                    continuation.yield(Array(buffer[0..<n]))
                } else if n < 0 && errno == EINTR {
                    continue
                } else {
                    break
                }
            }
            continuation.finish()
        }
        let writes = DispatchQueue(label: "dqlite-peer-writes")
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await chunk in fromSocket {
                    do { try await stream.send(chunk) } catch { break }
                }
                await stream.close()
            }
            group.addTask {
                for await chunk in stream.received {
                    writes.sync { writeAll(fd, chunk) }
                }
                // The peer is gone: let dqlite see EOF, which also ends the reader.
                writes.sync { _ = shutdown(fd, Int32(SHUT_RDWR)) }
            }
            await group.waitForAll()
        }
        // Both directions are done and the reader has seen EOF (shutdown above or dqlite closed).
        for await _ in fromSocket {}
        close(fd)
    }

    static func writeAll(_ fd: Int32, _ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n > 0 {
                offset += n
            } else if n < 0 && errno == EINTR {
                continue
            } else {
                return
            }
        }
    }
}
