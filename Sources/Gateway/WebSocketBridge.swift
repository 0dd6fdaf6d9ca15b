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

extension WebSocketBridge {
    /// Relays messages both ways between a client's websocket and the owner's, until either
    /// side closes; then closes the other. Each write waits for the previous one (backpressure).
    static func proxy(_ remote: any ForwardedWebSocket, inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                do {
                    for try await message in inbound.messages(maxSize: 1 << 20) {
                        switch message {
                        case .binary(let b): try await remote.send(.binary(Array(buffer: b)))
                        case .text(let t): try await remote.send(.text(t))
                        }
                    }
                } catch {}
            }
            group.addTask {
                for await frame in remote.frames {
                    do {
                        switch frame {
                        case .binary(let b): try await outbound.write(.binary(ByteBuffer(bytes: b)))
                        case .text(let t): try await outbound.write(.text(t))
                        }
                    } catch { break }
                }
            }
            // Whichever direction ends first ends the proxy.
            await group.next()
            group.cancelAll()
            await remote.close()
        }
    }
}
