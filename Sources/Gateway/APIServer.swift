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

    public static func unixSocketService(routes: APIRoutes, socketPath: String, logger: Logger) -> some Service {
        // A stale socket from a previous run would make bind fail.
        unlink(socketPath)
        let router = routes.build()
        return Application(
            router: router,
            server: .http1WebSocketUpgrade(webSocketRouter: router, configuration: .init(ws: webSocket)),
            configuration: .init(address: .unixDomainSocket(path: socketPath), serverName: "lxd-swift"),
            onServerRunning: { _ in chmod(socketPath, 0o660) },
            logger: logger)
    }

    /// The same routes on `host:port` over TLS 1.2/1.3, presenting `identity`. Every client
    /// certificate is accepted by the handshake; `RemoteAuthMiddleware` answers 403 to the
    /// ones not in the trust store. Needs `routes.trust`.
    public static func httpsService(routes: APIRoutes, identity: TLSIdentity, host: String, port: Int, logger: Logger) throws -> some Service {
        guard routes.trust != nil else {
            throw APIError.internal("the HTTPS listener needs a trust store (APIRoutes.trust)")
        }
        let router = routes.build(remote: true)
        let tls = TLSChannelConfiguration(
            tlsConfiguration: try TLSConfigurations.server(identity),
            customVerificationCallback: TLSConfigurations.acceptAnyCertificate)
        return Application(
            router: router,
            server: try .tls(.http1WebSocketUpgrade(webSocketRouter: router, configuration: .init(ws: webSocket)), configuration: tls),
            configuration: .init(address: .hostname(host, port: port), serverName: "lxd-swift"),
            logger: logger)
    }
}
