import APITypes

/// The keys that detach from a console, as `lxc console` has them: ctrl+a then q. Ctrl+a
/// twice sends one ctrl+a; ctrl+a then any other key sends both (nothing typed is lost). A
/// ctrl+a at the end of one read waits for the next. Pure: bytes in, bytes out.
public struct ConsoleEscape: Sendable, Equatable {
    public static let prefix: UInt8 = 0x01
    public static let detachKey = UInt8(ascii: "q")
    private var pending = false

    public init() {}

    /// The bytes of `input` to send on, and whether it asked to detach (then what follows the
    /// q is dropped).
    public mutating func feed(_ input: [UInt8]) -> (send: [UInt8], detach: Bool) {
        var out: [UInt8] = []
        out.reserveCapacity(input.count)
        for byte in input {
            if pending {
                pending = false
                switch byte {
                case Self.detachKey: return (out, true)
                case Self.prefix: out.append(Self.prefix)
                default: out += [Self.prefix, byte]
                }
            } else if byte == Self.prefix {
                pending = true
            } else {
                out.append(byte)
            }
        }
        return (out, false)
    }
}

/// How an attachment to a console ended.
public enum ConsoleEnd: Sendable, Equatable {
    /// The input asked to (its stream finished).
    case detached
    /// The server closed the console: the container stopped, or another client attached.
    case closed
}

/// The local ends of a console attachment.
public struct ConsoleIO: Sendable {
    /// Keystrokes to send; finishing the stream detaches.
    public var input: AsyncStream<[UInt8]>
    public var output: @Sendable ([UInt8]) -> Void
    /// Window resizes to send while attached (other messages are not for consoles).
    public var control: AsyncStream<ExecControl>

    public init(input: AsyncStream<[UInt8]>, output: @escaping @Sendable ([UInt8]) -> Void, control: AsyncStream<ExecControl>) {
        self.input = input
        self.output = output
        self.control = control
    }
}

extension LXDClient {
    /// Attaches to an instance's console the way LXD's client does: `POST …/console`, then
    /// the "control" websocket, then "0" (the terminal's bytes both ways). Detaching closes
    /// control, which ends the server's side; returns once the operation is over.
    public func console(_ name: String, width: Int?, height: Int?, io: ConsoleIO) async throws -> ConsoleEnd {
        let created = try await start(.POST, APIPath.instanceConsole(name), json: InstanceConsolePost(width: width, height: height, type: "console"))
        guard case .object(let fds)? = created.metadata?["fds"],
              let dataSecret = fds["0"]?.stringValue, let controlSecret = fds["control"]?.stringValue else {
            throw APIError(500, "console operation \(created.id) gave no websocket secrets for fds '0' and 'control'")
        }
        let opID = created.id
        @Sendable func connect(_ secret: String) async throws -> WebSocket {
            try await transport.openWebSocket(HTTPRequest(.GET, APIPath.operationWebSocket(opID), query: [QueryItem("secret", secret)]))
        }
        let control = try await connect(controlSecret)
        let data: WebSocket
        do {
            data = try await connect(dataSecret)
        } catch {
            await control.close(timeout: .milliseconds(200))
            throw error
        }
        let end = await withTaskGroup(of: ConsoleEnd?.self) { group in
            group.addTask {
                for await chunk in io.input {
                    var offset = 0
                    while offset < chunk.count {
                        let stop = min(offset + Self.maxInputFrame, chunk.count)
                        do { try await data.send(binary: Array(chunk[offset..<stop])) } catch { return .closed }
                        offset = stop
                    }
                }
                return Task.isCancelled ? nil : .detached
            }
            group.addTask {
                for await message in data.messages { io.output(message.bytes) }
                return .closed
            }
            group.addTask {
                for await message in io.control {
                    guard case .resize = message else { continue }
                    _ = try? await control.send(text: String(decoding: try Self.encode(message.message), as: UTF8.self))
                }
                return nil
            }
            var end = ConsoleEnd.closed
            for await result in group {
                if let result {
                    end = result
                    break
                }
            }
            // Closing control is how LXD's client detaches; the server then closes "0".
            await control.close(timeout: .milliseconds(500))
            await data.close(timeout: .milliseconds(500))
            group.cancelAll()
            return end
        }
        _ = try await wait(operation: opID)
        return end
    }

    /// Empties an instance's console log (`DELETE …/console`).
    public func clearConsoleLog(_ name: String) async throws {
        try Envelope.checkSync(try await transport.send(HTTPRequest(.DELETE, APIPath.instanceConsole(name))))
    }
}
