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

    private init(task: Task<Void, any Error>) {
        self.task = task
    }

    /// Starts the listener when this member has peers and an HTTPS address; nil otherwise.
    static func start(https: (host: String, port: Int)?, peers: [LocalPeer], directory: PeerDirectory, identity: TLSIdentity,
                      bindAddress: String, logger: Logger) throws -> DatabaseLinkListener? {
        guard let https, peers.count > 1 else { return nil }
        let service = try APIServer.databaseLinkService(
            isMember: { directory.contains(fingerprint: $0) },
            serve: { stream in await DqlitePeerService.serve(stream, bindAddress: bindAddress, logger: logger) },
            identity: identity, host: https.host, port: https.port, logger: logger)
        let group = ServiceGroup(configuration: .init(services: [.init(service: service)], logger: logger))
        logger.debug("database link listener started", metadata: ["address": "\(https.host):\(https.port)"])
        return DatabaseLinkListener(task: Task { try await group.run() })
    }

    /// Stops listening (links already open end with it; raft reconnects through the full listener).
    func stop() async {
        task.cancel()
        _ = await task.result
    }
}
