import Cluster
import Dqlite
import Gateway
import Identity
import Logging
import Operations
import ServiceLifecycle
import Synchronization

/// The HTTPS address serving only database peer links while this member opens its database.
///
/// The full API listener starts after the database is open, but a member of a cluster can only
/// open it once a quorum elects a leader, and election traffic rides those listeners: when every
/// member starts at once (after `make stop`, a power cut), none would ever open. This listener
/// carries the links meanwhile; it is stopped before the full listener binds the same address.
final class DatabaseLinkListener: Sendable {
    private let task: Task<Void, any Error>
    private let links: OpenLinks
    private let silent: SilentConnections
    private let logger: Logger

    private init(task: Task<Void, any Error>, links: OpenLinks, silent: SilentConnections, logger: Logger) {
        self.task = task
        self.links = links
        self.silent = silent
        self.logger = logger
    }

    /// How long a connection may take to send its first bytes after it is accepted: a little
    /// longer than raft's dial timeout (BridgedPeerDialer), after which the dialer has given up.
    static let firstBytesDeadline: Duration = .seconds(3)

    /// Starts the listener when this member has peers and an HTTPS address; nil otherwise.
    static func start(https: (host: String, port: Int)?, peers: [LocalPeer], directory: PeerDirectory, identity: TLSIdentity,
                      bindAddress: String, logger: Logger) throws -> DatabaseLinkListener? {
        guard let https, peers.count > 1 else { return nil }
        // Stopping cancels the server under its open links, which Hummingbird reports as errors:
        // expected here, so its own logs are kept quiet and a real failure is logged by stop().
        var quiet = logger
        quiet.logLevel = .critical
        let links = OpenLinks()
        let silent = SilentConnections()
        let service = try APIServer.databaseLinkService(
            isMember: { directory.contains(fingerprint: $0) },
            serve: { stream in
                await links.serve(stream) { await DqlitePeerService.serve($0, bindAddress: bindAddress, logger: logger) }
            },
            identity: identity, host: https.host, port: https.port, firstBytes: firstBytesDeadline, silent: silent, logger: quiet)
        let group = ServiceGroup(configuration: .init(services: [.init(service: service)], logger: quiet))
        logger.debug("database link listener started", metadata: ["address": "\(https.host):\(https.port)"])
        return DatabaseLinkListener(task: Task { try await group.run() }, links: links, silent: silent, logger: logger)
    }

    /// Stops listening and ends the links still open (raft re-dials them through the full listener).
    ///
    /// The server's shutdown waits for every connection it accepted, so it is told to drop them:
    /// open peer links and connections that have not sent anything yet. A closed link still
    /// goes through the websocket and TLS goodbyes with its peer, so the wait for the server is
    /// bounded: its listening socket closes at once, and the full listener may bind meanwhile.
    func stop() async {
        let started = ContinuousClock.now
        let silentClosed = silent.closeAll()
        let linksClosed = await links.closeAll()
        task.cancel()
        guard let finished = await Deadline.first(task, within: Self.drainLimit) else {
            logger.notice("database link listener still closing its links; the API listener takes the address over meanwhile",
                          metadata: ["links-closed": "\(linksClosed)", "waited": "\(Self.drainLimit)"])
            return
        }
        if case .failure(let error) = finished, !(error is CancellationError) {
            logger.warning("the database link listener failed; members starting together may wait for each other",
                           metadata: ["error": "\(error)"])
        }
        logger.debug("database link listener stopped", metadata: [
            "links-closed": "\(linksClosed)", "silent-closed": "\(silentClosed)", "took": "\(ContinuousClock.now - started)",
        ])
    }

    /// How long stop() waits for the closed connections' goodbyes.
    static let drainLimit: Duration = .seconds(1)
}

/// The peer links a listener serves, so that stopping it can end them.
final class OpenLinks: Sendable {
    private struct State {
        var next = 0
        var open: [Int: any PeerStream] = [:]
        var closed = false
    }
    private let state = Mutex(State())

    /// Serves `stream` with `body`; a stream arriving after `closeAll` is closed at once.
    func serve(_ stream: any PeerStream, _ body: (any PeerStream) async -> Void) async {
        let id: Int? = state.withLock { s in
            guard !s.closed else { return nil }
            s.next += 1
            s.open[s.next] = stream
            return s.next
        }
        guard let id else {
            await stream.close()
            return
        }
        await body(stream)
        _ = state.withLock { $0.open.removeValue(forKey: id) }
    }

    /// Closes every open link and refuses later ones; returns how many were open.
    func closeAll() async -> Int {
        let open = state.withLock { s in
            s.closed = true
            defer { s.open = [:] }
            return Array(s.open.values)
        }
        for stream in open { await stream.close() }
        return open.count
    }
}

/// The full HTTPS listener, started only once the links listener has let go of the address:
/// as late as possible, so the peers' links are down for the shortest time.
struct DatabaseLinkHandover<Listener: Service>: Service {
    let links: DatabaseLinkListener?
    let listener: Listener

    init(_ links: DatabaseLinkListener?, then listener: Listener) {
        self.links = links
        self.listener = listener
    }

    func run() async throws {
        await links?.stop()
        try await listener.run()
    }
}
