import Identity
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS
import Synchronization

/// Connects to an agent's HTTPS API with mutual TLS: presents the client's identity and accepts
/// only the server whose certificate has the pinned SHA-256 fingerprint (no CA, no host name).
///
/// With several addresses (members of one cluster, or one member's several interfaces) a
/// connector starts at a random one, so clients spread their load over the members, and stays
/// with the address that last worked; a connect or handshake failure moves on to the next one.
/// Nothing was sent on a failed connection, so any request may go to the next address.
public struct TLSConnector: ChannelConnector {
    public let addresses: [String]
    public let serverFingerprint: String
    /// Every certificate accepted (`serverFingerprint` and the other members').
    public let serverFingerprints: Set<String>
    public let group: any EventLoopGroup
    public let connectTimeout: TimeAmount
    let context: NIOSSLContext
    private let preferred: Preferred

    /// `otherFingerprints`: further certificates accepted at any of the addresses. `inOrder` tries
    /// the addresses as given (a join token names the member whose certificate it pins first).
    public init(addresses: [String], serverFingerprint: String, otherFingerprints: [String] = [], identity: TLSIdentity,
                group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, connectTimeout: TimeAmount = .seconds(10),
                inOrder: Bool = false) throws {
        precondition(!addresses.isEmpty, "a TLS connector needs at least one address")
        self.addresses = addresses
        self.serverFingerprint = serverFingerprint.lowercased()
        serverFingerprints = Set(([serverFingerprint] + otherFingerprints).map { $0.lowercased() })
        self.group = group
        self.connectTimeout = connectTimeout
        context = try Self.context(for: identity)
        preferred = Preferred(inOrder ? 0 : Int.random(in: 0..<addresses.count))
    }

    /// The index of the address tried first; shared by copies of the connector.
    final class Preferred: Sendable {
        private let index: Atomic<Int>
        init(_ start: Int) { index = Atomic(start) }
        var value: Int { index.load(ordering: .relaxed) }
        func set(_ i: Int) { index.store(i, ordering: .relaxed) }
    }

    /// One client context per identity: making one parses the key and certificate, and with
    /// the default trust roots also the whole system CA bundle (unused: the pin replaces chain
    /// checks). Members make connectors often (every database link, heartbeat and forwarding
    /// client), and that cost sat on the path of elections and failovers.
    static func context(for identity: TLSIdentity) throws -> NIOSSLContext {
        let key = identity.fingerprint
        if let known = contexts.withLock({ $0[key] }) { return known }
        var configuration = try TLSConfigurations.client(identity)
        configuration.trustRoots = .certificates([])
        let made = try NIOSSLContext(configuration: configuration)
        return contexts.withLock { all in
            if let raced = all[key] { return raced }
            all[key] = made
            return made
        }
    }

    private static let contexts = Mutex<[String: NIOSSLContext]>([:])

    public var endpoint: String { "https://" + addresses.joined(separator: ",") }
    public var hostHeader: String { addresses[0] }

    public func connect(_ initialize: @escaping @Sendable (Channel) throws -> Void) async throws -> Channel {
        var failures: [String] = []
        let first = preferred.value
        for offset in 0..<addresses.count {
            let index = (first + offset) % addresses.count
            let address = addresses[index]
            do {
                let channel = try await connect(to: address, initialize)
                if index != first { preferred.set(index) }
                return channel
            } catch let TransportError.connectFailed(_, reason) {
                failures.append("\(address): \(reason)")
            }
        }
        throw TransportError.connectFailed(endpoint: endpoint, reason: failures.joined(separator: "; "))
    }

    /// Connects to one address and completes the handshake before handing the channel out, so a
    /// wrong server is a connect failure (nothing sent) rather than a broken first request.
    func connect(to address: String, _ initialize: @escaping @Sendable (Channel) throws -> Void) async throws -> Channel {
        guard let hp = HostPort.parse(address) else {
            throw TransportError.connectFailed(endpoint: address, reason: "not a host:port address")
        }
        let handshake = group.next().makePromise(of: Void.self)
        let context = self.context
        let verifier = TLSConfigurations.pinnedServerVerifier(fingerprints: serverFingerprints)
        let timeout = connectTimeout
        let channel: Channel
        do {
            channel = try await ClientBootstrap(group: group)
                .connectTimeout(connectTimeout)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let ops = channel.pipeline.syncOperations
                        try ops.addHandler(NIOSSLClientHandler(context: context, serverHostname: nil, customVerificationCallback: verifier))
                        try ops.addHandler(HandshakeWatcher(handshake, timeout: timeout))
                        try initialize(channel)
                    }
                }
                .connect(host: hp.host, port: hp.port)
                .get()
        } catch {
            handshake.fail(ChannelError.alreadyClosed)
            throw TransportError.connectFailed(endpoint: address, reason: UnixSocketConnector.describe(error))
        }
        do {
            try await handshake.futureResult.get()
        } catch {
            channel.close(promise: nil)
            throw TransportError.connectFailed(endpoint: address, reason: Self.describeHandshake(error, pin: serverFingerprint))
        }
        return channel
    }

    static func describeHandshake(_ error: any Error, pin: String) -> String {
        if case NIOSSLError.handshakeFailed = error {
            return "TLS handshake failed (\(error)); the server's certificate must have fingerprint \(pin): check the remote's address, or re-add it if the server's certificate changed"
        }
        return "TLS handshake failed: \(error)"
    }
}

/// Completes `promise` once: on the handshake, or on the first error, close or timeout.
/// Passes every event on, so it can stay in the pipeline.
final class HandshakeWatcher: ChannelInboundHandler {
    typealias InboundIn = NIOAny
    private let promise: EventLoopPromise<Void>
    private let timeout: TimeAmount
    private var done = false
    private var timer: Scheduled<Void>?

    init(_ promise: EventLoopPromise<Void>, timeout: TimeAmount) {
        self.promise = promise
        self.timeout = timeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(in: timeout) {
            loopBound.value.finish(.failure(NIOSSLError.handshakeFailed(.sslError([]))))
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let tls = event as? TLSUserEvent, case .handshakeCompleted = tls { finish(.success(())) }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        finish(.failure(error))
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish(.failure(ChannelError.eof))
        context.fireChannelInactive()
    }

    private func finish(_ result: Result<Void, any Error>) {
        guard !done else { return }
        done = true
        timer?.cancel()
        promise.completeWith(result)
    }
}

extension HTTPChannelTransport {
    /// The transport for an agent's HTTPS API (see `TLSConnector`).
    public static func https(addresses: [String], serverFingerprint: String, identity: TLSIdentity) throws -> HTTPChannelTransport {
        HTTPChannelTransport(connector: try TLSConnector(addresses: addresses, serverFingerprint: serverFingerprint, identity: identity))
    }
}

extension LXDClient {
    /// A client of an agent's HTTPS API with mutual TLS and a pinned server fingerprint.
    public static func https(addresses: [String], serverFingerprint: String, otherFingerprints: [String] = [], identity: TLSIdentity) throws -> LXDClient {
        LXDClient(transport: HTTPChannelTransport(connector: try TLSConnector(
            addresses: addresses, serverFingerprint: serverFingerprint, otherFingerprints: otherFingerprints, identity: identity)))
    }
}
