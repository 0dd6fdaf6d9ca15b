import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import HummingbirdWebSocket
import Logging
import NIOCore
import Synchronization

/// Closes an accepted connection that has not sent its first (decrypted) bytes within a limit.
///
/// Hummingbird's websocket-capable HTTP/1 channel waits for the first request without a timeout
/// (its idle timeout starts only after a request), and a listener's graceful shutdown waits for
/// every connection: one silent peer (a dial its dialer abandoned, a stalled client) held a
/// stopping listener, and the address it was handing over, for as long as it stayed connected.
struct FirstBytesDeadline<Base: ServerChildChannel>: ServerChildChannel {
    typealias Value = Base.Value
    let base: Base
    let limit: TimeAmount
    let silent: SilentConnections

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(FirstBytesDeadlineHandler(limit: limit, silent: silent, logger: logger))
        }.flatMap {
            base.setup(channel: channel, logger: logger)
        }
    }

    func handle(value: Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }
}

/// Sits right after TLS: the first bytes it sees are the first request's, and then it leaves.
final class FirstBytesDeadlineHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    let limit: TimeAmount
    let silent: SilentConnections
    let logger: Logger
    private var timer: Scheduled<Void>?

    init(limit: TimeAmount, silent: SilentConnections, logger: Logger) {
        self.limit = limit
        self.silent = silent
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let channel = context.channel
        silent.add(channel)
        let logger = logger
        let limit = limit
        timer = context.eventLoop.scheduleTask(in: limit) {
            logger.debug("closing a connection that sent nothing", metadata: ["limit": "\(limit)"])
            channel.close(promise: nil)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        silent.remove(context.channel)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.fireChannelRead(data)
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}

/// The connections of a listener that have not sent anything yet, so that stopping it can close
/// them at once instead of waiting out their deadline.
public final class SilentConnections: Sendable {
    private struct State {
        var open: [ObjectIdentifier: any Channel] = [:]
        var closed = false
    }
    private let state = Mutex(State())

    public init() {}

    func add(_ channel: any Channel) {
        let refused = state.withLock { s in
            if !s.closed { s.open[ObjectIdentifier(channel)] = channel }
            return s.closed
        }
        if refused { channel.close(promise: nil) }
    }

    func remove(_ channel: any Channel) {
        _ = state.withLock { $0.open.removeValue(forKey: ObjectIdentifier(channel)) }
    }

    /// Closes every silent connection, and each one accepted from now on; returns how many were open.
    @discardableResult
    public func closeAll() -> Int {
        let open = state.withLock { s in
            s.closed = true
            defer { s.open = [:] }
            return Array(s.open.values)
        }
        for channel in open { channel.close(promise: nil) }
        return open.count
    }
}

extension HTTPServerBuilder {
    /// HTTP/1 with websocket upgrades over TLS, closing connections silent for `firstBytes` after accept.
    static func tlsWebSocket<WSRouter: HTTPResponderBuilder & _HB_SendableMetatype>(
        webSocketRouter: WSRouter, configuration: HTTP1WebSocketUpgradeChannel.Configuration, tls: TLSChannelConfiguration,
        firstBytes: Duration, silent: SilentConnections
    ) throws -> HTTPServerBuilder where WSRouter.Responder.Context: WebSocketRequestContext {
        let webSocketResponder = webSocketRouter.buildResponder()
        let limit = TimeAmount.nanoseconds(Int64(firstBytes.components.seconds) * 1_000_000_000 + firstBytes.components.attoseconds / 1_000_000_000)
        return .init { responder in
            try TLSChannel(
                FirstBytesDeadline(
                    base: HTTP1WebSocketUpgradeChannel(responder: responder, webSocketResponder: webSocketResponder, configuration: configuration),
                    limit: limit, silent: silent),
                configuration: tls)
        }
    }
}
