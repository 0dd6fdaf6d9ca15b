import APITypes
import Foundation
import NIOCore
import NIOWebSocket
import Synchronization
import Testing
@testable import LXDClient

/// A fake exec server speaking LXD's exec protocol: stdin is read from fd 0's websocket until
/// the client closes it, then "out:<stdin>" goes to fd 1 and "err!" to fd 2, both closed by
/// the server, and the operation ends with return code 3.
final class ExecSimulation: Sendable {
    struct State {
        var stdin: [UInt8] = []
        var stdinClosed = false
        var output: [String: any Channel] = [:]
        var control: [String] = []
        var exitCode: Int?
    }
    let state = Mutex(State())
    /// Control messages to wait for before ending the command, so a test can assert on them.
    let expectedControlMessages: Int

    init(expectedControlMessages: Int = 0) {
        self.expectedControlMessages = expectedControlMessages
    }

    func route(_ secret: String) -> WebSocketRoute? {
        switch secret {
        case "s0":
            return .custom({ channel, frame in
                switch frame.opcode {
                case .binary: self.state.withLock { $0.stdin += Array(buffer: frame.unmaskedData) }
                case .connectionClose:
                    channel.closeWebSocket()
                default: break
                }
            }, onOpen: { channel in
                // However stdin ends (close handshake, or the server dropping a bad client), the
                // command sees EOF and finishes, so a broken client fails the test instead of hanging it.
                channel.closeFuture.whenComplete { _ in Task { await self.finish() } }
            })
        case "s1", "s2":
            return .custom({ _, _ in }, onOpen: { channel in self.state.withLock { $0.output[secret] = channel } })
        case "sc":
            return .custom({ _, frame in
                if frame.opcode == .text { self.state.withLock { $0.control.append(String(buffer: frame.unmaskedData)) } }
            }, onOpen: { _ in })
        default:
            return nil
        }
    }

    func finish() async {
        guard state.withLock({ s in defer { s.stdinClosed = true }; return !s.stdinClosed }) else { return }
        // Both output sockets must be connected (the client connects all before sending stdin).
        var outputs: [String: any Channel] = [:]
        for _ in 0..<500 {
            outputs = state.withLock { $0.output }
            if outputs.count == 2 { break }
            try? await Task.sleep(for: .milliseconds(10))
        }
        for _ in 0..<500 where state.withLock({ $0.control.count }) < expectedControlMessages {
            try? await Task.sleep(for: .milliseconds(10))
        }
        let stdin = state.withLock { $0.stdin }
        try? await outputs["s1"]?.sendFrame(.binary, Array("out:".utf8) + stdin).get()
        try? await outputs["s2"]?.sendFrame(.binary, Array("err!".utf8)).get()
        outputs["s1"]?.closeWebSocket()
        outputs["s2"]?.closeWebSocket()
        state.withLock { $0.exitCode = 3 }
    }

    func waitForExit() async -> Int? {
        for _ in 0..<1000 {
            if let code = state.withLock({ $0.exitCode }) { return code }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return nil
    }
}

@Suite(.timeLimit(.minutes(1))) struct ExecTests {
    @Test func execPipesStdinOutputAndExitCode() async throws {
        let sim = ExecSimulation(expectedControlMessages: 1)
        let server = try await TestServer.exec(operation: "exec1", fds: ["0": "s0", "1": "s1", "2": "s2", "control": "sc"], waitForExit: sim.waitForExit, webSockets: sim.route)
        defer { server.stop() }

        let stdout = Mutex<[UInt8]>([])
        let stderr = Mutex<[UInt8]>([])
        let (stdin, stdinSink) = AsyncStream.makeStream(of: [UInt8].self)
        let (control, controlSink) = AsyncStream.makeStream(of: ExecControl.self)
        controlSink.yield(.signal(15))
        controlSink.finish()
        let io = ExecIO(stdin: stdin, stdout: { b in stdout.withLock { $0 += b } }, stderr: { b in stderr.withLock { $0 += b } }, control: control)
        let client = LXDClient.unixSocket(server.path)
        async let code = client.exec("c1", ExecOptions(command: ["cat"], environment: ["K": "V"]), io: io)
        // 100 KB in one chunk: more than the server's 16 KiB frame limit, so it must be split.
        let big = [UInt8]((0..<100_000).map { UInt8(truncatingIfNeeded: $0 % 251) })
        stdinSink.yield(Array("hello ".utf8))
        stdinSink.yield(Array("world".utf8))
        stdinSink.yield(big)
        stdinSink.finish()

        #expect(try await code == 3)
        let out = stdout.withLock { $0 }, expected = Array("out:hello world".utf8) + big
        // Compared as a Bool so a mismatch reports sizes, not 100 KB of bytes.
        let same = out == expected
        #expect(same, "stdout: \(out.count) bytes, expected \(expected.count)")
        #expect(String(decoding: stderr.withLock { $0 }, as: UTF8.self) == "err!")
        #expect(sim.state.withLock { $0.control } == [#"{"command":"signal","signal":15}"#])
        let post = try #require(server.requests.first { $0.path == "/1.0/instances/c1/exec" })
        let body = try JSONDecoder().decode(InstanceExecPost.self, from: Data(post.body))
        #expect(body.command == ["cat"])
        #expect(body.environment == ["K": "V"])
        #expect(body.waitForWebsocket == true)
        #expect(body.interactive == false)
    }
}

/// Interactive mode: one pty websocket ("p0") carries both directions. The fake echoes input
/// back as "echo:<bytes>"; input containing "q" ends the session with exit code 7.
final class PtySimulation: Sendable {
    struct State {
        var control: [String] = []
        var closeFramesFromClient = 0
        var ptyConnected = false
        var exitCode: Int?
    }
    let state = Mutex(State())

    func route(_ secret: String) -> WebSocketRoute? {
        switch secret {
        case "p0":
            return .custom({ channel, frame in
                switch frame.opcode {
                case .binary:
                    let bytes = Array(buffer: frame.unmaskedData)
                    _ = channel.sendFrame(.binary, Array("echo:".utf8) + bytes)
                    if bytes.contains(UInt8(ascii: "q")) {
                        channel.closeWebSocket()
                        self.state.withLock { $0.exitCode = 7 }
                    }
                case .connectionClose:
                    self.state.withLock { $0.closeFramesFromClient += 1 }
                default: break
                }
            }, onOpen: { _ in self.state.withLock { $0.ptyConnected = true } })
        case "pc":
            return .custom({ channel, frame in
                if frame.opcode == .text { self.state.withLock { $0.control.append(String(buffer: frame.unmaskedData)) } }
                if frame.opcode == .connectionClose { channel.closeWebSocket() }
            }, onOpen: { _ in })
        default:
            return nil
        }
    }

    func waitForExit() async -> Int? {
        for _ in 0..<1000 {
            if let code = state.withLock({ $0.exitCode }) { return code }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return nil
    }
}

extension ExecTests {
    @Test func interactiveExecSharesOneSocketAndForwardsResize() async throws {
        let sim = PtySimulation()
        let server = try await TestServer.exec(operation: "pty1", fds: ["0": "p0", "control": "pc"], waitForExit: sim.waitForExit, webSockets: sim.route)
        defer { server.stop() }

        let stdout = Mutex<[UInt8]>([])
        let (stdin, stdinSink) = AsyncStream.makeStream(of: [UInt8].self)
        let (control, controlSink) = AsyncStream.makeStream(of: ExecControl.self)
        let io = ExecIO(stdin: stdin, stdout: { b in stdout.withLock { $0 += b } }, stderr: { _ in }, control: control)
        let client = LXDClient.unixSocket(server.path)
        async let code = client.exec("c1", ExecOptions(command: ["sh"], interactive: true, width: 80, height: 24), io: io)
        controlSink.yield(.resize(width: 100, height: 40))
        // Wait for the resize to arrive before quitting, so the order is deterministic.
        for _ in 0..<500 where sim.state.withLock({ $0.control.isEmpty }) { try await Task.sleep(for: .milliseconds(10)) }
        stdinSink.yield(Array("abc".utf8))
        for _ in 0..<500 where stdout.withLock({ $0.isEmpty }) { try await Task.sleep(for: .milliseconds(10)) }
        stdinSink.yield(Array("q".utf8))
        // stdin stays open (a terminal has no EOF): the session must still end when the command does.

        #expect(try await code == 7)
        #expect(String(decoding: stdout.withLock { $0 }, as: UTF8.self) == "echo:abcecho:q")
        #expect(sim.state.withLock { $0.control } == [#"{"args":{"height":"40","width":"100"},"command":"window-resize"}"#])
        let post = try #require(server.requests.first { $0.path == "/1.0/instances/c1/exec" })
        let body = try JSONDecoder().decode(InstanceExecPost.self, from: Data(post.body))
        #expect(body.interactive == true && body.width == 80 && body.height == 24)
        stdinSink.finish()
        controlSink.finish()
    }
}

extension TestServer {
    /// A fake LXD that answers one exec in c1 as operation `operation` with the given fd secrets,
    /// reports the exit code once `waitForExit` has one, and hands the websockets to `webSockets`.
    static func exec(
        operation: String, fds: [String: String], waitForExit: @escaping @Sendable () async -> Int?,
        webSockets: @escaping @Sendable (_ secret: String) -> WebSocketRoute?
    ) async throws -> TestServer {
        try await start(routes: { request in
            switch (request.method, request.path) {
            case ("POST", "/1.0/instances/c1/exec"):
                let fdValues = JSONValue.object(fds.mapValues { .string($0) })
                return LiveSocketTests.async(LiveSocketTests.op(operation, .running, metadata: ["fds": fdValues]))
            case ("GET", "/1.0/operations/\(operation)/wait"):
                guard let code = await waitForExit() else { return LiveSocketTests.sync(LiveSocketTests.op(operation, .running)) }
                return LiveSocketTests.sync(LiveSocketTests.op(operation, .success, metadata: ["return": .int(code)]))
            default:
                return LiveSocketTests.error(404, "not found")
            }
        }, webSockets: webSockets)
    }
}
