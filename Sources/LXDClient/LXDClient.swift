import APITypes
#if canImport(FoundationEssentials)
import FoundationEssentials  // not Foundation: it adds ~10 ms of ICU loading to every lxdctl run
#else
import Foundation
#endif

/// A client of one LXD-style `/1.0` API. Every method maps to one documented endpoint (or a
/// short, named sequence of them); errors are `APIError` (server said no) or `TransportError`.
public struct LXDClient: Sendable {
    public let transport: any LXDTransport

    public init(transport: any LXDTransport) {
        self.transport = transport
    }

    /// A client of the agent listening on the unix socket at `path`.
    public static func unixSocket(_ path: String) -> LXDClient {
        LXDClient(transport: HTTPChannelTransport.unixSocket(path))
    }

    /// The agent's socket: `$LXD_DIR/unix.socket`, with `LXD_DIR` defaulting to /var/lib/lxd-swift.
    public static func defaultSocketPath(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        let dir = environment["LXD_DIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/var/lib/lxd-swift"
        return (dir.hasSuffix("/") ? String(dir.dropLast()) : dir) + "/unix.socket"
    }

    // MARK: Raw requests

    /// Sends `request` and returns the raw response, after mapping error envelopes to `APIError`.
    public func raw(_ request: HTTPRequest) async throws -> HTTPResponse {
        let response = try await transport.send(request)
        if let error = Envelope.error(in: response) { throw error }
        return response
    }

    /// A sync request whose metadata decodes as `T`.
    public func get<T: Decodable>(_ type: T.Type, _ path: String, query: [QueryItem] = []) async throws -> T {
        try Envelope.decodeSync(T.self, from: try await transport.send(HTTPRequest(.GET, path, query: query)))
    }

    /// A request answered with an operation; waits for it and returns the final operation.
    /// Throws `APIError` when the operation failed or was cancelled.
    @discardableResult
    public func perform<Body: Encodable>(_ method: RequestMethod, _ path: String, query: [QueryItem] = [], json body: Body) async throws -> APITypes.Operation {
        let op = try await start(method, path, query: query, json: body)
        return try await wait(operation: op.id)
    }

    /// Same as `perform` with no body.
    @discardableResult
    public func perform(_ method: RequestMethod, _ path: String, query: [QueryItem] = []) async throws -> APITypes.Operation {
        let op = try Envelope.decodeAsync(from: try await transport.send(HTTPRequest(method, path, query: query)))
        return try await wait(operation: op.id)
    }

    /// A request answered with an operation; returns the operation as created (not waited for).
    public func start<Body: Encodable>(_ method: RequestMethod, _ path: String, query: [QueryItem] = [], json body: Body) async throws -> APITypes.Operation {
        let request = HTTPRequest(method, path, query: query, body: try Self.encode(body))
        return try Envelope.decodeAsync(from: try await transport.send(request))
    }

    /// A sync request with a JSON body, metadata ignored.
    public func send<Body: Encodable>(_ method: RequestMethod, _ path: String, json body: Body) async throws {
        try Envelope.checkSync(try await transport.send(HTTPRequest(method, path, body: try Self.encode(body))))
    }

    static func encode<Body: Encodable>(_ body: Body) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return Array(try encoder.encode(body))
    }

    // MARK: Operations

    /// Waits until the operation is final (`/wait` in slices of `slice` seconds, so no single
    /// request idles forever) and returns it; throws `APIError(400, err)` when it failed.
    /// `progress` sees the operation as each slice ends while it still runs (its metadata is
    /// where long operations report how far they got).
    @discardableResult
    public func wait(operation id: String, slice: Int = 30,
                     progress: (@Sendable (APITypes.Operation) -> Void)? = nil) async throws -> APITypes.Operation {
        while true {
            let op = try await get(APITypes.Operation.self, APIPath.operationWait(id), query: [QueryItem("timeout", String(slice))])
            guard let status = op.knownStatus, status.isFinal else {
                progress?(op)
                continue
            }
            switch status {
            case .success: return op
            case .cancelled: throw APIError(400, op.err.isEmpty ? "operation \(id) was cancelled" : op.err)
            default: throw APIError(400, op.err.isEmpty ? "operation \(id) failed" : op.err)
            }
        }
    }

    public func operation(_ id: String) async throws -> APITypes.Operation {
        try await get(APITypes.Operation.self, APIPath.operation(id))
    }

    /// All operations, flattened from LXD's by-status map, oldest first.
    public func operations() async throws -> [APITypes.Operation] {
        let byStatus = try await get([String: [APITypes.Operation]].self, APIPath.operations, query: [QueryItem("recursion", "1")])
        return byStatus.values.flatMap { $0 }.sorted { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) }
    }

    // MARK: Images

    /// Uploads a unified image tarball and returns its fingerprint.
    public func importImage(tarball: [UInt8], filename: String) async throws -> String {
        let request = HTTPRequest(.POST, APIPath.images, headers: [
            (name: "Content-Type", value: "application/octet-stream"),
            (name: "X-LXD-filename", value: filename),
        ], body: tarball)
        let created = try Envelope.decodeAsync(from: try await transport.send(request))
        let done = try await wait(operation: created.id)
        guard let fingerprint = done.metadata?["fingerprint"]?.stringValue else {
            throw APIError(500, "image import finished without a fingerprint in operation \(created.id)")
        }
        return fingerprint
    }

    public func createImageAlias(_ name: String, target fingerprint: String) async throws {
        try await send(.POST, APIPath.imageAliases, json: ImageAliasesPost(name: name, target: fingerprint))
    }

    public func images() async throws -> [Image] {
        try await get([Image].self, APIPath.images, query: [QueryItem("recursion", "1")])
    }

    public func imageAlias(_ name: String) async throws -> ImageAliasEntry {
        try await get(ImageAliasEntry.self, APIPath.imageAlias(name))
    }

    /// The fingerprint `reference` names: an alias first, else a unique fingerprint prefix.
    public func resolveImage(_ reference: String) async throws -> String {
        do {
            return try await imageAlias(reference).target
        } catch let error as APIError where error.status == 404 {
            let matches = try await images().map(\.fingerprint).filter { $0.hasPrefix(reference) }
            switch matches.count {
            case 1: return matches[0]
            case 0: throw APIError.notFound("no image with alias or fingerprint '\(reference)'")
            default: throw APIError.badRequest("fingerprint prefix '\(reference)' matches \(matches.count) images; give more characters")
            }
        }
    }

    public func deleteImage(fingerprint: String) async throws {
        try await perform(.DELETE, APIPath.image(fingerprint))
    }

    // MARK: Instances

    /// Creates an instance (and starts it when `post.start` is true); waits for the operation.
    /// `target` names the cluster member to create it on (the receiving member forwards there).
    public func createInstance(_ post: InstancesPost, target: String? = nil) async throws {
        try await perform(.POST, APIPath.instances, query: target.map { [QueryItem("target", $0)] } ?? [], json: post)
    }

    /// All instances with their live state (`recursion=2`).
    public func instances() async throws -> [Instance] {
        try await get([Instance].self, APIPath.instances, query: [QueryItem("recursion", "2")])
    }

    public func instance(_ name: String) async throws -> Instance {
        try await get(Instance.self, APIPath.instance(name))
    }

    public func instanceState(_ name: String) async throws -> InstanceState {
        try await get(InstanceState.self, APIPath.instanceState(name))
    }

    /// `start`, `stop`, `restart`, ... (`PUT /state`); waits for the operation.
    public func changeState(_ name: String, _ change: InstanceStatePut) async throws {
        try await perform(.PUT, APIPath.instanceState(name), json: change)
    }

    /// Deletes an instance; with `force`, stops a running one first (as LXD's client does).
    /// Status Error means the owner did not report in time, not that it runs: when the stop is
    /// refused then, the delete is still tried (the owner refuses to delete a running instance).
    public func deleteInstance(_ name: String, force: Bool = false) async throws {
        if force {
            let current = try await instance(name)
            if current.knownStatus != .stopped {
                do {
                    try await changeState(name, InstanceStatePut(action: "stop", timeout: -1, force: true))
                } catch let refused as APIError where refused.status == 400 && current.knownStatus == .error {
                    do { try await perform(.DELETE, APIPath.instance(name)) } catch { throw refused }
                    return
                }
            }
        }
        try await perform(.DELETE, APIPath.instance(name))
    }

    /// Merges `config` into the instance's config (`PATCH`).
    public func setConfig(_ name: String, _ config: [String: String]) async throws {
        try await sendMaybeAsync(.PATCH, APIPath.instance(name), json: InstancePut(config: config))
    }

    /// Removes config keys: reads the instance and `PUT`s it back without them.
    /// Throws `APIError.notFound` when a key is not set (so a typo is not silently ignored).
    public func unsetConfig(_ name: String, keys: [String]) async throws {
        let current = try await instance(name)
        var config = current.config
        for key in keys {
            guard config.removeValue(forKey: key) != nil else {
                throw APIError.notFound("config key '\(key)' is not set on instance '\(name)'")
            }
        }
        var put = InstancePut(config: config)
        put.devices = current.devices
        put.profiles = current.profiles
        put.description = current.description
        put.ephemeral = current.ephemeral
        put.architecture = current.architecture
        put.stateful = current.stateful
        try await sendMaybeAsync(.PUT, APIPath.instance(name), json: put)
    }

    /// LXD answers instance `PUT`/`PATCH` with an operation; accept a sync answer too.
    private func sendMaybeAsync<Body: Encodable>(_ method: RequestMethod, _ path: String, json body: Body) async throws {
        let response = try await transport.send(HTTPRequest(method, path, body: try Self.encode(body)))
        let head = try Envelope.checkedHead(response)
        if head.type == "async" {
            try await wait(operation: try Envelope.decodeAsync(from: response).id)
        }
    }

    /// The console log (raw bytes) for `console --show-log`.
    public func consoleLog(_ name: String) async throws -> [UInt8] {
        try await raw(HTTPRequest(.GET, APIPath.instanceConsole(name))).body
    }

    // MARK: Files

    public func pullFile(_ name: String, path: String) async throws -> InstanceFile {
        let response = try await raw(HTTPRequest(.GET, APIPath.instanceFiles(name), query: [QueryItem("path", path)]))
        return InstanceFile(
            content: response.body,
            uid: response.header("X-LXD-uid").flatMap { Int64($0) },
            gid: response.header("X-LXD-gid").flatMap { Int64($0) },
            mode: response.header("X-LXD-mode").flatMap { FileMode.parse($0) },
            type: response.header("X-LXD-type") ?? "file"
        )
    }

    /// Writes a regular file (overwriting) inside the instance.
    public func pushFile(_ name: String, path: String, content: [UInt8], uid: Int64, gid: Int64, mode: UInt32) async throws {
        let request = HTTPRequest(.POST, APIPath.instanceFiles(name), query: [QueryItem("path", path)], headers: [
            (name: "Content-Type", value: "application/octet-stream"),
            (name: "X-LXD-uid", value: String(uid)),
            (name: "X-LXD-gid", value: String(gid)),
            (name: "X-LXD-mode", value: FileMode.format(mode)),
            (name: "X-LXD-type", value: "file"),
            (name: "X-LXD-write", value: "overwrite"),
        ], body: content)
        try Envelope.checkSync(try await transport.send(request))
    }
}

/// A file read from an instance with the ownership the server reported.
public struct InstanceFile: Sendable, Equatable {
    public var content: [UInt8]
    public var uid: Int64?
    public var gid: Int64?
    public var mode: UInt32?
    public var type: String
}

/// Octal permission strings as the `X-LXD-mode` header and `--mode` carry them.
public enum FileMode {
    /// "0644", "644" or "0o644" → 0o644; nil for anything else or bits beyond 0o7777.
    public static func parse(_ text: String) -> UInt32? {
        var digits = Substring(text)
        if digits.hasPrefix("0o") { digits = digits.dropFirst(2) }
        guard !digits.isEmpty, let value = UInt32(digits, radix: 8), value <= 0o7777 else { return nil }
        return value
    }

    public static func format(_ mode: UInt32) -> String {
        let octal = String(mode & 0o7777, radix: 8)
        return String(repeating: "0", count: max(0, 4 - octal.count)) + octal
    }
}
