import Dqlite
import Gateway
import Identity
import Logging
import ServiceLifecycle

/// The HTTPS address serving only database peer links while this member opens its database.
///
/// The full API listener starts after the database is open, but a member of a cluster can only
/// open it once a quorum elects a leader, and election traffic rides those listeners: when every
/// member starts at once (after `make stop`, a power cut), none would ever open. This listener
/// carries the links meanwhile; it is stopped before the full listener binds the same address.
final class DatabaseLinkListener: Sendable {
    private let task: Task<Void, any Error>
    private let logger: Logger

    private init(task: Task<Void, any Error>, logger: Logger) {
        self.task = task
        self.logger = logger
    }

    /// Starts the listener when this member has peers and an HTTPS address; nil otherwise.
    static func start(https: (host: String, port: Int)?, peers: [LocalPeer], directory: PeerDirectory, identity: TLSIdentity,
                      bindAddress: String, logger: Logger) throws -> DatabaseLinkListener? {
        guard let https, peers.count > 1 else { return nil }
        // Stopping cancels the server under its open links, which Hummingbird reports as errors:
        // expected here, so its own logs are kept quiet and a real failure is logged by stop().
        var quiet = logger
        quiet.logLevel = .critical
        let service = try APIServer.databaseLinkService(
            isMember: { directory.contains(fingerprint: $0) },
            serve: { stream in await DqlitePeerService.serve(stream, bindAddress: bindAddress, logger: logger) },
            identity: identity, host: https.host, port: https.port, logger: quiet)
        let group = ServiceGroup(configuration: .init(services: [.init(service: service)], logger: quiet))
        logger.debug("database link listener started", metadata: ["address": "\(https.host):\(https.port)"])
        return DatabaseLinkListener(task: Task { try await group.run() }, logger: logger)
    }

    /// Stops listening (links already open end with it; raft reconnects through the full listener).
    func stop() async {
        task.cancel()
        if case .failure(let error) = await task.result, !(error is CancellationError) {
            logger.warning("the database link listener failed; members starting together may wait for each other",
                           metadata: ["error": "\(error)"])
        }
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
