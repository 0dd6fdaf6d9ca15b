import Foundation
import Hummingbird
import HummingbirdWebSocket
import Logging
import ServiceLifecycle

/// The REST API on the local unix socket (root-only: mode 0660, owner root).
public enum APIServer {
    public static func unixSocketService(routes: APIRoutes, socketPath: String, logger: Logger) -> some Service {
        // A stale socket from a previous run would make bind fail.
        unlink(socketPath)
        let router = routes.build()
        return Application(
            router: router,
            // LXD clients send exec stdin in frames larger than the 16 KiB default.
            server: .http1WebSocketUpgrade(webSocketRouter: router, configuration: .init(ws: .init(maxFrameSize: 1 << 20))),
            configuration: .init(address: .unixDomainSocket(path: socketPath), serverName: "lxd-swift"),
            onServerRunning: { _ in chmod(socketPath, 0o660) },
            logger: logger)
    }
}
