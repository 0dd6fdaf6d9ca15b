import NIOCore
import NIOPosix
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How `LXDClient` reaches an agent: one request/response exchange, or a websocket.
///
/// The unix-socket transport is `HTTPChannelTransport` over `UnixSocketConnector`; HTTPS with
/// mutual TLS and fail-over across member addresses plugs in as another `ChannelConnector`
/// (or another `LXDTransport`), with no change above this line.
public protocol LXDTransport: Sendable {
    /// Sends one request and returns the whole response. Never throws for HTTP error statuses
    /// (the envelope decoder maps those); throws `TransportError` when no answer arrived.
    func send(_ request: HTTPRequest) async throws -> HTTPResponse

    /// Opens a websocket with a `GET` upgrade of `request` (its own connection, never pooled).
    /// Throws `APIError` when the server answers the upgrade with an error response.
    func openWebSocket(_ request: HTTPRequest, masking: WebSocketMasking) async throws -> WebSocket

    /// Closes idle connections; later requests open new ones.
    func shutdown() async
}

extension LXDTransport {
    /// A websocket that masks its frames, as every client talking to a server it does not own.
    public func openWebSocket(_ request: HTTPRequest) async throws -> WebSocket {
        try await openWebSocket(request, masking: .rfc6455)
    }
}

/// Failures below HTTP: the request got no answer.
public enum TransportError: Error, CustomStringConvertible, Sendable, Equatable {
    /// Could not connect; nothing was sent.
    case connectFailed(endpoint: String, reason: String)
    /// The connection closed before a complete response arrived; the request may have run.
    case closedBeforeResponse(endpoint: String, request: String)
    /// A reused keep-alive connection was found closed when writing; nothing was sent.
    case staleConnection
    /// No complete response within the transport's read timeout; the request may have run.
    case timedOut(endpoint: String, request: String, milliseconds: Int64)
    /// The server refused the websocket upgrade without an LXD error body.
    case upgradeFailed(endpoint: String, request: String, reason: String)

    public var description: String {
        switch self {
        case .connectFailed(let endpoint, let reason):
            "cannot connect to \(endpoint): \(reason) (is lxdd running? set LXD_DIR or pass --socket)"
        case .closedBeforeResponse(let endpoint, let request):
            "connection to \(endpoint) closed before the response to \(request) arrived; the request may or may not have taken effect"
        case .staleConnection:
            "reused connection was already closed"
        case .timedOut(let endpoint, let request, let ms):
            "\(endpoint) did not answer \(request) within \(ms) ms; the request may or may not have taken effect"
        case .upgradeFailed(let endpoint, let request, let reason):
            "websocket upgrade of \(request) at \(endpoint) failed: \(reason)"
        }
    }
}

/// Opens raw connections to one endpoint and lets the caller set up the pipeline.
/// A TLS connector would add its TLS handler before calling `initialize`.
public protocol ChannelConnector: Sendable {
    /// For error messages, e.g. the socket path.
    var endpoint: String { get }
    /// The `Host` header value to send.
    var hostHeader: String { get }
    /// Connects; `initialize` runs on the channel's event loop before any I/O.
    func connect(_ initialize: @escaping @Sendable (Channel) throws -> Void) async throws -> Channel
}

/// Connects to an agent's unix socket.
public struct UnixSocketConnector: ChannelConnector {
    public let path: String
    public let group: any EventLoopGroup
    public let connectTimeout: TimeAmount

    public init(path: String, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, connectTimeout: TimeAmount = .seconds(10)) {
        self.path = path
        self.group = group
        self.connectTimeout = connectTimeout
    }

    public var endpoint: String { path }
    public var hostHeader: String { "lxd" }

    public func connect(_ initialize: @escaping @Sendable (Channel) throws -> Void) async throws -> Channel {
        do {
            return try await ClientBootstrap(group: group)
                .connectTimeout(connectTimeout)
                .channelInitializer { channel in
                    do {
                        try initialize(channel)
                        return channel.eventLoop.makeSucceededVoidFuture()
                    } catch {
                        return channel.eventLoop.makeFailedFuture(error)
                    }
                }
                .connect(unixDomainSocketPath: path)
                .get()
        } catch {
            throw TransportError.connectFailed(endpoint: path, reason: Self.describe(error))
        }
    }

    static func describe(_ error: any Error) -> String {
        // IOError's description repeats the syscall signature; the errno text is what helps.
        if let io = error as? IOError { return String(cString: strerror(io.errnoCode)) }
        return String(describing: error)
    }
}
