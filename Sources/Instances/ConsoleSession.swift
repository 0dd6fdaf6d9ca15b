import APITypes
import Foundation
import Logging
import Operations
import Runtime

/// One attachment to a container's console: LXD's two websockets ("0" carries the terminal's
/// bytes both ways, "control" its window resizes) and the socket to the container's console
/// monitor. It ends when the container stops (the monitor's EOF), another client attaches
/// (also EOF), or the client closes either websocket (`lxc console` detaches by closing
/// control).
actor ConsoleSession {
    static let names = ["0", "control"]
    private var attached: [String: WebSocketAttachment] = [:]
    private var allAttached: [CheckedContinuation<Void, Never>] = []
    /// Each socket's handler waits here until the session ends; resuming closes the socket.
    private var finished: [String: CheckedContinuation<Void, Never>] = [:]
    private var done = false

    /// Called by the websocket route; returns when this socket should close.
    func attach(_ fd: String, _ attachment: WebSocketAttachment) async {
        attached[fd] = attachment
        if Self.names.allSatisfy({ attached[$0] != nil }) {
            for w in allAttached { w.resume() }
            allAttached = []
        }
        if done { return }
        await withCheckedContinuation { finished[fd] = $0 }
    }

    func waitForAll(timeout: Duration) async throws {
        if Self.names.allSatisfy({ attached[$0] != nil }) { return }
        let timer = Task {
            try? await Task.sleep(for: timeout)
            self.timeoutWaiters()
        }
        await withCheckedContinuation { allAttached.append($0) }
        timer.cancel()
        guard Self.names.allSatisfy({ attached[$0] != nil }) else {
            throw InstancesError.invalid("Console websockets were not all connected within \(timeout): connect to \"0\" and \"control\" of the operation's fds")
        }
    }

    private func timeoutWaiters() {
        for w in allAttached { w.resume() }
        allAttached = []
    }

    /// Pumps between the websockets and `console` (a monitor socket, closed here) until one
    /// side ends. `size` is sent first when given.
    func run(console: Int32, size: (rows: UInt16, columns: UInt16)?, logger: Logger) async {
        defer { finishAll() }
        let data = attached["0"]!, control = attached["control"]!
        let writer = FDWriter(fd: dup(console))
        if let size { writer.write(ConsoleMessage.resize(rows: size.rows, columns: size.columns).encoded) }
        let stop = StopFlag()
        let output = readStream(fd: console, stop: stop, bufferSize: ConsoleMessage.maxPacket)
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await chunk in data.inbound {
                    for packet in ConsoleMessage.packets(input: chunk) { writer.write(packet) }
                }
            }
            group.addTask {
                for await message in control.inbound {
                    if let size = Self.resize(message) { writer.write(ConsoleMessage.resize(rows: size.rows, columns: size.columns).encoded) }
                }
            }
            group.addTask {
                for await packet in output {
                    do {
                        if case .data(let bytes) = try ConsoleMessage.decode(packet) { try? await data.link.send(bytes) }
                    } catch {
                        logger.warning("console packet refused", metadata: ["error": "\(error)"])
                    }
                }
            }
            // Whichever side ends first ends the attachment.
            await group.next()
            stop.set()
            group.cancelAll()
        }
        writer.close()
    }

    /// A `window-resize` control message's size (LXD sends the numbers as strings); nil for
    /// any other message and for sizes outside 1...10000.
    static func resize(_ message: [UInt8]) -> (rows: UInt16, columns: UInt16)? {
        guard let msg = try? JSONDecoder().decode(InstanceExecControl.self, from: Data(message)),
              msg.command == "window-resize",
              let w = msg.args?["width"].flatMap({ Int($0) }), let h = msg.args?["height"].flatMap({ Int($0) }),
              InstanceAccess.terminalSizes.contains(w), InstanceAccess.terminalSizes.contains(h) else { return nil }
        return (UInt16(h), UInt16(w))
    }

    private func finishAll() {
        done = true
        for (_, c) in finished { c.resume() }
        finished = [:]
    }
}
