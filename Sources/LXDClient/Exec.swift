import APITypes
import NIOCore

/// What to run for `exec`.
public struct ExecOptions: Sendable {
    public var command: [String]
    public var environment: [String: String]
    public var cwd: String?
    /// One pty on fd "0" carrying both directions, instead of separate stdin/stdout/stderr pipes.
    public var interactive: Bool
    public var width: Int?
    public var height: Int?

    public init(command: [String], environment: [String: String] = [:], cwd: String? = nil, interactive: Bool = false, width: Int? = nil, height: Int? = nil) {
        self.command = command
        self.environment = environment
        self.cwd = cwd
        self.interactive = interactive
        self.width = width
        self.height = height
    }

    var post: InstanceExecPost {
        var post = InstanceExecPost(command: command, environment: environment.isEmpty ? nil : environment,
                                    waitForWebsocket: true, interactive: interactive, width: width, height: height)
        post.cwd = cwd
        return post
    }
}

/// Messages for the exec's control websocket.
public enum ExecControl: Sendable, Equatable {
    case resize(width: Int, height: Int)
    case signal(Int32)

    public var message: InstanceExecControl {
        switch self {
        case .resize(let width, let height):
            InstanceExecControl(command: "window-resize", args: ["width": String(width), "height": String(height)])
        case .signal(let number):
            InstanceExecControl(command: "signal", signal: Int(number))
        }
    }
}

/// The local ends of an exec: where input comes from and where output goes.
public struct ExecIO: Sendable {
    /// Input chunks; finishing the stream is stdin EOF.
    public var stdin: AsyncStream<[UInt8]>
    public var stdout: @Sendable ([UInt8]) -> Void
    /// Unused in interactive mode (the pty merges it into stdout).
    public var stderr: @Sendable ([UInt8]) -> Void
    /// Resizes and signals to forward while the command runs.
    public var control: AsyncStream<ExecControl>

    public init(stdin: AsyncStream<[UInt8]>, stdout: @escaping @Sendable ([UInt8]) -> Void, stderr: @escaping @Sendable ([UInt8]) -> Void, control: AsyncStream<ExecControl>) {
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.control = control
    }
}

/// The websocket secrets an exec operation hands out, by fd name ("0", "1", "2", "control").
public struct ExecSecrets: Sendable, Equatable {
    public var byFD: [String: String]

    /// Reads `metadata.fds` of the exec operation and checks the fds the mode needs are there.
    public init(operation: APITypes.Operation, interactive: Bool) throws {
        guard case .object(let fds)? = operation.metadata?["fds"] else {
            throw APIError(500, "exec operation \(operation.id) has no 'fds' in its metadata")
        }
        var secrets: [String: String] = [:]
        for (fd, value) in fds {
            if let secret = value.stringValue { secrets[fd] = secret }
        }
        let needed = interactive ? ["0", "control"] : ["0", "1", "2", "control"]
        for fd in needed where secrets[fd] == nil {
            throw APIError(500, "exec operation \(operation.id) gave no websocket secret for fd '\(fd)'")
        }
        self.byFD = secrets
    }
}

extension LXDClient {
    /// Runs a command in an instance the way LXD's client does: one websocket per fd, stdin
    /// pumped until EOF, output until the server closes each stream; returns the exit code.
    public func exec(_ name: String, _ options: ExecOptions, io: ExecIO) async throws -> Int32 {
        let created = try await start(.POST, APIPath.instanceExec(name), json: options.post)
        let secrets = try ExecSecrets(operation: created, interactive: options.interactive)
        let opID = created.id
        @Sendable func connect(_ fd: String) async throws -> WebSocket {
            try await transport.openWebSocket(HTTPRequest(.GET, APIPath.operationWebSocket(opID), query: [QueryItem("secret", secrets.byFD[fd]!)]))
        }
        // The server starts the command once every websocket is connected; connect them in
        // parallel (each upgrade is a round trip).
        let fds = options.interactive ? ["control", "0"] : ["control", "0", "1", "2"]
        var byFD: [String: WebSocket] = [:]
        var failure: (any Error)?
        await withTaskGroup(of: (String, Result<WebSocket, any Error>).self) { group in
            for fd in fds {
                group.addTask { (fd, await Result(catching: { try await connect(fd) })) }
            }
            // Collect every outcome, so sockets that did open are closed if another failed.
            for await (fd, outcome) in group {
                switch outcome {
                case .success(let socket): byFD[fd] = socket
                case .failure(let error): failure = failure ?? error
                }
            }
        }
        if let failure {
            await Self.closeAll(Array(byFD.values))
            throw failure
        }
        let all = fds.map { byFD[$0]! }
        let control = byFD["control"]!, input = byFD["0"]!
        let stdoutSocket = options.interactive ? input : byFD["1"]!
        let stderrSocket = options.interactive ? nil : byFD["2"]!

        let stdinPump = Task {
            for await chunk in io.stdin {
                // Servers commonly refuse frames over 16 KiB (the default limit of NIO and
                // Hummingbird websockets); stdin is a byte stream, so split freely.
                var offset = 0
                while offset < chunk.count {
                    let end = min(offset + Self.maxInputFrame, chunk.count)
                    try await input.send(binary: Array(chunk[offset..<end]))
                    offset = end
                }
            }
            // Non-interactive: closing fd 0's websocket is the command's stdin EOF. A pty has
            // no EOF of its own, so interactive input just stops.
            if !options.interactive, !Task.isCancelled { await input.close() }
        }
        let controlPump = Task {
            for await message in io.control {
                try await control.send(text: String(decoding: try Self.encode(message.message), as: UTF8.self))
            }
        }
        let outputs = Task {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { for await m in stdoutSocket.messages { io.stdout(m.bytes) } }
                if let stderrSocket {
                    group.addTask { for await m in stderrSocket.messages { io.stderr(m.bytes) } }
                }
            }
        }
        defer {
            stdinPump.cancel()
            controlPump.cancel()
        }

        let sockets = all
        let finished: APITypes.Operation
        do {
            finished = try await wait(operation: opID)
        } catch {
            await Self.closeAll(sockets)
            throw error
        }
        // The output streams end when the server closes them after the last byte; bound the
        // wait so a server that keeps one open after the command exited cannot hang us.
        let grace = Task {
            try await Task.sleep(for: .seconds(options.interactive ? 1 : 5))
            await Self.closeAll(sockets)
        }
        await outputs.value
        grace.cancel()
        await Self.closeAll(sockets)
        guard let code = finished.metadata?["return"]?.intValue else {
            throw APIError(500, "exec operation \(opID) finished without a 'return' code")
        }
        return Int32(truncatingIfNeeded: code)
    }
}

extension LXDClient {
    /// Largest websocket frame the exec input pump sends.
    static let maxInputFrame = 16 * 1024

    /// Closes websockets in parallel, each waiting briefly for the peer's close answer.
    static func closeAll(_ sockets: [WebSocket]) async {
        await withTaskGroup(of: Void.self) { group in
            for socket in sockets { group.addTask { await socket.close(timeout: .milliseconds(200)) } }
        }
    }
}

extension Result where Failure == any Error {
    init(catching body: () async throws -> Success) async {
        do { self = .success(try await body()) } catch { self = .failure(error) }
    }
}

extension WebSocketMessage {
    var bytes: [UInt8] {
        switch self {
        case .binary(let b): b
        case .text(let s): Array(s.utf8)
        }
    }
}
