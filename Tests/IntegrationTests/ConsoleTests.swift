import APITypes
import Dispatch
import Foundation
import LXDClient
import Synchronization
import Testing

/// Attaching to a real container's console through lxdd (its monitor's socket, the API's
/// websockets, LXDClient as `lxdctl console` uses it): what the container writes on
/// /dev/console arrives, what is typed reaches a reader inside, resizes reach the tty.
@Suite(.serialized, .enabled(if: Prerequisites.available, "needs root, busybox and the built binaries"), .timeLimit(.minutes(3)))
final class ConsoleTests {
    var agents: [TestAgent] = []

    /// What the console sent, shared with the client's output callback.
    final class Collected: Sendable {
        let bytes = Mutex<[UInt8]>([])
        var text: String { String(decoding: bytes.withLock { $0 }, as: UTF8.self) }
        func contains(_ s: String) -> Bool { text.contains(s) }
        /// Why the attachment failed, once it did.
        let failure = Mutex<String?>(nil)
        var failed: String? { failure.withLock { $0 } }
    }

    deinit {
        for a in agents.reversed() { a.destroy() }
    }

    /// Runs a blocking lxdctl call off the cooperative pool (the console's pumps need it).
    static func offPool(_ agent: TestAgent, _ args: [String]) async -> CommandResult? {
        await withCheckedContinuation { c in
            DispatchQueue.global().async { c.resume(returning: try? agent.ctl(args)) }
        }
    }

    /// Whether `text` arrives on the console within `seconds`.
    static func wait(for text: String, in output: Collected, seconds: Double) async throws -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if output.contains(text) { return true }
            try await Task.sleep(for: .milliseconds(100))
        }
        return output.contains(text)
    }

    @Test func theConsoleCarriesOutputInputAndResizes() async throws {
        let m1 = try TestAgent(name: "m1")
        agents.append(m1)
        try m1.importBusybox()
        try m1.ok(["launch", "busybox", "c1"])
        let client = LXDClient.unixSocket(m1.socket)

        let output = Collected()
        let (input, inputSink) = AsyncStream.makeStream(of: [UInt8].self)
        let (control, controlSink) = AsyncStream.makeStream(of: ExecControl.self)
        let attached = Task {
            do {
                return try await client.console("c1", width: 80, height: 24,
                                                io: ConsoleIO(input: input, output: { bytes in output.bytes.withLock { $0 += bytes } }, control: control))
            } catch {
                output.failure.withLock { $0 = "\(error)" }
                throw error
            }
        }

        // Written inside on /dev/console: seen on the attached console (repeated until the
        // attachment is up; before it, the line only reaches console.log).
        for _ in 0..<20 where !output.contains("marker") && output.failed == nil {
            _ = await Self.offPool(m1, ["exec", "c1", "--", "sh", "-c", "echo marker > /dev/console"])
            _ = try await Self.wait(for: "marker", in: output, seconds: 1)
        }
        try #require(output.failed == nil, "attaching failed: \(output.failed ?? "")")
        #expect(output.contains("marker"), "never saw 'marker' on the console; got \(output.text.debugDescription)\n\(m1.logTail())")

        // Typed on the console: read by a process inside (the tty buffers the line until read).
        // "\n" ends the line in canonical and raw mode alike; timeout bounds a read that never ends.
        inputSink.yield(Array("typed-line\n".utf8))
        let reader = await Self.offPool(m1, ["exec", "c1", "--", "timeout", "10", "sh", "-c", "read line < /dev/console; echo \"got:$line\" > /dev/console"])
        #expect(reader?.status == 0, "reader: \(reader?.stderr ?? "did not run")")
        #expect(try await Self.wait(for: "got:typed-line", in: output, seconds: 10), "the typed line did not come back")

        // A resize on the control websocket reaches the console's tty.
        controlSink.yield(.resize(width: 132, height: 43))
        var size = ""
        for _ in 0..<50 where size != "43 132" {
            try await Task.sleep(for: .milliseconds(200))
            size = (await Self.offPool(m1, ["exec", "c1", "--", "stty", "-F", "/dev/console", "size"]))?.stdout
                .trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        }
        #expect(size == "43 132", "stty size of /dev/console is \(size.debugDescription), not 43 132")

        // Detaching (the input ends) closes the attachment without error.
        inputSink.finish()
        controlSink.finish()
        #expect(try await attached.value == .detached)

        // The log had the marker; clearing empties it.
        #expect(String(decoding: try await client.consoleLog("c1"), as: UTF8.self).contains("marker"))
        try await client.clearConsoleLog("c1")
        #expect(!String(decoding: try await client.consoleLog("c1"), as: UTF8.self).contains("marker"))
    }

    @Test func anotherMembersConsoleIsReachedThroughThisOne() async throws {
        let m1 = try TestAgent(name: "m1", httpsAddress: "127.0.0.1:\(TestAgent.freePort())")
        agents.append(m1)
        let m2 = try TestAgent(name: "m2", httpsAddress: "127.0.0.2:\(TestAgent.freePort())")
        agents.append(m2)
        let token = try #require(try m1.ok(["cluster", "add", "m2"]).split(separator: "\n").last.map(String.init))
        let join = try m2.ctl(["cluster", "join", token])
        try #require(join.status == 0, "join m2: \(join.stderr)\n\(m2.logTail())")
        for a in [m1, m2] {
            let deadline = Date().addingTimeInterval(30)
            while Date() < deadline, (try? a.ok(["cluster", "list", "--format", "csv"]).split(separator: "\n").count) != 2 { usleep(100_000) }
        }
        try m2.importBusybox()
        try m1.ok(["launch", "busybox", "c2", "--target", "m2"])
        let listed = try m1.ok(["list", "--format", "csv"])
        try #require(listed.split(separator: "\n").contains { $0.hasPrefix("c2,") && $0.hasSuffix(",m2") }, "c2 is not on m2: \(listed)")

        // Attached through m1: the POST is forwarded to m2, the websockets proxied by m1.
        let output = Collected()
        let (input, inputSink) = AsyncStream.makeStream(of: [UInt8].self)
        let (control, controlSink) = AsyncStream.makeStream(of: ExecControl.self)
        let client = LXDClient.unixSocket(m1.socket)
        let attached = Task {
            do {
                return try await client.console("c2", width: 80, height: 24,
                                                io: ConsoleIO(input: input, output: { bytes in output.bytes.withLock { $0 += bytes } }, control: control))
            } catch {
                output.failure.withLock { $0 = "\(error)" }
                throw error
            }
        }
        for _ in 0..<20 where !output.contains("from-m2") && output.failed == nil {
            _ = await Self.offPool(m2, ["exec", "c2", "--", "sh", "-c", "echo from-m2 > /dev/console"])
            _ = try await Self.wait(for: "from-m2", in: output, seconds: 1)
        }
        try #require(output.failed == nil, "attaching through m1 failed: \(output.failed ?? "")")
        #expect(output.contains("from-m2"), "never saw 'from-m2'; got \(output.text.debugDescription)")
        inputSink.yield(Array("via-m1\n".utf8))
        let reader = await Self.offPool(m2, ["exec", "c2", "--", "timeout", "10", "sh", "-c", "read line < /dev/console; echo \"got:$line\" > /dev/console"])
        #expect(reader?.status == 0, "reader: \(reader?.stderr ?? "did not run")")
        #expect(try await Self.wait(for: "got:via-m1", in: output, seconds: 10), "the line typed through m1 did not come back")
        inputSink.finish()
        controlSink.finish()
        #expect(try await attached.value == .detached)
    }

    @Test func aStoppedContainerHasNoConsoleToAttachTo() async throws {
        let m1 = try TestAgent(name: "m1")
        agents.append(m1)
        try m1.importBusybox()
        try m1.ok(["init", "busybox", "c2"])
        let client = LXDClient.unixSocket(m1.socket)
        let (input, _) = AsyncStream.makeStream(of: [UInt8].self)
        let (control, _) = AsyncStream.makeStream(of: ExecControl.self)
        do {
            _ = try await client.console("c2", width: 80, height: 24, io: ConsoleIO(input: input, output: { _ in }, control: control))
            Issue.record("attached to a stopped container's console")
        } catch let error as APIError {
            #expect(error.status == 400)
            #expect(error.message.contains("not running"))
        }
    }
}
