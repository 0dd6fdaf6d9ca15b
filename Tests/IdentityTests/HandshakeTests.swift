import Identity
import IdentityGenerator
import NIOCore
import NIOPosix
import NIOSSL
import Testing

/// Real TLS handshakes over loopback: the server sees the client's fingerprint, the client
/// accepts only the pinned server.
@Suite struct HandshakeTests {
    /// Server: answers every read with the fingerprint of the client's certificate ("none" without one).
    final class FingerprintEcho: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let handler = try? context.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self)
            let fp = handler?.peerCertificate.flatMap(PinCheck.fingerprint(of:)) ?? "none"
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: fp)), promise: nil)
        }
    }

    /// Client: completes with the first reply, or fails with the first error.
    final class FirstReply: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let promise: EventLoopPromise<String>
        init(_ p: EventLoopPromise<String>) { promise = p }
        func channelActive(context: ChannelHandlerContext) {
            context.writeAndFlush(NIOAny(ByteBuffer(string: "hi")), promise: nil)
        }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            promise.succeed(String(buffer: unwrapInboundIn(data)))
        }
        func errorCaught(context: ChannelHandlerContext, error: any Error) { promise.fail(error) }
        func channelInactive(context: ChannelHandlerContext) { promise.fail(ChannelError.eof) }
    }

    func withServer(_ identity: TLSIdentity, _ body: (Int) async throws -> Void) async throws {
        let context = try NIOSSLContext(configuration: try TLSConfigurations.server(identity))
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        NIOSSLServerHandler(context: context, customVerificationCallback: TLSConfigurations.acceptAnyCertificate))
                    try channel.pipeline.syncOperations.addHandler(FingerprintEcho())
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        do {
            try await body(server.localAddress!.port!)
        } catch {
            try? await server.close()
            throw error
        }
        try await server.close()
    }

    func exchange(port: Int, client: TLSIdentity?, pin: String) async throws -> String {
        var config = client.map { try! TLSConfigurations.client($0) } ?? TLSConfiguration.makeClientConfiguration()
        config.certificateVerification = .noHostnameVerification
        let context = try NIOSSLContext(configuration: config)
        let group = MultiThreadedEventLoopGroup.singleton
        let promise = group.next().makePromise(of: String.self)
        let channel = try await ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        NIOSSLClientHandler(context: context, serverHostname: nil,
                                            customVerificationCallback: TLSConfigurations.pinnedServerVerifier(fingerprint: pin)))
                    try channel.pipeline.syncOperations.addHandler(FirstReply(promise))
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        defer { channel.close(promise: nil) }
        return try await promise.futureResult.get()
    }

    @Test func mutualTLSWithPinnedServer() async throws {
        let server = try IdentityGenerator.generate(commonName: "m1", ipAddresses: ["127.0.0.1"])
        let client = try IdentityGenerator.generate(commonName: "laptop")
        try await withServer(server) { port in
            let seen = try await exchange(port: port, client: client, pin: server.fingerprint)
            #expect(seen == client.fingerprint, "the server must see the presented client certificate")
            // No client certificate: still a connection (the API answers 403 above TLS).
            #expect(try await exchange(port: port, client: nil, pin: server.fingerprint) == "none")
        }
    }

    @Test func wrongPinFailsTheHandshake() async throws {
        let server = try IdentityGenerator.generate(commonName: "m1")
        let impostorPin = try IdentityGenerator.generate(commonName: "other").fingerprint
        let client = try IdentityGenerator.generate(commonName: "laptop")
        try await withServer(server) { port in
            await #expect(throws: (any Error).self) {
                try await exchange(port: port, client: client, pin: impostorPin)
            }
        }
    }
}
