import NIOCore

/// HTTP/1.1 over connections from a `ChannelConnector`, reusing keep-alive connections.
///
/// Idle connections are bounded (`maxIdleConnections`) and closed after `idleTimeout`, so a
/// long-lived client (an agent forwarding to its peers) holds few sockets, and a server that
/// closes its idle connections on shutdown costs at most one retry here.
public final class HTTPChannelTransport: LXDTransport {
    public let connector: any ChannelConnector
    /// How long a whole response may take to arrive after the request; nil waits forever
    /// (operation waits and event streams need that). Websockets never use it.
    public let readTimeout: TimeAmount?
    private let idle: IdleConnections

    public init(connector: any ChannelConnector, maxIdleConnections: Int = 4, idleTimeout: TimeAmount? = nil, readTimeout: TimeAmount? = nil) {
        self.connector = connector
        self.readTimeout = readTimeout
        self.idle = IdleConnections(limit: maxIdleConnections, timeout: idleTimeout)
    }

    /// The transport for an agent's unix socket.
    public static func unixSocket(_ path: String) -> HTTPChannelTransport {
        HTTPChannelTransport(connector: UnixSocketConnector(path: path))
    }

    public func send(_ request: HTTPRequest) async throws -> HTTPResponse {
        if let reused = await idle.take() {
            do {
                return try await exchange(request, on: reused)
            } catch TransportError.staleConnection {
                // Never written: safe to send again on a fresh connection.
            } catch TransportError.closedBeforeResponse where request.method.isSafeToResend {
                // The server may close an idle connection just as we reuse it (it shuts down, or its
                // idle timeout ran out); a GET can be re-sent. Other methods may have run: the
                // caller hears so rather than a silent second attempt.
            }
        }
        let fresh = try await connect()
        return try await exchange(request, on: fresh)
    }

    public func openWebSocket(_ request: HTTPRequest, masking: WebSocketMasking) async throws -> WebSocket {
        try await WebSocket.open(request, connector: connector, masking: masking)
    }

    public func shutdown() async {
        for connection in await idle.drain() { await connection.close() }
    }

    private func connect() async throws -> HTTPConnection {
        let endpoint = connector.endpoint
        let channel = try await connector.connect { channel in
            try HTTPConnection.initialize(channel, endpoint: endpoint)
        }
        return HTTPConnection(channel: channel, hostHeader: connector.hostHeader, endpoint: endpoint)
    }

    private func exchange(_ request: HTTPRequest, on connection: HTTPConnection) async throws -> HTTPResponse {
        let result: ExchangeResult
        do {
            result = try await connection.execute(request, readTimeout: readTimeout)
        } catch {
            await connection.close()
            throw error
        }
        var kept = false
        if result.keepAlive && connection.channel.isActive {
            kept = await idle.put(connection)
        }
        if !kept { await connection.close() }
        return result.response
    }
}
