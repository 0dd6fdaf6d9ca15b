/// `GET /1.0/images/FINGERPRINT` (LXD `api.Image`).
public struct Image: Codable, Sendable, Equatable {
    public struct Alias: Codable, Sendable, Equatable {
        public var name: String
        public var description: String
        public init(name: String, description: String = "") {
            self.name = name
            self.description = description
        }
    }

    public var fingerprint: String
    public var filename: String
    public var size: Int64
    public var architecture: String
    public var type: String = "container"
    public var createdAt: String
    public var uploadedAt: String
    public var properties: [String: String]
    public var aliases: [Alias]
    public var `public`: Bool = false
    public var autoUpdate: Bool = false
    public var cached: Bool = false

    enum CodingKeys: String, CodingKey {
        case fingerprint, filename, size, architecture, type, properties, aliases, `public`, cached
        case createdAt = "created_at"
        case uploadedAt = "uploaded_at"
        case autoUpdate = "auto_update"
    }

    public init(fingerprint: String, filename: String, size: Int64, architecture: String, createdAt: String, uploadedAt: String, properties: [String: String], aliases: [Alias]) {
        self.fingerprint = fingerprint
        self.filename = filename
        self.size = size
        self.architecture = architecture
        self.createdAt = createdAt
        self.uploadedAt = uploadedAt
        self.properties = properties
        self.aliases = aliases
    }
}

/// `POST /1.0/images/aliases` body.
public struct ImageAliasesPost: Codable, Sendable {
    public var name: String
    public var description: String?
    public var target: String
    public init(name: String, target: String) {
        self.name = name
        self.target = target
    }
}

/// `GET /1.0/images/aliases/NAME`.
public struct ImageAliasEntry: Codable, Sendable, Equatable {
    public var name: String
    public var description: String
    public var target: String
    public var type: String = "container"
    public init(name: String, description: String = "", target: String) {
        self.name = name
        self.description = description
        self.target = target
    }
}
