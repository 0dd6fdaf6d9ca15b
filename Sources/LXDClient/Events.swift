import APITypes
#if canImport(FoundationEssentials)
import FoundationEssentials  // not Foundation: it adds ~10 ms of ICU loading to every lxdctl run
#else
import Foundation
#endif

extension LXDClient {
    /// Watches `/1.0/events`: the events of every cluster member, each with its `location`,
    /// from now on. `types` nil asks for every type. Iterate the returned stream; `close()` ends it.
    /// The server disconnects a watcher that falls far behind (the stream then ends): reconnect
    /// and re-read the state you care about.
    public func watchEvents(types: Set<EventType>? = nil, headers: [(name: String, value: String)] = []) async throws -> EventStream {
        let query = types.map { [QueryItem("type", $0.map(\.rawValue).sorted().joined(separator: ","))] } ?? []
        let socket = try await transport.openWebSocket(HTTPRequest(.GET, APIPath.events, query: query, headers: headers))
        return EventStream(socket: socket)
    }
}

extension APIPath {
    public static let events = "/1.0/events"
}

/// The events of one `/1.0/events` websocket, decoded; ends when the server closes it.
/// Iterate it once (single consumer).
public struct EventStream: AsyncSequence, Sendable {
    public typealias Element = Event
    let socket: WebSocket

    public struct AsyncIterator: AsyncIteratorProtocol {
        var messages: WebSocketMessages.AsyncIterator
        let decoder = JSONDecoder()

        /// The next event; nil at the end; throws `EventStreamError` on a frame that is not an event.
        public mutating func next() async throws -> Event? {
            while let message = await messages.next() {
                guard case .text(let text) = message else { continue }  // events are text frames only
                do {
                    return try decoder.decode(Event.self, from: Data(text.utf8))
                } catch {
                    throw EventStreamError.malformed(String(text.prefix(200)))
                }
            }
            return nil
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(messages: socket.messages.makeAsyncIterator())
    }

    /// Closes the websocket (the server stops sending).
    public func close() async { await socket.close() }
}

public enum EventStreamError: Error, CustomStringConvertible, Sendable {
    case malformed(String)

    public var description: String {
        switch self {
        case .malformed(let text): "the server sent a frame on /1.0/events that is not an event: \(text)"
        }
    }
}

/// One line per event for `lxdctl monitor --format pretty` (pure).
public enum EventText {
    /// `TIMESTAMP LOCATION lifecycle instance-started /1.0/instances/c1`,
    /// `TIMESTAMP LOCATION operation Running "Creating instance" ID`, ...
    public static func line(_ event: Event) -> String {
        let head = "\(event.timestamp) \(event.location.isEmpty ? "-" : event.location) \(event.type)"
        let m = event.metadata
        switch event.type {
        case EventType.lifecycle.rawValue:
            var text = "\(head) \(m["action"]?.stringValue ?? "?") \(m["source"]?.stringValue ?? "")"
            if case .object(let context)? = m["context"], !context.isEmpty {
                text += " " + context.keys.sorted().map { "\($0)=\(describe(context[$0]!))" }.joined(separator: " ")
            }
            return text
        case EventType.operation.rawValue:
            var text = "\(head) \(m["status"]?.stringValue ?? "?") \"\(m["description"]?.stringValue ?? "")\" \(m["id"]?.stringValue ?? "")"
            if let err = m["err"]?.stringValue, !err.isEmpty { text += " error=\"\(err)\"" }
            return text
        case EventType.logging.rawValue:
            return "\(head) \(m["level"]?.stringValue ?? "?") \(m["message"]?.stringValue ?? "")"
        default:
            return "\(head) \(describe(m))"
        }
    }

    static func describe(_ value: JSONValue) -> String {
        switch value {
        case .null: "null"
        case .bool(let b): "\(b)"
        case .int(let i): "\(i)"
        case .double(let d): "\(d)"
        case .string(let s): s
        case .array(let a): "[" + a.map(describe).joined(separator: ",") + "]"
        case .object(let o): "{" + o.keys.sorted().map { "\($0)=\(describe(o[$0]!))" }.joined(separator: ",") + "}"
        }
    }
}
