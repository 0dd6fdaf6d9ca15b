import NIOCore

/// HTTP/1.1 over connections from a `ChannelConnector`, reusing keep-alive connections.
public final class HTTPChannelTransport: LXDTransport {
    public let connector: any ChannelConnector
    private let idle: IdleConnections

    public init(connector: any ChannelConnector, maxIdleConnections: Int = 4) {
        self.connector = connector
        self.idle = IdleConnections(limit: maxIdleConnections)
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
                // The server may close an idle connection just as we reuse it; a GET can be re-sent.
            }
        }
        let fresh = try await connect()
        return try await exchange(request, on: fresh)
    }

    public func openWebSocket(_ request: HTTPRequest) async throws -> WebSocket {
        try await WebSocket.open(request, connector: connector)
    }

    public func shutdown() async {
        for connection in await idle.drain() { await connection.close() }
    }

    private func connect() async throws -> HTTPConnection {
        let endpoint = connector.endpoint
        let channel = try await connector.connect { channel in
            try HTTPConnection.initialize(channel, endpoint: endpoint)
        }
        return HTTPConnection(channel: channel, hostHeader: connector.hostHeader)
    }

    private func exchange(_ request: HTTPRequest, on connection: HTTPConnection) async throws -> HTTPResponse {
        let result: ExchangeResult
        do {
            result = try await connection.execute(request)
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
