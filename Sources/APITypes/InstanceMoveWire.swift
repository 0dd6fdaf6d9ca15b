/// The member-to-member calls of a move (`/internal/moves/...`), source to target. Not LXD's
/// API: the two ends are members of one cluster running the same build.

/// Asks the target to get ready for an instance: image layer, an empty container.
public struct MovePrepareRequest: Codable, Sendable, Equatable {
    /// The move's token, as written in the database by the source (32 hex digits).
    public var token: String
    public var project: String
    public var name: String
    /// The source member's name.
    public var source: String
    /// "live", "stateless", "cold", or "copy" (`name` is then the new instance, whose row
    /// holds a pending copy to the target, and `copyOf` the instance copied).
    public var method: String
    /// A live move's memory mode ("stop-and-copy", ...), as the source decided it; nil for
    /// other methods, and from a source of an older build (stop-and-copy).
    public var mode: String?
    /// A copy's source instance (same project).
    public var copyOf: String?

    enum CodingKeys: String, CodingKey {
        case token, project, name, source, method, mode
        case copyOf = "copy_of"
    }

    public init(token: String, project: String, name: String, source: String, method: String, mode: String? = nil,
                copyOf: String? = nil) {
        self.token = token
        self.project = project
        self.name = name
        self.source = source
        self.method = method
        self.mode = mode
        self.copyOf = copyOf
    }
}

/// The target's answer to a prepare: what it can restore with.
public struct MovePrepared: Codable, Sendable, Equatable {
    /// `criu --version` on the target; nil when it has no usable CRIU.
    public var criuVersion: String?
    public init(criuVersion: String?) { self.criuVersion = criuVersion }
}

/// Asks the target to take the instance over: restore (live) or start (stateless) it and
/// commit the move in the database.
public struct MoveHandOverRequest: Codable, Sendable, Equatable {
    public var token: String
    public var project: String
    public var name: String
    public var method: String
    /// A live move's memory mode, as in the prepare; nil for other methods (and stop-and-copy
    /// from an older source).
    public var mode: String?

    public init(token: String, project: String, name: String, method: String, mode: String? = nil) {
        self.token = token
        self.project = project
        self.name = name
        self.method = method
        self.mode = mode
    }
}

/// The target's definite answer to a hand-over.
public struct MoveHandOverReply: Codable, Sendable, Equatable {
    /// True when the move committed: the target owns the instance.
    public var committed: Bool
    /// Why it did not commit, or what went wrong after the commit (a stateless start failed).
    public var message: String?
    /// How long the restore (live) or start (stateless) took on the target.
    public var restoreMilliseconds: Double?

    enum CodingKeys: String, CodingKey {
        case committed, message
        case restoreMilliseconds = "restore_ms"
    }

    public init(committed: Bool, message: String? = nil, restoreMilliseconds: Double? = nil) {
        self.committed = committed
        self.message = message
        self.restoreMilliseconds = restoreMilliseconds
    }
}

/// What one upload of a move carries: the container's root filesystem changes or the
/// checkpoint images, as one tree stream sent in parts.
public enum MoveStream: String, Codable, Sendable, CaseIterable {
    case rootfs
    case state
}

public enum MoveToken {
    /// A token is 32 lowercase hex digits: anything else in a path or body is refused.
    public static func isValid(_ token: String) -> Bool {
        token.utf8.count == 32 && token.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
    }
}
