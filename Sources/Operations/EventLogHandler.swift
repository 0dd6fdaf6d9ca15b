import APITypes
import Logging

/// Passes every log record to the agent's own handler and, while someone watches `logging`
/// events, publishes it on the hub too (LXD's `logging` event: `message`, `level`, `context`).
/// Records are published at the level the logger already let through; nothing is logged from
/// here, so publishing cannot recurse.
public struct EventLogHandler: LogHandler {
    private var base: any LogHandler
    private let hub: EventHub

    public init(wrapping base: any LogHandler, hub: EventHub) {
        self.base = base
        self.hub = hub
    }

    public func log(event: LogEvent) {
        base.log(event: event)
        guard hub.hasSubscribers(for: .logging) else { return }
        var context: [String: JSONValue] = [:]
        for (key, value) in base.metadata { context[key] = .string("\(value)") }
        for (key, value) in event.metadata ?? [:] { context[key] = .string("\(value)") }
        hub.publish(type: .logging, metadata: .object([
            "message": .string(event.message.description),
            "level": .string(event.level.rawValue),
            "context": .object(context),
        ]))
    }

    public var metadataProvider: Logger.MetadataProvider? {
        get { base.metadataProvider }
        set { base.metadataProvider = newValue }
    }

    public var metadata: Logger.Metadata {
        get { base.metadata }
        set { base.metadata = newValue }
    }

    public var logLevel: Logger.Level {
        get { base.logLevel }
        set { base.logLevel = newValue }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { base[metadataKey: key] }
        set { base[metadataKey: key] = newValue }
    }
}
