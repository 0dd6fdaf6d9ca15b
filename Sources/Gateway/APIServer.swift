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
            server: .http1WebSocketUpgrade(webSocketRouter: router),
            configuration: .init(address: .unixDomainSocket(path: socketPath), serverName: "lxd-swift"),
            onServerRunning: { _ in chmod(socketPath, 0o660) },
            logger: logger)
    }
}
