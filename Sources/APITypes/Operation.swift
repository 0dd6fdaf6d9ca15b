/// `GET /1.0/operations/ID` (LXD `api.Operation`).
public struct Operation: Codable, Sendable, Equatable {
    public var id: String
    public var `class`: String
    public var description: String
    public var createdAt: String
    public var updatedAt: String
    public var status: String
    public var statusCode: Int
    public var resources: [String: [String]]
    public var metadata: [String: JSONValue]?
    public var mayCancel: Bool
    public var err: String
    public var location: String

    enum CodingKeys: String, CodingKey {
        case id, `class`, description, status, resources, metadata, err, location
        case createdAt = "created_at"
        case updatedAt = "updated_at"
        case statusCode = "status_code"
        case mayCancel = "may_cancel"
    }

    public init(id: String, class: String, description: String, createdAt: String, updatedAt: String, status: StatusCode, resources: [String: [String]], metadata: [String: JSONValue]?, mayCancel: Bool = false, err: String = "", location: String) {
        self.id = id
        self.class = `class`
        self.description = description
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.status = status.name
        self.statusCode = status.rawValue
        self.resources = resources
        self.metadata = metadata
        self.mayCancel = mayCancel
        self.err = err
        self.location = location
    }
}

/// `Operation` collides with Foundation's in any file importing both: use this name there.
public typealias APIOperation = Operation
