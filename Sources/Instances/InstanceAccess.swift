import APITypes
import Foundation
import InstanceConfig
import Logging
import Operations
import Runtime

/// Reaching into an instance on this member: exec sessions, the console log, file push and pull.
public struct InstanceAccess: Sendable {
    let context: InstanceContext

    public func consoleLog(_ name: String) async throws -> [UInt8] {
        let ref = try await context.row(name).ref
        return try context.host.consoleLog(instance: ref)
    }

    /// `DELETE /1.0/instances/NAME/console`: empties the console log.
    public func clearConsoleLog(_ name: String) async throws {
        let ref = try await context.row(name).ref
        do {
            try context.host.clearConsoleLog(instance: ref)
        } catch {
            throw error.useCaseError
        }
    }

    /// The terminal sizes (columns or rows) a console or exec accepts.
    static let terminalSizes = 1...10_000

    /// `POST /1.0/instances/NAME/console`: a websocket operation attached to the container's
    /// console ("0" the terminal's bytes, "control" its resizes), as LXD's clients expect. The
    /// monitor is connected before the operation exists, so a console that cannot be reached
    /// is this request's error. Width and height 0 (what LXD's clients send when they do not
    /// know) leave the size as it is.
    public func console(_ name: String, _ post: InstanceConsolePost) async throws -> APIOperation {
        let ref = try await context.row(name).ref
        let type = post.type ?? "console"
        guard type == "console" else {
            if type == "vga" { throw InstancesError.invalid("Console type \"vga\" is for virtual machines; \(name) is a container: use type \"console\"") }
            throw InstancesError.invalid("Unknown console type \"\(type)\": use \"console\"")
        }
        let width = post.width ?? 0, height = post.height ?? 0
        for (field, value) in [("width", width), ("height", height)] where value != 0 && !Self.terminalSizes.contains(value) {
            throw InstancesError.invalid("Console \(field) \(value) is out of range: use 1 to \(Self.terminalSizes.upperBound), or 0 to keep the size")
        }
        let size = width > 0 && height > 0 ? (rows: UInt16(height), columns: UInt16(width)) : nil
        guard context.host.state(instance: ref)?.running == true else {
            throw InstancesError.invalid("Instance \(name) is not running: start it first")
        }
        let socket: Int32
        do {
            socket = try context.host.openConsole(instance: ref)
        } catch {
            throw error.useCaseError
        }
        let session = ConsoleSession()
        let (secrets, fds) = Self.webSocketSecrets(ConsoleSession.names)
        let logger = context.logger
        return await context.operations.start(
            class: "websocket", description: "Showing console",
            resources: ["instances": [ref.apiPath]],
            metadata: ["fds": .object(fds)], secrets: secrets,
            webSocketHandler: { fd, attachment in await session.attach(fd, attachment) }
        ) { _ in
            do {
                try await session.waitForAll(timeout: .seconds(30))
            } catch {
                close(socket)
                throw error
            }
            await session.run(console: socket, size: size, logger: logger)
            return nil
        }
    }

    /// A fresh random secret per websocket name: (secret → name, name → secret as metadata).
    static func webSocketSecrets(_ names: [String]) -> (secrets: [String: String], fds: [String: JSONValue]) {
        var secrets: [String: String] = [:]
        var fds: [String: JSONValue] = [:]
        for fd in names {
            let secret = RandomHex.make(bytes: 32)
            secrets[secret] = fd
            fds[fd] = .string(secret)
        }
        return (secrets, fds)
    }

    public func readFile(_ name: String, path: String) async throws -> InstanceFile {
        let ref = try await context.row(name).ref
        // lxc sends `NAME/etc/x` as the path `etc/x`: relative to the container's root, as LXD reads it.
        let path = path.hasPrefix("/") ? path : "/" + path
        do {
            let f = try await context.host.readFile(instance: ref, path: path, maxBytes: ContainerRuntime.maxReadBytes)
            if let entries = f.entries {
                return InstanceFile(content: Array(entries.joined(separator: "\n").utf8), uid: f.uid, gid: f.gid, mode: f.mode, type: "directory")
            }
            return InstanceFile(content: f.content, uid: f.uid, gid: f.gid, mode: f.mode)
        } catch {
            throw error.useCaseError
        }
    }

    public func writeFile(_ name: String, path: String, _ file: InstanceFile) async throws {
        let ref = try await context.row(name).ref
        // lxc sends `NAME/etc/x` as the path `etc/x`: relative to the container's root, as LXD reads it.
        let path = path.hasPrefix("/") ? path : "/" + path
        guard file.type == "file" else { throw InstancesError.invalid("Only regular files can be pushed") }
        do {
            try await context.host.writeFile(instance: ref, path: path, content: file.content, mode: file.mode, uid: file.uid, gid: file.gid)
        } catch {
            throw error.useCaseError
        }
    }

    /// `POST /1.0/instances/NAME/exec`: a websocket operation as LXD's clients expect.
    public func exec(_ name: String, _ post: InstanceExecPost) async throws -> APIOperation {
        let ref = try await context.row(name).ref
        guard context.host.state(instance: ref)?.running == true else {
            throw InstancesError.invalid("Instance \(name) is not running: start it first")
        }
        guard !post.command.isEmpty, !post.command[0].isEmpty else { throw InstancesError.invalid("Exec needs a command") }
        guard post.waitForWebsocket == true else {
            throw InstancesError.invalid("Only wait-for-websocket=true is supported: connect to the operation's websockets")
        }
        // lxc sends "cwd": "" for "the default".
        let cwd = post.cwd.flatMap { $0.isEmpty ? nil : $0 } ?? "/root"
        guard cwd.hasPrefix("/"), !cwd.utf8.contains(0) else {
            throw InstancesError.invalid("Exec working directory must be an absolute path: \(cwd)")
        }
        let session = ExecSession(interactive: post.interactive ?? false)
        let (secrets, fds) = Self.webSocketSecrets(session.names)
        var env = ["PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "USER": "root", "LANG": "C.UTF-8"]
        if post.interactive == true { env["TERM"] = "xterm-256color" }
        for (k, v) in post.environment ?? [:] { env[k] = v }
        let request = ExecRequest(
            command: post.command, environment: env, cwd: cwd,
            uid: post.user ?? 0, gid: post.group ?? 0)
        let host = context.host
        let logger = context.logger
        return await context.operations.start(
            class: "websocket", description: "Executing command",
            resources: ["instances": [ref.apiPath]],
            metadata: ["fds": .object(fds)], secrets: secrets,
            webSocketHandler: { fd, attachment in await session.attach(fd, attachment) }
        ) { _ in
            try await session.waitForAll(timeout: .seconds(30))
            let code = try await session.run(host: host, instance: ref, request: request, width: post.width, height: post.height, logger: logger)
            return ["return": .int(Int(code))]
        }
    }
}

/// What to run for an exec.
struct ExecRequest: Sendable {
    var command: [String]
    var environment: [String: String]
    var cwd: String
    var uid: UInt32
    var gid: UInt32
}

extension RuntimeError {
    /// The kind of a runtime failure: missing things are not found, misuse is invalid, the rest internal.
    var useCaseError: InstancesError {
        switch self {
        case .notFound: InstancesError.notFound(description)
        case .notRunning, .alreadyRunning, .invalid: InstancesError.invalid(description)
        case .unsupported: .unsupported(description)
        case .system(_, _, let code) where code == ENOENT || code == ENOTDIR: InstancesError.notFound(description)
        case .system(_, _, let code) where code == ELOOP || code == EXDEV || code == EISDIR: InstancesError.invalid(description)
        default: InstancesError.internal(description)
        }
    }
}
