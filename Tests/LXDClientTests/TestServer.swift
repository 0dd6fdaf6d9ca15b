import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket
import Synchronization

/// A tiny HTTP/1.1 + websocket server on a temporary unix socket, for exercising the client
/// over real sockets and real bytes. Routes are async closures; websockets are served by
/// `WebSocketRoute`s picked by the `secret` query parameter.
struct TestRequest: Sendable {
    var method: String
    var uri: String
    var headers: [(String, String)]
    var body: [UInt8]

    var path: String { String(uri.split(separator: "?", maxSplits: 1).first ?? "") }
    var query: [String: String] {
        guard let q = uri.split(separator: "?", maxSplits: 1).dropFirst().first else { return [:] }
        var out: [String: String] = [:]
        for pair in q.split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1).map(String.init)
            out[kv[0].removingPercentEncoding ?? kv[0]] = kv.count > 1 ? (kv[1].removingPercentEncoding ?? kv[1]) : ""
        }
        return out
    }
    func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name.lowercased() }?.1 }
}

struct TestReply: Sendable {
    var status: Int
    var headers: [(String, String)] = []
    var body: [UInt8]

    static func json(_ status: Int, _ text: String) -> TestReply {
        TestReply(status: status, headers: [("Content-Type", "application/json")], body: Array(text.utf8))
    }
}

/// What a websocket on the test server does with its channel.
enum WebSocketRoute: Sendable {
    /// Echo every data frame back with the same opcode.
    case echo
    /// Hand the channel and each received frame to a closure.
    case custom(@Sendable (Channel, WebSocketFrame) -> Void, onOpen: @Sendable (Channel) -> Void)
}

final class TestServer: Sendable {
    let path: String
    private let channel: any Channel
    private let counters: Counters

    /// Connections the server accepted so far (keep-alive reuse keeps this low).
    var acceptedConnections: Int { counters.accepted.withLock { $0 } }
    /// Every HTTP request received (not websocket frames), in order.
    var requests: [TestRequest] { counters.requests.withLock { $0 } }

    private init(path: String, channel: any Channel, counters: Counters) {
        self.path = path
        self.channel = channel
        self.counters = counters
    }

    private final class Counters: Sendable {
        let accepted = Mutex(0)
        let requests = Mutex<[TestRequest]>([])
    }

    static func start(
        routes: @escaping @Sendable (TestRequest) async -> TestReply,
        webSockets: @escaping @Sendable (_ secret: String) -> WebSocketRoute? = { _ in nil },
        // Hummingbird's (and NIO's) default: a client sending bigger frames gets disconnected.
        maxFrameSize: Int = 1 << 14
    ) async throws -> TestServer {
        let path = "/tmp/lxdclient-test-\(UUID().uuidString.prefix(8)).sock"
        unlink(path)
        let counters = Counters()
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                counters.accepted.withLock { $0 += 1 }
                let upgrader = NIOWebSocketServerUpgrader(
                    maxFrameSize: maxFrameSize,
                    shouldUpgrade: { channel, head in
                        let secret = TestRequest(method: "GET", uri: head.uri, headers: [], body: []).query["secret"] ?? ""
                        return channel.eventLoop.makeSucceededFuture(webSockets(secret) == nil ? nil : HTTPHeaders())
                    },
                    upgradePipelineHandler: { channel, head in
                        let secret = TestRequest(method: "GET", uri: head.uri, headers: [], body: []).query["secret"] ?? ""
                        do {
                            try channel.pipeline.syncOperations.addHandler(ServerWebSocketHandler(route: webSockets(secret)!))
                            return channel.eventLoop.makeSucceededVoidFuture()
                        } catch {
                            return channel.eventLoop.makeFailedFuture(error)
                        }
                    }
                )
                do {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(
                        withServerUpgrade: (upgraders: [upgrader], completionHandler: { context in
                            context.pipeline.removeHandler(name: "test-http", promise: nil)
                        })
                    )
                    try channel.pipeline.syncOperations.addHandler(TestHTTPHandler(routes: routes, record: { r in counters.requests.withLock { $0.append(r) } }), name: "test-http")
                    return channel.eventLoop.makeSucceededVoidFuture()
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
            }
            .bind(unixDomainSocketPath: path)
            .get()
        return TestServer(path: path, channel: channel, counters: counters)
    }

    /// Stops accepting and removes the socket file (synchronous, so `defer` can call it).
    func stop() {
        channel.close(promise: nil)
        unlink(path)
    }
}

private final class TestHTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let routes: @Sendable (TestRequest) async -> TestReply
    let record: @Sendable (TestRequest) -> Void
    var head: HTTPRequestHead?
    var body: [UInt8] = []

    init(routes: @escaping @Sendable (TestRequest) async -> TestReply, record: @escaping @Sendable (TestRequest) -> Void) {
        self.routes = routes
        self.record = record
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            body = []
        case .body(let b):
            body += Array(buffer: b)
        case .end:
            guard let head else { return }
            let request = TestRequest(method: head.method.rawValue, uri: head.uri, headers: head.headers.map { ($0.name, $0.value) }, body: body)
            record(request)
            let routes = self.routes
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            let keepAlive = head.isKeepAlive
            context.eventLoop.makeFutureWithTask { await routes(request) }.whenSuccess { reply in
                let context = bound.value
                var headers = HTTPHeaders(reply.headers)
                headers.replaceOrAdd(name: "Content-Length", value: String(reply.body.count))
                if !keepAlive { headers.replaceOrAdd(name: "Connection", value: "close") }
                context.write(NIOAny(HTTPServerResponsePart.head(HTTPResponseHead(version: .http1_1, status: .init(statusCode: reply.status), headers: headers))), promise: nil)
                context.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(ByteBuffer(bytes: reply.body)))), promise: nil)
                context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil)), promise: nil)
            }
        }
    }
}

private final class ServerWebSocketHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame
    let route: WebSocketRoute

    init(route: WebSocketRoute) { self.route = route }

    func handlerAdded(context: ChannelHandlerContext) {
        if case .custom(_, let onOpen) = route { onOpen(context.channel) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch route {
        case .echo:
            switch frame.opcode {
            case .binary, .text:
                let reply = WebSocketFrame(fin: true, opcode: frame.opcode, data: frame.unmaskedData)
                context.writeAndFlush(wrapOutboundOut(reply), promise: nil)
            case .connectionClose:
                let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
                context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: frame.unmaskedData)))
                    .whenComplete { _ in bound.value.close(promise: nil) }
            default:
                break
            }
        case .custom(let onFrame, _):
            onFrame(context.channel, frame)
        }
    }
}

extension Channel {
    /// Server side: an unmasked frame.
    func sendFrame(_ opcode: WebSocketOpcode, _ bytes: [UInt8]) -> EventLoopFuture<Void> {
        writeAndFlush(WebSocketFrame(fin: true, opcode: opcode, data: ByteBuffer(bytes: bytes)))
    }

    /// Server side: close handshake from our end, then drop the connection.
    func closeWebSocket() {
        sendFrame(.connectionClose, [0x03, 0xE8]).whenComplete { _ in self.close(promise: nil) }
    }
}
