import APITypes
import ClusterDB
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// Turns values and errors into LXD-shaped HTTP responses.
enum Reply {
    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return e
    }()

    static func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) -> Hummingbird.Response {
        let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        return .init(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func sync<T: Codable & Sendable>(_ metadata: T) -> Hummingbird.Response {
        json(APITypes.Response<T>.sync(metadata))
    }

    static func empty() -> Hummingbird.Response {
        json(APITypes.Response<[String: String]>.sync(nil))
    }

    static func async(_ op: APIOperation) -> Hummingbird.Response {
        var r = json(APITypes.Response<APIOperation>.async(operationURL: "/1.0/operations/\(op.id)", op), status: .accepted)
        r.headers[.location] = "/1.0/operations/\(op.id)"
        return r
    }

    static func error(_ e: APIError) -> Hummingbird.Response {
        json(ErrorResponse(errorCode: e.status, error: e.message), status: .init(code: e.status))
    }

    static func raw(_ bytes: [UInt8], headers extra: [(String, String)] = []) -> Hummingbird.Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/octet-stream"
        for (k, v) in extra {
            if let name = HTTPField.Name(k) { headers[name] = v }
        }
        return .init(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    /// Maps any error to the API boundary: our `APIError`s keep their status, anything else is a 500
    /// that still carries the underlying message.
    static func apiError(from error: any Error) -> APIError {
        if let e = error as? APIError { return e }
        if let e = error as? any APIErrorConvertible { return e.apiError }
        // Hummingbird's own refusals (a body over its limit, a bad upgrade) keep their status.
        if let e = error as? HTTPError { return APIError(e.status.code, e.body ?? e.status.reasonPhrase) }
        return APIError(500, "\(error)")
    }
}

/// Errors of lower layers that know their API status.
public protocol APIErrorConvertible: Error {
    var apiError: APIError { get }
}

/// Database refusals that reach the API: what the caller asked for is missing, taken or
/// malformed (4xx), or the cluster is busy electing (503, retry); only a broken row is a 500.
extension ClusterDBError: APIErrorConvertible {
    public var apiError: APIError {
        switch self {
        case .notFound: .notFound(description)
        case .alreadyExists, .exhausted: .conflict(description)
        case .ambiguous, .invalidArgument: .badRequest(description)
        case .outcomeUnknown, .retriesExhausted, .schemaTooNew: .unavailable(description)
        case .corrupt, .migrationFailed: .internal(description)
        }
    }
}
