import Dispatch
import Logging
import Synchronization

/// A bounded pool of leader connections with an async face.
///
/// Each connection runs its blocking work on its own serial DispatchQueue, so
/// callers' tasks suspend instead of holding a cooperative-pool thread while a
/// statement travels to the node. One caller holds a connection at a time
/// (a transaction must stay on one connection). Connections are opened lazily
/// against the current leader, found by asking the seeds (LEADER); those that
/// fail with a socket error or a not-leader answer are dropped, not reused.
public actor DqlitePool {
    public struct Configuration: Sendable {
        /// Cluster addresses to ask for the leader, in order.
        public var seeds: [String]
        /// Turns a cluster address into a connected socket (abstract socket locally, the agent's proxy for peers).
        public var dialer: any DqlitePeerDialer
        public var database: String
        public var maxConnections: Int
        /// How long to keep looking for a leader (a fresh node needs an election timeout).
        public var leaderTimeout: Duration
        /// Per-call socket timeout: a node that does not answer within it fails the call.
        public var ioTimeoutSeconds: Int
        /// Per-call timeout while looking for the leader (LEADER, OPEN, session statements): a live
        /// node answers those in milliseconds, and a link that went silent under a member starting
        /// (its links listener handing over) must not hold the whole search for `ioTimeoutSeconds`.
        public var probeTimeoutSeconds: Int
        /// Run on every new connection right after OPEN (per-connection settings such as PRAGMA foreign_keys).
        public var sessionStatements: [String]

        public init(seeds: [String], dialer: any DqlitePeerDialer, database: String = "db", maxConnections: Int = 4,
                    leaderTimeout: Duration = .seconds(10), ioTimeoutSeconds: Int = 30, probeTimeoutSeconds: Int = 2,
                    sessionStatements: [String] = []) {
            self.sessionStatements = sessionStatements
            self.seeds = seeds
            self.dialer = dialer
            self.database = database
            self.maxConnections = max(1, maxConnections)
            self.leaderTimeout = leaderTimeout
            self.ioTimeoutSeconds = ioTimeoutSeconds
            self.probeTimeoutSeconds = min(probeTimeoutSeconds, ioTimeoutSeconds)
        }
    }

    public nonisolated let configuration: Configuration
    private let logger: Logger
    private var idle: [DqliteConnection] = []
    private var openCount = 0
    private var waiters: [CheckedContinuation<Void, Never>] = []
    private var closed = false

    public init(configuration: Configuration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    /// A pool talking to a node in this process (single member, or this member's node as the only seed).
    public init(node: DqliteNode, maxConnections: Int = 4, sessionStatements: [String] = [], logger: Logger) {
        self.init(configuration: Configuration(seeds: [node.address], dialer: node.localDialer, maxConnections: maxConnections,
                                               sessionStatements: sessionStatements), logger: logger)
    }

    /// Runs `body` with exclusive use of a leader connection, on that connection's own thread.
    ///
    /// `body` blocks on the network; it is run on a dedicated queue and the caller
    /// suspends meanwhile. The connection is returned to the pool afterwards unless
    /// an error showed it is unusable. Waiting for a free connection is not cancellable.
    public nonisolated func withConnection<T: Sendable>(_ body: @Sendable (DqliteConnection) throws -> T) async throws -> T {
        let connection = try await checkout()
        let result: Result<T, any Error> = await withoutActuallyEscaping(body) { escapable in
            // The continuation resumes only after the body ran and the slot dropped it, so the
            // closure never outlives this call (withoutActuallyEscaping checks exactly that).
            let slot = ClosureSlot(escapable)
            return await withCheckedContinuation { continuation in
                connection.queue.async {
                    let result = slot.run(connection)
                    continuation.resume(returning: result)
                }
            }
        }
        let reusable: Bool
        if case .failure(let error as DqliteError) = result {
            reusable = !error.invalidatesConnection
        } else {
            reusable = true
        }
        await checkin(connection, reusable: reusable)
        return try result.get()
    }

    /// Closes idle connections and refuses new checkouts; connections in use close when returned.
    public func close() {
        closed = true
        for c in idle { c.close() }
        openCount -= idle.count
        idle.removeAll()
        let pending = waiters
        waiters.removeAll()
        for w in pending { w.resume() }
    }

    /// Connections currently open (idle + in use), for tests and diagnostics.
    public var openConnections: Int { openCount }

    private func checkout() async throws -> DqliteConnection {
        while true {
            if closed { throw DqliteError.poolClosed }
            if let c = idle.popLast() { return c }
            if openCount < configuration.maxConnections {
                openCount += 1
                do {
                    return try await Self.connectToLeader(configuration, logger: logger)
                } catch {
                    openCount -= 1
                    wakeOne()
                    throw error
                }
            }
            await withCheckedContinuation { waiters.append($0) }
        }
    }

    private func checkin(_ connection: DqliteConnection, reusable: Bool) {
        if reusable && !closed && connection.isOpen {
            idle.append(connection)
        } else {
            connection.close()
            openCount -= 1
        }
        wakeOne()
    }

    private func wakeOne() {
        if !waiters.isEmpty { waiters.removeFirst().resume() }
    }

    /// Asks each seed for the leader until one answers with a leader we can reach and open the database on.
    static func connectToLeader(_ config: Configuration, logger: Logger) async throws -> DqliteConnection {
        let clock = ContinuousClock()
        let deadline = clock.now + config.leaderTimeout
        var lastError: (any Error)?
        var delay = Duration.milliseconds(10)
        while true {
            for seed in config.seeds {
                let tried = clock.now
                do {
                    if let connection = try await runBlocking({ try attempt(seed: seed, config: config) }) {
                        return connection
                    }
                    lastError = DqliteError.noLeader("\(seed) knows no leader yet (election in progress)")
                } catch {
                    lastError = error
                    logger.debug("dqlite seed unusable", metadata: ["seed": "\(seed)", "error": "\(error)", "after": "\(clock.now - tried)"])
                }
            }
            if clock.now >= deadline {
                throw DqliteError.noLeader("none of \(config.seeds) led to a leader within \(config.leaderTimeout); last error: \(lastError.map { "\($0)" } ?? "none"). Check that the node is started and a quorum of members is up")
            }
            try await Task.sleep(for: delay)
            // Capped low: after a leader dies, every poll interval here adds straight to the
            // time writes wait, and one poll costs a few local round trips.
            delay = min(delay * 2, .milliseconds(50))
        }
    }

    /// One blocking try: nil when the seed knows no leader yet.
    private static func attempt(seed: String, config: Configuration) throws -> DqliteConnection? {
        let probe = try DqliteConnection(fd: try config.dialer.dial(address: seed), address: seed, timeoutSeconds: config.probeTimeoutSeconds)
        guard let leader = try probe.leader() else {
            probe.close()
            return nil
        }
        let connection: DqliteConnection
        if leader.address == seed {
            connection = probe
        } else {
            probe.close()
            connection = try DqliteConnection(fd: try config.dialer.dial(address: leader.address), address: leader.address, timeoutSeconds: config.probeTimeoutSeconds)
        }
        do {
            try connection.open(config.database)
            for statement in config.sessionStatements { try connection.exec(statement) }
        } catch {
            connection.close()
            throw error
        }
        connection.setTimeout(seconds: config.ioTimeoutSeconds)
        return connection
    }
}

/// Runs a blocking call off the cooperative pool.
///
/// Not on `DispatchQueue.global()`: on Linux Swift's cooperative threads come from that same
/// root queue, as wide as the cores. A leader search dials peers through the agent's links, and
/// opening a link is async work, so two searches blocked there (two cores) left no thread to
/// open the links they waited for: everything stalled until the dial timeout (seen as a 1.7 s
/// pause of a joining member's start). A serial queue of its own runs on an overcommit thread.
func runBlocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue(label: "dqlite-blocking").async {
            continuation.resume(with: Result { try body() })
        }
    }
}

/// Holds the caller's closure until it has run once, then drops it.
private final class ClosureSlot<T>: Sendable {
    private let body: Mutex<(@Sendable (DqliteConnection) throws -> T)?>

    init(_ body: @escaping @Sendable (DqliteConnection) throws -> T) {
        self.body = Mutex(body)
    }

    func run(_ connection: DqliteConnection) -> Result<T, any Error> {
        guard let body = body.withLock({ slot in defer { slot = nil }; return slot }) else {
            return .failure(DqliteError.poolClosed)
        }
        return Result { try body(connection) }
    }
}
