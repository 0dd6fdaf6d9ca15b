import NIOCore
import NIOHTTP1
import Synchronization

/// One request handed to the pipeline as a single write, with the promise its response completes.
struct HTTPExchange: Sendable {
    var head: HTTPRequestHead
    var body: ByteBuffer?
    var promise: EventLoopPromise<ExchangeResult>
}

struct ExchangeResult: Sendable {
    var response: HTTPResponse
    /// Whether the server lets us send another request on this connection.
    var keepAlive: Bool
}

/// Turns `HTTPExchange` writes into HTTP/1.1 request parts and collects the one response.
/// One exchange at a time (no pipelining): the connection pool hands a connection to one caller.
final class HTTPExchangeHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = HTTPExchange
    typealias OutboundOut = HTTPClientRequestPart

    private let endpoint: String
    private var pending: EventLoopPromise<ExchangeResult>?
    private var pendingTarget = ""
    private var head: HTTPResponseHead?
    private var body = ByteBuffer()

    init(endpoint: String) { self.endpoint = endpoint }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let exchange = unwrapOutboundIn(data)
        guard pending == nil else {
            exchange.promise.fail(TransportError.closedBeforeResponse(endpoint: endpoint, request: "\(exchange.head.method) \(exchange.head.uri) (connection busy)"))
            promise?.fail(ChannelError.inappropriateOperationForState)
            return
        }
        pending = exchange.promise
        pendingTarget = "\(exchange.head.method) \(exchange.head.uri)"
        head = nil
        body.clear()
        context.write(wrapOutboundOut(.head(exchange.head)), promise: nil)
        if let bytes = exchange.body {
            context.write(wrapOutboundOut(.body(.byteBuffer(bytes))), promise: nil)
        }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
        case .body(var bytes):
            body.writeBuffer(&bytes)
        case .end:
            guard let promise = pending, let h = head else { return }
            pending = nil
            let response = HTTPResponse(
                status: Int(h.status.code),
                headers: h.headers.map { (name: $0.name, value: $0.value) },
                body: Array(buffer: body)
            )
            body.clear()
            promise.succeed(ExchangeResult(response: response, keepAlive: h.isKeepAlive))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        failPending(TransportError.closedBeforeResponse(endpoint: endpoint, request: pendingTarget))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        failPending(TransportError.closedBeforeResponse(endpoint: endpoint, request: "\(pendingTarget) (\(error))"))
        context.close(promise: nil)
    }

    private func failPending(_ error: TransportError) {
        guard let promise = pending else { return }
        pending = nil
        promise.fail(error)
    }
}

/// A keep-alive HTTP/1.1 connection; `Channel` is thread-safe, so this is too.
final class HTTPConnection: Sendable {
    let channel: any Channel
    let hostHeader: String
    let endpoint: String
    /// Counts idle periods, so an idle-timeout timer knows whether its period is still the current one.
    let idleGeneration = Atomic<UInt64>(0)

    init(channel: any Channel, hostHeader: String, endpoint: String) {
        self.channel = channel
        self.hostHeader = hostHeader
        self.endpoint = endpoint
    }

    /// Sets up the pipeline of a fresh connection (runs on its event loop).
    static func initialize(_ channel: any Channel, endpoint: String) throws {
        try channel.pipeline.syncOperations.addHTTPClientHandlers()
        try channel.pipeline.syncOperations.addHandler(HTTPExchangeHandler(endpoint: endpoint))
    }

    /// Sends `request` and waits for the whole response; after `readTimeout` the connection is
    /// closed and the request fails with `TransportError.timedOut` (it may have run).
    func execute(_ request: HTTPRequest, readTimeout: TimeAmount? = nil) async throws -> ExchangeResult {
        let promise = channel.eventLoop.makePromise(of: ExchangeResult.self)
        if let readTimeout {
            let channel = self.channel
            let failure = TransportError.timedOut(endpoint: endpoint, request: "\(request.method.rawValue) \(request.target)",
                                                  milliseconds: readTimeout.nanoseconds / 1_000_000)
            let timer = channel.eventLoop.scheduleTask(in: readTimeout) {
                promise.fail(failure)
                channel.close(promise: nil)
            }
            promise.futureResult.whenComplete { _ in timer.cancel() }
        }
        let exchange = HTTPExchange(
            head: Self.requestHead(request, host: hostHeader),
            body: request.body.isEmpty ? nil : ByteBuffer(bytes: request.body),
            promise: promise
        )
        // A write that fails never reached the wire: the caller may safely retry elsewhere.
        // (If the handler already failed the promise, this second completion is ignored.)
        channel.writeAndFlush(exchange).whenFailure { _ in promise.fail(TransportError.staleConnection) }
        return try await promise.futureResult.get()
    }

    func close() async {
        try? await channel.close()
    }

    static func requestHead(_ request: HTTPRequest, host: String) -> HTTPRequestHead {
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: host)
        headers.add(name: "User-Agent", value: "lxdctl-swift")
        for (name, value) in request.headers { headers.add(name: name, value: value) }
        if !request.body.isEmpty, !headers.contains(name: "Content-Type") {
            headers.add(name: "Content-Type", value: "application/json")
        }
        if !request.body.isEmpty || [.POST, .PUT, .PATCH].contains(request.method) {
            headers.replaceOrAdd(name: "Content-Length", value: String(request.body.count))
        }
        return HTTPRequestHead(version: .http1_1, method: HTTPMethod(rawValue: request.method.rawValue), uri: request.target, headers: headers)
    }
}

/// Idle keep-alive connections waiting for the next request: at most `limit`, each closed
/// after `timeout` unused (nil: kept until the server closes it).
actor IdleConnections {
    private var idle: [HTTPConnection] = []
    private let limit: Int
    private let timeout: TimeAmount?

    init(limit: Int, timeout: TimeAmount? = nil) {
        self.limit = limit
        self.timeout = timeout
    }

    func take() -> HTTPConnection? {
        while let connection = idle.popLast() {
            // Ends the idle period: a pending idle-timeout timer leaves the connection alone.
            connection.idleGeneration.add(1, ordering: .sequentiallyConsistent)
            if connection.channel.isActive { return connection }
        }
        return nil
    }

    /// Keeps `connection` for reuse; false when full (the caller closes it).
    func put(_ connection: HTTPConnection) -> Bool {
        idle.removeAll { !$0.channel.isActive }
        guard idle.count < limit else { return false }
        idle.append(connection)
        if let timeout {
            let period = connection.idleGeneration.add(1, ordering: .sequentiallyConsistent).newValue
            // Closing makes `take` skip it; a reuse racing the close fails its write (stale) and retries.
            connection.channel.eventLoop.scheduleTask(in: timeout) {
                if connection.idleGeneration.load(ordering: .sequentiallyConsistent) == period {
                    connection.channel.close(promise: nil)
                }
            }
        }
        return true
    }

    func drain() -> [HTTPConnection] {
        defer { idle = [] }
        return idle
    }
}
