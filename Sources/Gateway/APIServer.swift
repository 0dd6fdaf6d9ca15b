import APITypes
import Foundation
import Hummingbird
import HummingbirdTLS
import HummingbirdWebSocket
import Identity
import Logging
import NIOSSL
import ServiceLifecycle

/// The REST API listeners: the local unix socket (root-only: mode 0660, owner root) and HTTPS
/// with mutual TLS for remote clients and members.
public enum APIServer {
    /// LXD clients send exec stdin in frames larger than the 16 KiB default.
    static let webSocket = WebSocketServerConfiguration(maxFrameSize: 1 << 20)
    /// Keep-alive connections with no request in progress are closed after 60 s (and at once on
    /// graceful shutdown); clients that pool connections (Forwarder) drop theirs sooner.
    static let channel = HTTP1WebSocketUpgradeChannel.Configuration(http1: .init(idleTimeout: .seconds(60)), ws: webSocket)
    /// A client has this long after connecting to finish TLS and send its first request
    /// (FirstBytesDeadline); a silent connection would otherwise hold a stopping listener.
    public static let firstBytesDeadline: Duration = .seconds(10)

    public static func unixSocketService(routes: APIRoutes, socketPath: String, logger: Logger) -> some Service {
        // A stale socket from a previous run would make bind fail.
        unlink(socketPath)
        let router = routes.build()
        return Application(
            router: router,
            server: .http1WebSocketUpgrade(webSocketRouter: router, configuration: channel),
            configuration: .init(address: .unixDomainSocket(path: socketPath), serverName: "lxd-swift"),
            onServerRunning: { _ in chmod(socketPath, 0o660) },
            logger: logger)
    }

    /// The same routes on `host:port` over TLS 1.2/1.3, presenting `identity`. Every client
    /// certificate is accepted by the handshake; the front door (`AccessControl`) answers 403
    /// to callers an endpoint does not admit.
    public static func httpsService(routes: APIRoutes, identity: TLSIdentity, host: String, port: Int, logger: Logger) throws -> some Service {
        let router = routes.build(remote: true)
        var server = try TLSConfigurations.server(identity)
        // Closing a connection waits for the peer's TLS close_notify, but an idle keep-alive
        // connection is no longer read once its handler is done, so the wait always ran to the
        // default 5 s and held up graceful shutdown for every pooled member connection.
        server.shutdownTimeout = .milliseconds(200)
        let tls = TLSChannelConfiguration(
            tlsConfiguration: server,
            customVerificationCallback: TLSConfigurations.acceptAnyCertificate)
        let silent = SilentConnections()
        return ClosingSilentConnections(silent: silent, server: Application(
            router: router,
            server: try .tlsWebSocket(webSocketRouter: router, configuration: channel, tls: tls, firstBytes: firstBytesDeadline, silent: silent),
            configuration: .init(address: .hostname(host, port: port), serverName: "lxd-swift"),
            logger: logger))
    }
}

/// Runs `server` and, when the agent shuts down gracefully, closes its connections that have
/// not sent anything yet, which the server's own shutdown would wait for.
struct ClosingSilentConnections<Server: Service>: Service {
    let silent: SilentConnections
    let server: Server

    func run() async throws {
        try await withGracefulShutdownHandler {
            try await server.run()
        } onGracefulShutdown: {
            silent.closeAll()
        }
    }
}
