import APITypes
import NIOCore
import NIOHTTP1
import NIOWebSocket
import Synchronization

public enum WebSocketMessage: Sendable, Equatable {
    case binary([UInt8])
    case text(String)
}

/// Whether a client websocket masks the frames it sends.
public enum WebSocketMasking: Sendable {
    /// As RFC 6455 requires of clients: every frame masked with a fresh random key.
    case rfc6455
    /// Frames go as they are. Only for links between our own agents over mutual TLS: masking
    /// shields intermediaries from bytes a browser script chose, and such a link has neither;
    /// it costs a pass over every byte at both ends (seconds per 64 MB of instance memory in a
    /// debug build). Our server takes masked and unmasked frames alike.
    case unmasked

    var key: WebSocketMaskingKey? {
        switch self {
        case .rfc6455: .random()
        case .unmasked: nil
        }
    }
}

/// A client websocket: incoming data messages as a stream, outgoing frames masked as RFC 6455
/// requires of clients (unless opened `.unmasked`). Ping/pong and the close handshake are
/// answered internally.
public final class WebSocket: Sendable {
    let channel: any Channel
    let masking: WebSocketMasking
    /// Data messages in arrival order; finishes when the peer closes or the connection drops.
    /// Binary fragments are delivered as they arrive (a byte stream does not care about framing).
    /// Iterate it once: it is a single-consumer stream.
    public let messages: WebSocketMessages
    private let heard: FrameArrivals

    init(channel: any Channel, masking: WebSocketMasking, messages: WebSocketMessages, heard: FrameArrivals) {
        self.channel = channel
        self.masking = masking
        self.messages = messages
        self.heard = heard
    }

    /// When the last frame of any kind (data, ping, pong, close) arrived; the open time until
    /// then. A quiet link is told from a dead one by pinging and watching this move.
    public var lastHeard: ContinuousClock.Instant { heard.last }

    /// Sends a ping without waiting: a peer that stopped reading must not hold up the caller
    /// (whose job is then to notice that `lastHeard` stays put).
    public func ping() {
        let frame = WebSocketFrame(fin: true, opcode: .ping, maskKey: masking.key, data: ByteBuffer())
        channel.writeAndFlush(frame, promise: nil)
    }

    public func send(binary bytes: [UInt8]) async throws {
        try await send(opcode: .binary, ByteBuffer(bytes: bytes))
    }

    public func send(text: String) async throws {
        try await send(opcode: .text, ByteBuffer(string: text))
    }

    /// Starts the close handshake (status 1000) and waits, at most `timeout`, for the peer to
    /// answer and the connection to end; then closes it regardless.
    public func close(timeout: TimeAmount = .seconds(2)) async {
        let channel = self.channel
        // Armed before sending: a peer that stopped reading may never let the close frame out.
        let deadline = channel.eventLoop.scheduleTask(in: timeout) { channel.close(promise: nil) }
        var payload = ByteBuffer()
        payload.writeInteger(UInt16(1000))
        try? await send(opcode: .connectionClose, payload)
        try? await channel.closeFuture.get()
        deadline.cancel()
    }

    func send(opcode: WebSocketOpcode, _ data: ByteBuffer) async throws {
        let frame = WebSocketFrame(fin: true, opcode: opcode, maskKey: masking.key, data: data)
        try await channel.writeAndFlush(frame)
    }

    /// Opens a websocket on a fresh connection from `connector` by upgrading a GET of `request`.
    static func open(_ request: HTTPRequest, connector: any ChannelConnector, masking: WebSocketMasking,
                     maxFrameSize: Int = 1 << 24) async throws -> WebSocket {
        let channel = try await connector.connect { _ in }
        let (messages, continuation) = AsyncStream.makeStream(of: WebSocketMessage.self)
        let window = InboundWindow()
        let heard = FrameArrivals()
        let endpoint = connector.endpoint
        let host = connector.hostHeader
        let upgraded: EventLoopFuture<Void> = channel.eventLoop.flatSubmit {
            let promise = channel.eventLoop.makePromise(of: Void.self)
            let upgrader = NIOWebSocketClientUpgrader(maxFrameSize: maxFrameSize, automaticErrorHandling: true) { channel, _ in
                do {
                    let ops = channel.pipeline.syncOperations
                    ops.removeHandler(context: try ops.context(name: UpgradeRefusalHandler.name), promise: nil)
                    try ops.addHandler(WebSocketStreamHandler(continuation, masking: masking, window: window, heard: heard))
                    return channel.eventLoop.makeSucceededVoidFuture()
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
            }
            let config: NIOHTTPClientUpgradeConfiguration = (upgraders: [upgrader], completionHandler: { _ in promise.succeed(()) })
            do {
                let ops = channel.pipeline.syncOperations
                // Frames the server sends right behind its 101 must reach the websocket decoder.
                try ops.addHTTPClientHandlers(leftOverBytesStrategy: .forwardBytes, withClientUpgrade: config)
                try ops.addHandler(UpgradeRefusalHandler(promise: promise, endpoint: endpoint, request: request.target), name: UpgradeRefusalHandler.name)
            } catch {
                promise.fail(error)
                return promise.futureResult
            }
            var headers = HTTPHeaders()
            headers.add(name: "Host", value: host)
            for (name, value) in request.headers { headers.add(name: name, value: value) }
            let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: request.target, headers: headers)
            channel.write(HTTPClientRequestPart.head(head), promise: nil)
            channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
            return promise.futureResult
        }
        do {
            try await upgraded.get()
        } catch {
            continuation.finish()
            try? await channel.close()
            throw error
        }
        heard.mark()
        return WebSocket(channel: channel, masking: masking, messages: WebSocketMessages(stream: messages, window: window, channel: channel), heard: heard)
    }
}

/// The instant the last frame arrived, written on the event loop and read by whoever judges the
/// link's liveness.
final class FrameArrivals: Sendable {
    private let instant = Mutex(ContinuousClock.now)
    func mark() { instant.withLock { $0 = .now } }
    var last: ContinuousClock.Instant { instant.withLock { $0 } }
}

/// Received messages, with flow control: `WebSocketStreamHandler` stops reading from the socket
/// while more than `InboundWindow.high` bytes wait here, so a sender faster than our consumer
/// (exec output piped into a slow reader) meets socket backpressure instead of filling memory.
public struct WebSocketMessages: AsyncSequence, Sendable {
    public typealias Element = WebSocketMessage
    let stream: AsyncStream<WebSocketMessage>
    let window: InboundWindow
    let channel: any Channel

    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: AsyncStream<WebSocketMessage>.AsyncIterator
        let window: InboundWindow
        let channel: any Channel

        public mutating func next() async -> WebSocketMessage? {
            guard let message = await base.next() else { return nil }
            if window.taken(message.byteCount) {
                // Re-enabling autoRead also issues the next read.
                channel.setOption(ChannelOptions.autoRead, value: true).whenComplete { _ in }
            }
            return message
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(base: stream.makeAsyncIterator(), window: window, channel: channel)
    }
}

/// Bytes received but not yet taken by the consumer, and whether reading is paused for them.
final class InboundWindow: Sendable {
    struct State {
        var buffered = 0
        var paused = false
    }
    private let state = Mutex(State())
    let high: Int
    let low: Int

    init(high: Int = 4 << 20, low: Int = 1 << 20) {
        self.high = high
        self.low = low
    }

    /// On the event loop after queueing `count` bytes; true when reading must pause.
    func queued(_ count: Int) -> Bool {
        state.withLock { s in
            s.buffered += count
            guard !s.paused, s.buffered > high else { return false }
            s.paused = true
            return true
        }
    }

    /// By the consumer after taking `count` bytes; true when reading must resume.
    func taken(_ count: Int) -> Bool {
        state.withLock { s in
            s.buffered -= count
            guard s.paused, s.buffered <= low else { return false }
            s.paused = false
            return true
        }
    }
}

extension WebSocketMessage {
    var byteCount: Int {
        switch self {
        case .binary(let b): b.count
        case .text(let s): s.utf8.count
        }
    }
}

/// Sits behind the HTTP upgrade handler: when the server answers the upgrade with anything but
/// 101, it reads that response and fails the upgrade with the LXD error it carries.
final class UpgradeRefusalHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    static let name = "lxd-upgrade-refusal"

    private let promise: EventLoopPromise<Void>
    private let endpoint: String
    private let request: String
    private var head: HTTPResponseHead?
    private var body = ByteBuffer()

    init(promise: EventLoopPromise<Void>, endpoint: String, request: String) {
        self.promise = promise
        self.endpoint = endpoint
        self.request = request
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h): head = h
        case .body(var b): body.writeBuffer(&b)
        case .end:
            let response = HTTPResponse(status: Int(head?.status.code ?? 0), body: Array(buffer: body))
            let error: any Error = Envelope.error(in: response)
                ?? TransportError.upgradeFailed(endpoint: endpoint, request: request, reason: "server answered HTTP \(response.status) instead of 101")
            promise.fail(error)
            context.close(promise: nil)
        }
    }

    // The upgrade handler reports a refused upgrade as an error just before passing the
    // response on; the response (read above) is the better explanation, so keep waiting for it.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if error is NIOHTTPClientUpgradeError { return }
        promise.fail(TransportError.upgradeFailed(endpoint: endpoint, request: request, reason: "\(error)"))
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(TransportError.upgradeFailed(endpoint: endpoint, request: request, reason: "connection closed during the upgrade"))
        context.fireChannelInactive()
    }
}

/// Feeds received frames into the message stream and handles control frames.
final class WebSocketStreamHandler: ChannelDuplexHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private let continuation: AsyncStream<WebSocketMessage>.Continuation
    private let masking: WebSocketMasking
    private let window: InboundWindow
    private let heard: FrameArrivals
    private var closeSent = false
    private var fragmentedText: [UInt8]?

    init(_ continuation: AsyncStream<WebSocketMessage>.Continuation, masking: WebSocketMasking, window: InboundWindow,
         heard: FrameArrivals) {
        self.continuation = continuation
        self.masking = masking
        self.window = window
        self.heard = heard
    }

    private func deliver(_ message: WebSocketMessage, _ context: ChannelHandlerContext) {
        continuation.yield(message)
        if window.queued(message.byteCount) {
            context.channel.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in }
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let frame = unwrapOutboundIn(data)
        if frame.opcode == .connectionClose {
            if closeSent { promise?.succeed(()); return }
            closeSent = true
        }
        context.write(data, promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        let payload = frame.unmaskedData
        heard.mark()
        switch frame.opcode {
        case .binary:
            deliver(.binary(Array(buffer: payload)), context)
        case .text:
            if frame.fin {
                deliver(.text(String(buffer: payload)), context)
            } else {
                fragmentedText = Array(buffer: payload)
            }
        case .continuation:
            if fragmentedText != nil {
                fragmentedText! += Array(buffer: payload)
                if frame.fin, let bytes = fragmentedText {
                    deliver(.text(String(decoding: bytes, as: UTF8.self)), context)
                    fragmentedText = nil
                }
            } else {
                deliver(.binary(Array(buffer: payload)), context)
            }
        case .ping:
            let pong = WebSocketFrame(fin: true, opcode: .pong, maskKey: masking.key, data: payload)
            context.writeAndFlush(wrapOutboundOut(pong), promise: nil)
        case .connectionClose:
            continuation.finish()
            if closeSent {
                context.close(promise: nil)
            } else {
                // Echo the status code, as RFC 6455 asks, then end the connection.
                closeSent = true
                var reply = ByteBuffer()
                if var p = Optional(payload), let code = p.readInteger(as: UInt16.self) { reply.writeInteger(code) }
                let frame = WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: masking.key, data: reply)
                let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
                context.writeAndFlush(wrapOutboundOut(frame)).whenComplete { _ in bound.value.close(promise: nil) }
            }
        default:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        continuation.finish()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        continuation.finish()
        context.close(promise: nil)
    }
}
