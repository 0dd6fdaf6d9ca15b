import APITypes
import Foundation
import NIOCore
import NIOWebSocket
import Synchronization
import Testing
@testable import LXDClient

/// `LXDClient.console` against a fake LXD over a real socket: LXD's order (control, then "0"),
/// bytes both ways, resizes as LXD's JSON, and detaching by closing control.
@Suite(.timeLimit(.minutes(1))) struct ConsoleClientTests {
    /// The server's side of one console: "cd" is the data socket's secret, "cc" control's.
    final class Simulation: Sendable {
        struct State {
            var opened: [String] = []
            var control: [String] = []
            var input: [UInt8] = []
            var controlClosed = false
        }
        let state = Mutex(State())

        func route(_ secret: String) -> WebSocketRoute? {
            switch secret {
            case "cd":
                return .custom({ channel, frame in
                    if frame.opcode == .binary { self.state.withLock { $0.input += Array(buffer: frame.unmaskedData) } }
                    if frame.opcode == .connectionClose { channel.closeWebSocket() }
                }, onOpen: { channel in
                    self.state.withLock { $0.opened.append("0") }
                    _ = channel.sendFrame(.binary, Array("login: ".utf8))
                })
            case "cc":
                return .custom({ channel, frame in
                    if frame.opcode == .text { self.state.withLock { $0.control.append(String(buffer: frame.unmaskedData)) } }
                    if frame.opcode == .connectionClose {
                        self.state.withLock { $0.controlClosed = true }
                        channel.closeWebSocket()
                    }
                }, onOpen: { _ in self.state.withLock { $0.opened.append("control") } })
            default:
                return nil
            }
        }
    }

    @Test func attachSendsReceivesResizesAndDetachesByClosingControl() async throws {
        let sim = Simulation()
        let server = try await TestServer.start(routes: { request in
            switch (request.method, request.path) {
            case ("POST", "/1.0/instances/c1/console"):
                let fds = JSONValue.object(["0": .string("cd"), "control": .string("cc")])
                return LiveSocketTests.async(LiveSocketTests.op("con1", .running, metadata: ["fds": fds]))
            case ("GET", "/1.0/operations/con1/wait"):
                // The server's session ends once control is closed.
                for _ in 0..<500 where !sim.state.withLock({ $0.controlClosed }) { try? await Task.sleep(for: .milliseconds(10)) }
                return LiveSocketTests.sync(LiveSocketTests.op("con1", sim.state.withLock { $0.controlClosed } ? .success : .running))
            default:
                return LiveSocketTests.error(404, "not found")
            }
        }, webSockets: sim.route)
        defer { server.stop() }

        let output = Mutex<[UInt8]>([])
        let (input, inputSink) = AsyncStream.makeStream(of: [UInt8].self)
        let (control, controlSink) = AsyncStream.makeStream(of: ExecControl.self)
        let client = LXDClient.unixSocket(server.path)
        async let end = client.console("c1", width: 80, height: 24,
                                       io: ConsoleIO(input: input, output: { b in output.withLock { $0 += b } }, control: control))
        for _ in 0..<500 where output.withLock({ $0.isEmpty }) { try await Task.sleep(for: .milliseconds(10)) }
        #expect(output.withLock { $0 } == Array("login: ".utf8))
        controlSink.yield(.signal(2))  // not a console message: dropped
        controlSink.yield(.resize(width: 132, height: 43))
        inputSink.yield(Array("root\r".utf8))
        for _ in 0..<500 where sim.state.withLock({ $0.input.isEmpty || $0.control.isEmpty }) { try await Task.sleep(for: .milliseconds(10)) }
        inputSink.finish()

        #expect(try await end == .detached)
        let state = sim.state.withLock { $0 }
        #expect(state.opened == ["control", "0"])
        #expect(state.input == Array("root\r".utf8))
        #expect(state.control == [#"{"args":{"height":"43","width":"132"},"command":"window-resize"}"#])
        #expect(state.controlClosed)
        let post = try #require(server.requests.first { $0.path == "/1.0/instances/c1/console" })
        #expect(try JSONDecoder().decode(InstanceConsolePost.self, from: Data(post.body)) == InstanceConsolePost(width: 80, height: 24, type: "console"))
        controlSink.finish()
    }
}
