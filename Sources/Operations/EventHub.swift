import APITypes
import Foundation
import Synchronization

/// A subscriber's queue with a fixed capacity. A reader that falls `capacity` elements behind is
/// cut off: the mailbox closes (`overflowed` becomes true) and the reader gets what was queued
/// before, then the end. Dropping the oldest instead would hide the loss: a client would wait
/// forever for an operation's final event that was thrown away. A cut-off client knows it must
/// reconnect and re-read the state it cares about.
public final class BoundedMailbox<Element: Sendable>: Sendable {
    public let stream: AsyncStream<Element>
    private let continuation: AsyncStream<Element>.Continuation
    private let cutOff = Mutex(false)

    public init(capacity: Int) {
        precondition(capacity > 0, "a mailbox needs room for one element")
        // bufferingOldest: when full, the new element is the one refused, so what was queued
        // is an unbroken prefix of what was offered.
        (stream, continuation) = AsyncStream.makeStream(of: Element.self, bufferingPolicy: .bufferingOldest(capacity))
    }

    /// Queues `element`; false when the mailbox is closed (now full, closed before, or the reader left).
    @discardableResult
    public func offer(_ element: Element) -> Bool {
        switch continuation.yield(element) {
        case .enqueued:
            return true
        case .dropped:
            cutOff.withLock { $0 = true }
            continuation.finish()
            return false
        case .terminated:
            return false
        @unknown default:
            return false
        }
    }

    /// True once the reader fell behind and the mailbox closed on it.
    public var overflowed: Bool { cutOff.withLock { $0 } }

    /// Ends the stream after what is queued.
    public func close() { continuation.finish() }

    /// Runs `action` once the stream has ended for any reason (closed, overflowed, reader gone).
    func onTermination(_ action: @escaping @Sendable () -> Void) {
        continuation.onTermination = { _ in action() }
    }
}

/// This member's events (DESIGN "Operations": in memory on the member where they happen). Every
/// event published here originated on this member; other members' events reach a client through
/// the Gateway, which opens their `/1.0/events` and merges (so nothing is relayed twice).
public final class EventHub: Sendable {
    /// Events a subscriber may fall behind by before it is cut off (see `BoundedMailbox`).
    public static let defaultCapacity = 1024

    /// The member name stamped on every event.
    public let location: String
    private struct Subscriber: Sendable {
        let types: Set<EventType>
        let mailbox: BoundedMailbox<Event>
    }
    private let subscribers = Mutex<(next: UInt64, all: [UInt64: Subscriber])>((0, [:]))

    public init(location: String) {
        self.location = location
    }

    /// Events of `types` from now on, with a queue of `capacity`; iterate `stream`. The
    /// subscription ends when the reader stops iterating (or cancels), on `close()`, or on overflow.
    public func subscribe(types: Set<EventType>, capacity: Int = EventHub.defaultCapacity) -> BoundedMailbox<Event> {
        let mailbox = BoundedMailbox<Event>(capacity: capacity)
        let id = subscribers.withLock { s in
            s.next += 1
            s.all[s.next] = Subscriber(types: types, mailbox: mailbox)
            return s.next
        }
        mailbox.onTermination { [weak self] in self?.remove(id) }
        return mailbox
    }

    public var subscriberCount: Int { subscribers.withLock { $0.all.count } }

    /// True while someone subscribes to `type` (lets costly events be skipped when nobody watches).
    public func hasSubscribers(for type: EventType) -> Bool {
        subscribers.withLock { s in s.all.values.contains { $0.types.contains(type) } }
    }

    /// Delivers `event` to every subscriber of its type. Never blocks: a full subscriber is cut off.
    public func publish(_ event: Event) {
        guard let type = EventType(rawValue: event.type) else { return }
        let targets = subscribers.withLock { s in s.all.values.filter { $0.types.contains(type) }.map(\.mailbox) }
        // Outside the lock: closing a mailbox runs its termination handler, which takes the lock.
        for mailbox in targets { mailbox.offer(event) }
    }

    /// Stamps an event of `type` with the time and this member's name, and publishes it.
    public func publish(type: EventType, metadata: JSONValue, project: String = "default") {
        publish(Event(type: type.rawValue, timestamp: OperationRegistry.timestamp(), metadata: metadata, location: location, project: project))
    }

    /// A lifecycle event: `action` happened to the object at API path `source`.
    public func lifecycle(_ action: LifecycleAction, source: String, name: String? = nil, context: [String: JSONValue]? = nil) {
        publish(type: .lifecycle, metadata: LifecycleEvent(action: action, source: source, name: name, context: context).jsonValue)
    }

    /// An `operation` event carrying the operation as the API shows it.
    public func operation(_ op: APIOperation) {
        guard hasSubscribers(for: .operation) else { return }
        publish(type: .operation, metadata: JSONValue(encoding: op) ?? .null)
    }

    private func remove(_ id: UInt64) {
        _ = subscribers.withLock { $0.all.removeValue(forKey: id) }
    }
}

extension JSONValue {
    /// `value` as a JSON tree (through its Codable form); nil when it does not encode.
    public init?<T: Encodable>(encoding value: T) {
        guard let data = try? JSONEncoder().encode(value), let tree = try? JSONDecoder().decode(JSONValue.self, from: data) else { return nil }
        self = tree
    }
}
