/// One message on `/1.0/events` (LXD `api.Event`): one JSON text frame per event.
public struct Event: Codable, Sendable, Equatable {
    /// `operation`, `lifecycle` or `logging` (`EventType`).
    public var type: String
    public var timestamp: String
    /// For `operation`: the operation as `GET /1.0/operations/ID` shows it; for `lifecycle`:
    /// `LifecycleEvent`.
    public var metadata: JSONValue
    /// The member the event happened on.
    public var location: String
    public var project: String

    public init(type: String, timestamp: String, metadata: JSONValue, location: String, project: String = "default") {
        self.type = type
        self.timestamp = timestamp
        self.metadata = metadata
        self.location = location
        self.project = project
    }
}

/// The kinds of event a client can ask for with `?type=`.
public enum EventType: String, Codable, Sendable, CaseIterable, Hashable {
    case operation
    case lifecycle
    case logging

    /// `?type=operation,lifecycle` → the set; absent or empty means every type (as LXD does).
    /// Throws `APIError` 400 naming the unknown type and the valid ones.
    public static func parseList(_ text: String?) throws -> Set<EventType> {
        guard let text, !text.isEmpty else { return Set(allCases) }
        var types = Set<EventType>()
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            let name = part.trimmingSpaces()
            guard let type = EventType(rawValue: name) else {
                throw APIError.badRequest("Unknown event type \"\(name)\": use operation, lifecycle or logging (comma-separated)")
            }
            types.insert(type)
        }
        return types
    }
}

/// The metadata of a `lifecycle` event (LXD `api.EventLifecycle`): what happened (`action`) to
/// which object (`source`, its API path).
public struct LifecycleEvent: Codable, Sendable, Equatable {
    public var action: String
    public var source: String
    public var name: String?
    public var project: String?
    public var context: [String: JSONValue]?

    public init(action: LifecycleAction, source: String, name: String? = nil, project: String? = "default", context: [String: JSONValue]? = nil) {
        self.action = action.rawValue
        self.source = source
        self.name = name
        self.project = project
        self.context = context
    }

    public var jsonValue: JSONValue {
        var o: [String: JSONValue] = ["action": .string(action), "source": .string(source)]
        if let name { o["name"] = .string(name) }
        if let project { o["project"] = .string(project) }
        if let context { o["context"] = .object(context) }
        return .object(o)
    }
}

/// LXD's lifecycle action names for what this server does.
public enum LifecycleAction: String, Codable, Sendable, CaseIterable {
    case instanceCreated = "instance-created"
    case instanceStarted = "instance-started"
    case instanceStopped = "instance-stopped"
    case instanceRestarted = "instance-restarted"
    case instanceDeleted = "instance-deleted"
    case instanceUpdated = "instance-updated"
    case instanceRenamed = "instance-renamed"
    case imageCreated = "image-created"
    case imageDeleted = "image-deleted"
    case imageAliasCreated = "image-alias-created"
    case imageAliasDeleted = "image-alias-deleted"
    case clusterMemberAdded = "cluster-member-added"
    case clusterMemberRemoved = "cluster-member-removed"
}

extension Substring {
    fileprivate func trimmingSpaces() -> String {
        String(drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed())
    }
}
