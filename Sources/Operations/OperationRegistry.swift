import APITypes
import Foundation
import Logging

/// What an operation's body may do while it runs: report progress into the operation's metadata.
public struct OperationContext: Sendable {
    public let id: String
    let registry: OperationRegistry

    public func setMetadata(_ key: String, _ value: JSONValue) async {
        await registry.updateMetadata(id: id, key: key, value: value)
    }
}

/// One end of a websocket attached to an operation (exec's stdin/stdout/stderr/control).
/// The socket closes when the operation's handler returns.
/// The Gateway implements it over Hummingbird; Operations and Instances stay free of HTTP types.
public protocol WebSocketLink: Sendable {
    func send(_ bytes: [UInt8]) async throws
    func sendText(_ text: String) async throws
}

/// A connected websocket: the frames the client sends (binary or text payloads), ending when the
/// client closes; and the link to send back.
public struct WebSocketAttachment: Sendable {
    public let inbound: AsyncStream<[UInt8]>
    public let link: any WebSocketLink

    public init(inbound: AsyncStream<[UInt8]>, link: any WebSocketLink) {
        self.inbound = inbound
        self.link = link
    }
}

/// The operations of this member, in memory (DESIGN.md: never persisted in ClusterDB).
/// Finished operations are kept for a while so clients can still `wait` on them.
public actor OperationRegistry {
    public typealias Body = @Sendable (OperationContext) async throws -> [String: JSONValue]?
    /// Called once per websocket connection with the fd name the secret selected; returns when the socket is done.
    public typealias WebSocketHandler = @Sendable (String, WebSocketAttachment) async -> Void

    struct Entry {
        var operation: APIOperation
        var waiters: [UUID: CheckedContinuation<Void, Never>] = [:]
        var secrets: [String: String] = [:]  // secret -> fd name
        var webSocketHandler: WebSocketHandler?
        var finishedAt: ContinuousClock.Instant?
    }

    private var entries: [String: Entry] = [:]
    private let location: String
    private let memberID: Int64
    private let logger: Logger
    private let retention: Duration
    /// This member's events: every state change of an operation is published here, and the use
    /// cases holding this registry publish their lifecycle events through it.
    public nonisolated let events: EventHub

    /// `memberID` is written into every operation id (`OperationID`), so any member can tell
    /// which member runs an operation and forward `/1.0/operations/ID` there.
    public init(location: String, memberID: Int64 = 0, logger: Logger, retention: Duration = .seconds(300), events: EventHub? = nil) {
        self.events = events ?? EventHub(location: location)
        self.location = location
        self.memberID = memberID
        self.logger = logger
        self.retention = retention
    }

    /// Registers a running operation and starts its body. The returned value is the operation as created.
    public func start(
        class opClass: String = "task", description: String, resources: [String: [String]] = [:],
        metadata: [String: JSONValue]? = nil, secrets: [String: String] = [:],
        webSocketHandler: WebSocketHandler? = nil, body: @escaping Body
    ) -> APIOperation {
        pruneFinished()
        let id = OperationID.make(memberID: memberID)
        let now = Self.timestamp()
        let op = APIOperation(
            id: id, class: opClass, description: description, createdAt: now, updatedAt: now,
            status: .running, resources: resources, metadata: metadata, location: location)
        entries[id] = Entry(operation: op, secrets: secrets, webSocketHandler: webSocketHandler)
        events.operation(op)
        let context = OperationContext(id: id, registry: self)
        let log = logger
        Task {
            do {
                let result = try await body(context)
                self.finish(id: id, status: .success, metadata: result, error: "")
            } catch is CancellationError {
                self.finish(id: id, status: .cancelled, metadata: nil, error: "operation cancelled")
            } catch {
                log.info("operation failed", metadata: ["operation": "\(id)", "error": "\(error)"])
                self.finish(id: id, status: .failure, metadata: nil, error: "\(error)")
            }
        }
        return op
    }

    public func get(_ id: String) -> APIOperation? { entries[id]?.operation }

    public func list() -> [APIOperation] {
        pruneFinished()
        return entries.values.map(\.operation).sorted { $0.createdAt < $1.createdAt }
    }

    /// Waits until the operation is final or `timeout` passes; nil when unknown.
    public func wait(_ id: String, timeout: Duration?) async -> APIOperation? {
        guard let entry = entries[id] else { return nil }
        if StatusCode(rawValue: entry.operation.statusCode)?.isFinal == true { return entry.operation }
        let token = UUID()
        var timer: Task<Void, Never>?
        if let timeout {
            timer = Task {
                try? await Task.sleep(for: timeout)
                self.releaseWaiter(id: id, token: token)
            }
        }
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            addWaiter(id: id, token: token, c)
        }
        timer?.cancel()
        return entries[id]?.operation
    }

    /// Resolves a websocket connection to its operation's handler, or nil when the secret is wrong.
    public func webSocket(id: String, secret: String) -> (fd: String, handler: WebSocketHandler)? {
        guard let entry = entries[id], let fd = entry.secrets[secret], let handler = entry.webSocketHandler,
              StatusCode(rawValue: entry.operation.statusCode)?.isFinal == false else { return nil }
        // Each secret admits one connection.
        entries[id]?.secrets[secret] = nil
        return (fd, handler)
    }

    func updateMetadata(id: String, key: String, value: JSONValue) {
        guard entries[id] != nil else { return }
        var md = entries[id]!.operation.metadata ?? [:]
        md[key] = value
        entries[id]!.operation.metadata = md
        entries[id]!.operation.updatedAt = Self.timestamp()
        events.operation(entries[id]!.operation)
    }

    private func addWaiter(id: String, token: UUID, _ c: CheckedContinuation<Void, Never>) {
        guard let entry = entries[id], StatusCode(rawValue: entry.operation.statusCode)?.isFinal == false else {
            c.resume()
            return
        }
        entries[id]!.waiters[token] = c
    }

    private func releaseWaiter(id: String, token: UUID) {
        entries[id]?.waiters.removeValue(forKey: token)?.resume()
    }

    private func finish(id: String, status: StatusCode, metadata: [String: JSONValue]?, error: String) {
        guard var entry = entries[id] else { return }
        entry.operation.status = status.name
        entry.operation.statusCode = status.rawValue
        if let metadata {
            var md = entry.operation.metadata ?? [:]
            for (k, v) in metadata { md[k] = v }
            entry.operation.metadata = md
        }
        entry.operation.err = error
        entry.operation.updatedAt = Self.timestamp()
        entry.finishedAt = .now
        entry.secrets = [:]
        let waiters = entry.waiters.values
        entry.waiters = [:]
        entries[id] = entry
        events.operation(entry.operation)
        for w in waiters { w.resume() }
    }

    private func pruneFinished() {
        let now = ContinuousClock.now
        for (id, e) in entries {
            if let done = e.finishedAt, now - done > retention { entries[id] = nil }
        }
    }

    public static func timestamp(_ date: Date = Date()) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: date)
    }
}

/// Operation ids stay UUID-shaped (clients treat them as opaque) but their first group is the
/// running member's id in hex: `0000000300a1-...` style lookups need no database or broadcast.
public enum OperationID {
    public static func make(memberID: Int64) -> String {
        let uuid = UUID().uuidString.lowercased()
        let hex = String(UInt32(truncatingIfNeeded: memberID), radix: 16)
        return String(repeating: "0", count: 8 - hex.count) + hex + uuid.dropFirst(8)
    }

    /// The member id written into `id`; nil when `id` is not one of ours.
    public static func memberID(of id: String) -> Int64? {
        let parts = id.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 5, parts[0].count == 8, let n = UInt32(parts[0], radix: 16) else { return nil }
        return Int64(n)
    }
}
