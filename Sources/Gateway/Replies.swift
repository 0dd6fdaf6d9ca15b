import APITypes
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

    /// A member's answer to a forwarded request, passed on as it came (hop-by-hop headers dropped).
    static func forwarded(_ answer: ForwardedResponse) -> Hummingbird.Response {
        var fields = HTTPFields()
        for (name, value) in answer.headers {
            let lower = name.lowercased()
            guard !["content-length", "connection", "transfer-encoding", "date", "server", "keep-alive"].contains(lower),
                  let field = HTTPField.Name(name) else { continue }
            fields.append(HTTPField(name: field, value: value))
        }
        return .init(status: .init(code: answer.status), headers: fields, body: .init(byteBuffer: ByteBuffer(bytes: answer.body)))
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
}

extension JSONValue {
    /// `value` as the API shows it (what a filter looks at); null if it does not encode.
    init<T: Encodable>(shown value: T) {
        self = (try? JSONDecoder().decode(JSONValue.self, from: JSONEncoder().encode(value))) ?? .null
    }
}
