/// LXD's response envelope (`type` sync / async / error) with its exact field names.
public struct Response<Metadata: Codable & Sendable>: Codable, Sendable {
    public var type: String
    public var status: String
    public var statusCode: Int
    public var operation: String
    public var errorCode: Int
    public var error: String
    public var metadata: Metadata?

    enum CodingKeys: String, CodingKey {
        case type, status, operation, error, metadata
        case statusCode = "status_code"
        case errorCode = "error_code"
    }

    public init(type: String, status: String, statusCode: Int, operation: String = "", errorCode: Int = 0, error: String = "", metadata: Metadata?) {
        self.type = type
        self.status = status
        self.statusCode = statusCode
        self.operation = operation
        self.errorCode = errorCode
        self.error = error
        self.metadata = metadata
    }

    public static func sync(_ metadata: Metadata?) -> Response {
        Response(type: "sync", status: "Success", statusCode: 200, metadata: metadata)
    }

    public static func async(operationURL: String, _ metadata: Metadata) -> Response {
        Response(type: "async", status: "Operation created", statusCode: 100, operation: operationURL, metadata: metadata)
    }
}

/// The body of an error response; `metadata` is always null.
public struct ErrorResponse: Codable, Sendable, Equatable {
    public var type: String = "error"
    public var status: String = ""
    public var statusCode: Int = 0
    public var operation: String = ""
    public var errorCode: Int
    public var error: String
    public var metadata: [String: String]? = nil

    enum CodingKeys: String, CodingKey {
        case type, status, operation, error, metadata
        case statusCode = "status_code"
        case errorCode = "error_code"
    }

    public init(errorCode: Int, error: String) {
        self.errorCode = errorCode
        self.error = error
    }
}

/// The one error type at the API boundary: an HTTP status and a message an operator can act on.
public struct APIError: Error, CustomStringConvertible, Sendable, Equatable {
    public var status: Int
    public var message: String

    public init(_ status: Int, _ message: String) {
        self.status = status
        self.message = message
    }

    public static func badRequest(_ m: String) -> APIError { APIError(400, m) }
    public static func forbidden(_ m: String) -> APIError { APIError(403, m) }
    public static func notFound(_ m: String) -> APIError { APIError(404, m) }
    public static func conflict(_ m: String) -> APIError { APIError(409, m) }
    public static func tooLarge(_ m: String) -> APIError { APIError(413, m) }
    public static func `internal`(_ m: String) -> APIError { APIError(500, m) }
    public static func unavailable(_ m: String) -> APIError { APIError(503, m) }

    public var description: String { message }
}

/// LXD's numeric status codes for instances and operations.
public enum StatusCode: Int, Codable, Sendable {
    case operationCreated = 100
    case started = 101
    case stopped = 102
    case running = 103
    case cancelling = 104
    case pending = 105
    case starting = 106
    case stopping = 107
    case aborting = 108
    case freezing = 109
    case frozen = 110
    case thawed = 111
    case error = 112
    case ready = 113
    case success = 200
    case failure = 400
    case cancelled = 401

    public var name: String {
        switch self {
        case .operationCreated: "Operation created"
        case .started: "Started"
        case .stopped: "Stopped"
        case .running: "Running"
        case .cancelling: "Cancelling"
        case .pending: "Pending"
        case .starting: "Starting"
        case .stopping: "Stopping"
        case .aborting: "Aborting"
        case .freezing: "Freezing"
        case .frozen: "Frozen"
        case .thawed: "Thawed"
        case .error: "Error"
        case .ready: "Ready"
        case .success: "Success"
        case .failure: "Failure"
        case .cancelled: "Cancelled"
        }
    }

    public var isFinal: Bool { self == .success || self == .failure || self == .cancelled }
}

/// A JSON value for free-form metadata (operation metadata, event payloads).
public enum JSONValue: Codable, Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let i = try? c.decode(Int.self) { self = .int(i) }
        else if let d = try? c.decode(Double.self) { self = .double(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .int(let i): try c.encode(i)
        case .double(let d): try c.encode(d)
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }

    public subscript(key: String) -> JSONValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    public var stringValue: String? { if case .string(let s) = self { return s }; return nil }
    public var intValue: Int? {
        switch self {
        case .int(let i): return i
        // Int(exactly:) is nil for fractions, NaN, infinities and values past Int's range (Int(d) would trap).
        case .double(let d): return Int(exactly: d)
        default: return nil
        }
    }
}

/// What carries LXD's status pair (`status` name, `status_code` number): both travel as sent, so
/// a code this build does not know still decodes; `knownStatus` is the typed view.
public protocol StatusReporting {
    var status: String { get set }
    var statusCode: Int { get set }
}

extension StatusReporting {
    /// The status as LXD's code; nil for a code this build does not know.
    public var knownStatus: StatusCode? { StatusCode(rawValue: statusCode) }

    /// Sets the name and the code together.
    public mutating func setStatus(_ code: StatusCode) {
        status = code.name
        statusCode = code.rawValue
    }
}

extension Instance: StatusReporting {}
extension InstanceState: StatusReporting {}
extension Operation: StatusReporting {}
