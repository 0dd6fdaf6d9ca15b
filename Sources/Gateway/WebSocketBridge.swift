import HummingbirdWebSocket
import NIOCore
import Operations

/// Adapts a Hummingbird websocket to the transport-free `WebSocketAttachment` of Operations.
enum WebSocketBridge {
    struct Link: WebSocketLink {
        let outbound: WebSocketOutboundWriter
        func send(_ bytes: [UInt8]) async throws { try await outbound.write(.binary(ByteBuffer(bytes: bytes))) }
        func sendText(_ text: String) async throws { try await outbound.write(.text(text)) }
    }

    /// Runs the operation's handler; returning from here closes the socket.
    static func run(fd: String, handler: OperationRegistry.WebSocketHandler, inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter) async {
        let (stream, continuation) = AsyncStream<[UInt8]>.makeStream(bufferingPolicy: .unbounded)
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                do {
                    for try await message in inbound.messages(maxSize: 1 << 20) {
                        switch message {
                        case .binary(let b): continuation.yield(Array(buffer: b))
                        case .text(let t): continuation.yield(Array(t.utf8))
                        }
                    }
                } catch {}
                continuation.finish()
            }
            await handler(fd, WebSocketAttachment(inbound: stream, link: Link(outbound: outbound)))
            continuation.finish()
            group.cancelAll()
        }
    }
}
