import APITypes
import Foundation
@testable import Instances
import Operations
import Runtime
import Synchronization
import Testing

/// Attaching to a console over the fake host: the refusals, then a whole session between
/// websockets driven by the test and the monitor's end of a socket pair.
@Suite(.timeLimit(.minutes(1))) struct ConsoleUseCaseTests {
    @Test func refusalsComeBeforeAnySocketIsOpened() async throws {
        try await withHarness { h in
            try await h.launch("c1")
            #expect(await kind { _ = try await h.access.console("c1", InstanceConsolePost(width: 80, height: 24)) } == .invalid)
            _ = try await h.changeState("c1", "start")
            #expect(await kind { _ = try await h.access.console("nope", InstanceConsolePost()) } == .notFound)
            #expect(await kind { _ = try await h.access.console("c1", InstanceConsolePost(type: "vga")) } == .invalid)
            #expect(await kind { _ = try await h.access.console("c1", InstanceConsolePost(type: "serial")) } == .invalid)
            for (w, h2) in [(10_001, 24), (80, -1), (Int.max, 24), (80, Int.min)] {
                #expect(await kind { _ = try await h.access.console("c1", InstanceConsolePost(width: w, height: h2)) } == .invalid)
            }
            #expect(!h.host.callLog.contains { $0.hasPrefix("open console") })
            h.host.consoleError.withLock { $0 = .invalid("the console of c1 is not available (container started before consoles existed; restart it)") }
            do {
                _ = try await h.access.console("c1", InstanceConsolePost())
                Issue.record("attached to a console the host refused")
            } catch let error as InstancesError {
                #expect(error.kind == .invalid)
                #expect(error.message.contains("restart it"))
            }
        }
    }

    @Test func clearingTheLogReachesTheHost() async throws {
        try await withHarness { h in
            #expect(await kind { try await h.access.clearConsoleLog("nope") } == .notFound)
            try await h.launch("c1")
            try await h.access.clearConsoleLog("c1")
            #expect(h.host.callLog.contains("clear console c1"))
        }
    }

    @Test func aSessionCarriesBytesAndResizesUntilTheContainerStops() async throws {
        try await withHarness { h in
            try await h.launch("c1")
            _ = try await h.changeState("c1", "start")
            let op = try await h.access.console("c1", InstanceConsolePost(width: 80, height: 24))
            #expect(op.class == "websocket")
            let monitor = try #require(h.host.consoleMonitors.withLock { $0["c1"] })
            defer { close(monitor) }
            guard case .object(let fds)? = op.metadata?["fds"] else { Issue.record("no fds in \(String(describing: op.metadata))"); return }
            #expect(Set(fds.keys) == ["0", "control"])

            let data = FakeSocket(), control = FakeSocket()
            var handlers: [Task<Void, Never>] = []
            for (fd, socket) in [("control", control), ("0", data)] {
                let secret = try #require(fds[fd]?.stringValue)
                let (name, handler) = try #require(await h.operations.webSocket(id: op.id, secret: secret))
                handlers.append(Task { await handler(name, socket.attachment) })
            }

            // The size from the request comes first.
            #expect(try await Monitor.read(monitor) == ConsoleMessage.resize(rows: 24, columns: 80).encoded)
            // Console output reaches the data websocket; a malformed packet is dropped.
            Monitor.write(monitor, [0x00, 0x01])
            Monitor.write(monitor, ConsoleMessage.data(Array("login: ".utf8)).encoded)
            try await eventually { data.sent == Array("login: ".utf8) }
            // Keystrokes reach the console, resizes on control too (LXD's strings).
            data.receive(Array("root\r".utf8))
            #expect(try await Monitor.read(monitor) == ConsoleMessage.data(Array("root\r".utf8)).encoded)
            control.receive(Array(#"{"command":"window-resize","args":{"width":"132","height":"43"}}"#.utf8))
            #expect(try await Monitor.read(monitor) == ConsoleMessage.resize(rows: 43, columns: 132).encoded)
            // An out-of-range size is not passed on; the next message still is.
            control.receive(Array(#"{"command":"window-resize","args":{"width":"70000","height":"43"}}"#.utf8))
            data.receive([0x03])
            #expect(try await Monitor.read(monitor) == ConsoleMessage.data([0x03]).encoded)

            // The container stops: the monitor's EOF ends the operation and closes both sockets.
            shutdown(monitor, Int32(SHUT_RDWR))
            let done = try await h.finish(op)
            #expect(done.statusCode == StatusCode.success.rawValue, "\(done.err)")
            for t in handlers { await t.value }
        }
    }

    @Test func closingControlDetaches() async throws {
        try await withHarness { h in
            try await h.launch("c1")
            _ = try await h.changeState("c1", "start")
            let op = try await h.access.console("c1", InstanceConsolePost())
            let monitor = try #require(h.host.consoleMonitors.withLock { $0["c1"] })
            defer { close(monitor) }
            guard case .object(let fds)? = op.metadata?["fds"] else { Issue.record("no fds"); return }
            let data = FakeSocket(), control = FakeSocket()
            var handlers: [Task<Void, Never>] = []
            for (fd, socket) in [("control", control), ("0", data)] {
                let (name, handler) = try #require(await h.operations.webSocket(id: op.id, secret: fds[fd]?.stringValue ?? ""))
                handlers.append(Task { await handler(name, socket.attachment) })
            }
            control.close()
            let done = try await h.finish(op)
            #expect(done.statusCode == StatusCode.success.rawValue)
            for t in handlers { await t.value }
            // The session closed its end: the monitor sees EOF.
            #expect(try await Monitor.read(monitor) == [])
        }
    }
}

/// A websocket as the operation's handler sees it: inbound frames the test sends, and what the
/// session sent back.
final class FakeSocket: Sendable {
    struct Link: WebSocketLink {
        let socket: FakeSocket
        func send(_ bytes: [UInt8]) async throws { socket.sink.withLock { $0 += bytes } }
        func sendText(_ text: String) async throws { socket.sink.withLock { $0 += Array(text.utf8) } }
    }
    private let stream: AsyncStream<[UInt8]>
    private let continuation: AsyncStream<[UInt8]>.Continuation
    fileprivate let sink = Mutex<[UInt8]>([])

    init() { (stream, continuation) = AsyncStream.makeStream() }

    var attachment: WebSocketAttachment { WebSocketAttachment(inbound: stream, link: Link(socket: self)) }
    var sent: [UInt8] { sink.withLock { $0 } }
    func receive(_ bytes: [UInt8]) { continuation.yield(bytes) }
    func close() { continuation.finish() }
}

/// The monitor's end of the fake console: packets read without blocking a cooperative thread.
enum Monitor {
    struct Timeout: Error {}

    /// The next packet; [] at EOF.
    static func read(_ fd: Int32) async throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: ConsoleMessage.maxPacket)
        for _ in 0..<500 {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n >= 0 { return Array(buffer[..<n]) }
            guard errno == EAGAIN || errno == EINTR else { throw POSIXError(.EIO) }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw Timeout()
    }

    static func write(_ fd: Int32, _ packet: [UInt8]) {
        _ = packet.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
    }
}

/// Polls `condition` for up to 5 s.
func eventually(_ condition: () -> Bool) async throws {
    for _ in 0..<500 where !condition() { try await Task.sleep(for: .milliseconds(10)) }
    #expect(condition())
}
