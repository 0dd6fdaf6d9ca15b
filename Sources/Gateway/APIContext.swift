import Hummingbird
import HummingbirdWebSocket
import NIOCore

/// Who is calling, as far as authorization cares.
public enum Caller: Sendable, Equatable {
    /// The unix socket: only root (and the socket's group) can reach it, so it is trusted.
    case local
    /// HTTPS with a client certificate in the trust store.
    case trusted(fingerprint: String)
    /// HTTPS with an unknown certificate (its DER) or none.
    case untrusted(certificateDER: [UInt8]?)

    public var isTrusted: Bool {
        if case .untrusted = self { return false }
        return true
    }
}

/// The request context of both listeners: Hummingbird's core storage, the websocket hook, and
/// the caller and endpoint (set by `FrontDoor`).
public struct APIContext: RequestContext, WebSocketRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let webSocket: WebSocketHandlerReference<Self>
    /// The connection; the TLS peer certificate is read from its NIOSSL handler.
    public let channel: any Channel
    public var caller: Caller
    /// The endpoint the front door resolved and admitted the caller to (nil before it has).
    public var endpoint: Endpoint?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        webSocket = .init()
        channel = source.channel
        // Safe default: only a unix-socket connection starts trusted; HTTPS starts untrusted and
        // the front door raises it after checking the certificate.
        if case .unixDomainSocket = source.channel.localAddress {
            caller = .local
        } else {
            caller = .untrusted(certificateDER: nil)
        }
    }
}
