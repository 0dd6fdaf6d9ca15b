import APITypes
import Foundation
import NIOCore
import NIOWebSocket
import Synchronization
import Testing
@testable import LXDClient

/// The client against a real NIO server on a temporary unix socket: real sockets, real bytes.
@Suite(.timeLimit(.minutes(1))) struct LiveSocketTests {
    static func json<T: Encodable>(_ value: T) -> String {
        String(decoding: try! JSONEncoder().encode(value), as: UTF8.self)
    }

    static func op(_ id: String, _ status: StatusCode, metadata: [String: JSONValue]? = nil, err: String = "") -> APITypes.Operation {
        APITypes.Operation(id: id, class: "task", description: "test", createdAt: "2026-11-27T11:00:00Z", updatedAt: "2026-11-27T11:00:00Z",
                           status: status, resources: [:], metadata: metadata, err: err, location: "m1")
    }

    static func sync<T: Codable & Sendable>(_ value: T) -> TestReply { .json(200, json(Response.sync(value))) }
    static func async(_ op: APITypes.Operation) -> TestReply { .json(202, json(Response.async(operationURL: "/1.0/operations/\(op.id)", op))) }
    static func error(_ code: Int, _ message: String) -> TestReply { .json(code, json(ErrorResponse(errorCode: code, error: message))) }

    @Test func syncRequestsReuseOneConnection() async throws {
        let server = try await TestServer.start(routes: { request in
            request.path == "/1.0/images/aliases/busybox"
                ? Self.sync(ImageAliasEntry(name: "busybox", target: "abc123"))
                : Self.error(404, "not found: \(request.path)")
        })
        defer { server.stop() }
        let client = LXDClient.unixSocket(server.path)
        for _ in 0..<5 {
            #expect(try await client.imageAlias("busybox").target == "abc123")
        }
        #expect(server.acceptedConnections == 1)
        await client.transport.shutdown()
    }

    @Test func serverClosingIdleConnectionIsRecoveredForGet() async throws {
        // The server answers with Connection: close when asked to; force it by closing after
        // each response: the client must notice and open a new connection every time.
        let server = try await TestServer.start(routes: { _ in
            var reply = Self.sync(["x"])
            reply.headers.append(("Connection", "close"))
            return reply
        })
        defer { server.stop() }
        let client = LXDClient.unixSocket(server.path)
        for _ in 0..<3 { #expect(try await client.get([String].self, "/1.0/things") == ["x"]) }
        #expect(server.acceptedConnections == 3)
    }

    @Test func asyncOperationIsWaitedFor() async throws {
        let polls = Mutex(0)
        let server = try await TestServer.start(routes: { request in
            switch (request.method, request.path) {
            case ("POST", "/1.0/instances"):
                return Self.async(Self.op("op1", .running))
            case ("GET", "/1.0/operations/op1/wait"):
                // First slice times out with the operation still running; the client must ask again.
                let n = polls.withLock { $0 += 1; return $0 }
                return Self.sync(Self.op("op1", n < 2 ? .running : .success))
            default:
                return Self.error(404, "not found")
            }
        })
        defer { server.stop() }
        let client = LXDClient.unixSocket(server.path)
        try await client.createInstance(InstancesPost(name: "c1", source: .init(alias: "busybox"), config: ["limits.cpu": "1"], start: true))
        #expect(polls.withLock { $0 } == 2)

        let post = try #require(server.requests.first { $0.method == "POST" })
        let body = try JSONDecoder().decode([String: JSONValue].self, from: Data(post.body))
        #expect(body["name"] == .string("c1"))
        #expect(body["start"] == .bool(true))
        #expect(body["source"]?["alias"] == .string("busybox"))
        #expect(body["config"]?["limits.cpu"] == .string("1"))
        #expect(server.requests.first { $0.path.hasSuffix("/wait") }?.query["timeout"] == "30")
    }

    @Test func failedOperationThrowsItsError() async throws {
        let server = try await TestServer.start(routes: { request in
            switch request.path {
            case "/1.0/instances/c1/state": return Self.async(Self.op("op2", .running))
            case "/1.0/operations/op2/wait": return Self.sync(Self.op("op2", .failure, err: "Failed to start: no init in rootfs"))
            default: return Self.error(404, "not found")
            }
        })
        defer { server.stop() }
        let client = LXDClient.unixSocket(server.path)
        await #expect(throws: APIError(400, "Failed to start: no init in rootfs")) {
            try await client.changeState("c1", InstanceStatePut(action: "start"))
        }
    }

    /// `delete --force` of an instance in status Error (its owner did not report in time): the
    /// refused stop does not end it, the owner decides on the delete; a refused stop of a running
    /// instance does end it, and nothing is deleted.
    @Test func forceDeleteOfAnInstanceInErrorLetsTheOwnerDecide() async throws {
        let server = try await TestServer.start(routes: { request in
            let status: StatusCode = request.path.contains("/slow") ? .error : .running
            switch (request.method, request.path) {
            case ("GET", "/1.0/operations/op3/wait"): return Self.sync(Self.op("op3", .success))
            case ("GET", _):
                return Self.sync(Instance(name: "x", status: status, architecture: "x86_64", config: [:], location: "m2",
                                          createdAt: "2026-12-07T00:00:00Z", lastUsedAt: "2026-12-07T00:00:00Z"))
            case ("PUT", _): return Self.error(400, "Instance is not running")
            case ("DELETE", "/1.0/instances/slow"): return Self.async(Self.op("op3", .success))
            default: return Self.error(400, "Instance is running: stop it first")
            }
        })
        defer { server.stop() }
        let client = LXDClient.unixSocket(server.path)
        try await client.deleteInstance("slow", force: true)
        #expect(server.requests.map { "\($0.method) \($0.path)" }.contains("DELETE /1.0/instances/slow"))
        // Both refused: the stop's refusal is what the operator sees.
        await #expect(throws: APIError(400, "Instance is not running")) { try await client.deleteInstance("slow-but-running", force: true) }
        await #expect(throws: APIError(400, "Instance is not running")) { try await client.deleteInstance("running", force: true) }
        #expect(!server.requests.contains { $0.method == "DELETE" && $0.path == "/1.0/instances/running" })
    }

    @Test func errorResponsesMapToAPIError() async throws {
        let server = try await TestServer.start(routes: { request in
            request.path == "/1.0/instances/nope"
                ? Self.error(404, "Instance not found")
                : Self.error(400, "Invalid instance name \"Bad_Name\"")
        })
        defer { server.stop() }
        let client = LXDClient.unixSocket(server.path)
        await #expect(throws: APIError(404, "Instance not found")) { try await client.instance("nope") }
        await #expect(throws: APIError(400, "Invalid instance name \"Bad_Name\"")) {
            try await client.createInstance(InstancesPost(name: "Bad_Name", source: .init(alias: "x")))
        }
        // An error answer still leaves the connection reusable.
        #expect(server.acceptedConnections == 1)
    }

    @Test func connectFailureNamesTheSocket() async throws {
        let client = LXDClient.unixSocket("/tmp/lxdclient-test-missing.sock")
        do {
            _ = try await client.instances()
            Issue.record("expected a connect failure")
        } catch let error as TransportError {
            guard case .connectFailed(let endpoint, _) = error else { Issue.record("wrong error \(error)"); return }
            #expect(endpoint == "/tmp/lxdclient-test-missing.sock")
            #expect(error.description.contains("No such file or directory"))
        }
    }

    @Test func filesAndImagesCarryRawBodiesAndHeaders() async throws {
        let payload: [UInt8] = Array(0...255) + Array(repeating: 7, count: 100_000)
        let server = try await TestServer.start(routes: { request in
            switch (request.method, request.path) {
            case ("GET", "/1.0/instances/c1/files"):
                return TestReply(status: 200, headers: [("X-LXD-uid", "1000"), ("X-LXD-gid", "100"), ("X-LXD-mode", "0640"), ("X-LXD-type", "file")], body: payload)
            case ("POST", "/1.0/instances/c1/files"):
                return Self.sync([String: String]())
            case ("POST", "/1.0/images"):
                return Self.async(Self.op("img", .running))
            case ("GET", "/1.0/operations/img/wait"):
                return Self.sync(Self.op("img", .success, metadata: ["fingerprint": .string("f00d")]))
            default:
                return Self.error(404, "not found")
            }
        })
        defer { server.stop() }
        let client = LXDClient.unixSocket(server.path)

        let file = try await client.pullFile("c1", path: "/etc/a b")
        #expect(file == InstanceFile(content: payload, uid: 1000, gid: 100, mode: 0o640, type: "file"))
        #expect(server.requests.last?.query["path"] == "/etc/a b")

        try await client.pushFile("c1", path: "/root/x", content: payload, uid: 0, gid: 0, mode: 0o600)
        let push = try #require(server.requests.last)
        #expect(push.body == payload)
        #expect(push.header("X-LXD-mode") == "0600")
        #expect(push.header("X-LXD-write") == "overwrite")
        #expect(push.header("X-LXD-type") == "file")

        #expect(try await client.importImage(tarball: payload, filename: "bb.tar.gz") == "f00d")
        let upload = try #require(server.requests.first { $0.path == "/1.0/images" })
        #expect(upload.header("Content-Type") == "application/octet-stream")
        #expect(upload.header("X-LXD-filename") == "bb.tar.gz")
        #expect(upload.body == payload)
    }

    @Test func webSocketEchoRoundTrip() async throws {
        let server = try await TestServer.start(routes: { _ in Self.error(404, "no") }, webSockets: { $0 == "echo" ? .echo : nil }, maxFrameSize: 1 << 20)
        defer { server.stop() }
        let transport = HTTPChannelTransport.unixSocket(server.path)
        let ws = try await transport.openWebSocket(HTTPRequest(.GET, "/1.0/operations/x/websocket", query: [QueryItem("secret", "echo")]))
        var iterator = ws.messages.makeAsyncIterator()
        let big = [UInt8]((0..<200_000).map { UInt8(truncatingIfNeeded: $0 * 31) })
        try await ws.send(binary: [1, 2, 3])
        #expect(await iterator.next() == .binary([1, 2, 3]))
        try await ws.send(text: "héllo")
        #expect(await iterator.next() == .text("héllo"))
        try await ws.send(binary: big)
        #expect(await iterator.next() == .binary(big))
        await ws.close()
        #expect(await iterator.next() == nil)
        #expect(!ws.channel.isActive)
    }

    /// Clients mask by default (RFC 6455); links between our own agents may opt out, and then
    /// no frame they send carries a key, the close handshake's included.
    @Test(arguments: [WebSocketMasking.rfc6455, .unmasked])
    func framesAreMaskedAsTheOpenerChose(masking: WebSocketMasking) async throws {
        let keys = Mutex<[Bool]>([])
        let server = try await TestServer.start(routes: { _ in Self.error(404, "no") }, webSockets: { secret in
            guard secret == "keys" else { return nil }
            return .custom({ channel, frame in
                keys.withLock { $0.append(frame.maskKey != nil) }
                switch frame.opcode {
                case .binary: _ = channel.sendFrame(.binary, Array(buffer: frame.unmaskedData))
                case .connectionClose: channel.close(promise: nil)
                default: break
                }
            }, onOpen: { _ in })
        }, maxFrameSize: 1 << 20)
        defer { server.stop() }
        let ws = try await HTTPChannelTransport.unixSocket(server.path)
            .openWebSocket(HTTPRequest(.GET, "/1.0/operations/x/websocket", query: [QueryItem("secret", "keys")]), masking: masking)
        var iterator = ws.messages.makeAsyncIterator()
        let payload = [UInt8]((0..<70_000).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        try await ws.send(binary: payload)
        #expect(await iterator.next() == .binary(payload))
        ws.ping()
        await ws.close()
        let seen = keys.withLock { $0 }
        #expect(seen.count == 3, "binary, ping and close reach the server")
        #expect(seen.allSatisfy { $0 == (masking == .rfc6455) })
    }

    @Test func slowConsumerPushesBackOnTheSender() async throws {
        // The server queues 32 frames of 1 MiB at once and counts how many reached the socket.
        let frames = 32, frameSize = 1 << 20
        let written = Mutex(0)
        let server = try await TestServer.start(routes: { _ in Self.error(404, "no") }, webSockets: { secret in
            guard secret == "flood" else { return nil }
            return .custom({ _, _ in }, onOpen: { channel in
                for i in 0..<frames {
                    channel.sendFrame(.binary, [UInt8](repeating: UInt8(i), count: frameSize)).whenSuccess { written.withLock { $0 += 1 } }
                }
            })
        })
        defer { server.stop() }
        let ws = try await HTTPChannelTransport.unixSocket(server.path)
            .openWebSocket(HTTPRequest(.GET, "/1.0/operations/x/websocket", query: [QueryItem("secret", "flood")]))
        // Not consuming: the client may buffer about InboundWindow.high (4 MiB) plus socket
        // buffers, so most frames must still be waiting on the server's side.
        try await Task.sleep(for: .seconds(1))
        let writtenWhilePaused = written.withLock { $0 }
        #expect(writtenWhilePaused < 12, "client read \(writtenWhilePaused) MiB without consuming: no backpressure")

        var received = 0
        for await message in ws.messages {
            guard case .binary(let bytes) = message else { Issue.record("unexpected \(message)"); break }
            #expect(bytes.count == frameSize && bytes.allSatisfy { $0 == UInt8(received) })
            received += 1
            if received == frames { break }
        }
        #expect(received == frames)
        #expect(written.withLock { $0 } == frames)
        await ws.close(timeout: .milliseconds(100))
    }

    @Test func refusedWebSocketReportsTheServersError() async throws {
        let server = try await TestServer.start(routes: { _ in Self.error(403, "bad secret") })
        defer { server.stop() }
        let transport = HTTPChannelTransport.unixSocket(server.path)
        await #expect(throws: APIError(403, "bad secret")) {
            _ = try await transport.openWebSocket(HTTPRequest(.GET, "/1.0/operations/x/websocket", query: [QueryItem("secret", "wrong")]))
        }
    }
}
