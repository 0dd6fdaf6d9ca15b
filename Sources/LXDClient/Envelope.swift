import APITypes
#if canImport(FoundationEssentials)
import FoundationEssentials  // not Foundation: it adds ~10 ms of ICU loading to every lxdctl run
#else
import Foundation
#endif

/// Decoding of LXD's response envelope (pure: bytes in, values or `APIError` out).
public enum Envelope {
    /// The envelope fields that decide how to read the rest.
    struct Head: Decodable {
        var type: String?
        var statusCode: Int?
        var errorCode: Int?
        var error: String?
        var operation: String?
        enum CodingKeys: String, CodingKey {
            case type, error, operation
            case statusCode = "status_code"
            case errorCode = "error_code"
        }
    }

    /// Decodes the `metadata` of a sync response; throws `APIError` for an error envelope,
    /// a non-2xx status, or a body that is not LXD's envelope.
    public static func decodeSync<T: Decodable>(_ type: T.Type, from response: HTTPResponse) throws -> T {
        let head = try checkedHead(response)
        guard head.type == "sync" else {
            throw APIError(response.status, "expected a sync response, got '\(head.type ?? "")'")
        }
        return try decodeMetadata(T.self, from: response)
    }

    /// Like `decodeSync` but for responses whose metadata is irrelevant (may be null or absent).
    public static func checkSync(_ response: HTTPResponse) throws {
        let head = try checkedHead(response)
        guard head.type == "sync" || head.type == "async" else {
            throw APIError(response.status, "expected a sync response, got '\(head.type ?? "")'")
        }
    }

    /// Decodes an async response: the created operation (its `id` names it for `/wait`).
    public static func decodeAsync(from response: HTTPResponse) throws -> APITypes.Operation {
        let head = try checkedHead(response)
        guard head.type == "async" else {
            throw APIError(response.status, "expected an async (operation) response, got '\(head.type ?? "")'")
        }
        var op = try decodeMetadata(APITypes.Operation.self, from: response)
        // The operation URL is authoritative for where to wait; the metadata id should match it.
        if let url = head.operation, let id = APIPath.operationID(fromURL: url) { op.id = id }
        return op
    }

    /// The `APIError` an error envelope (or any non-2xx answer) stands for, nil for success.
    public static func error(in response: HTTPResponse) -> APIError? {
        let head = try? JSONDecoder().decode(Head.self, from: Data(response.body))
        if let head, head.type == "error" {
            let code = head.errorCode.flatMap { $0 > 0 ? $0 : nil } ?? response.status
            return APIError(code, head.error ?? "unknown error (HTTP \(response.status))")
        }
        if (200..<300).contains(response.status) { return nil }
        return APIError(response.status, "HTTP \(response.status): \(snippet(response.body))")
    }

    static func checkedHead(_ response: HTTPResponse) throws -> Head {
        if let error = error(in: response) { throw error }
        do {
            return try JSONDecoder().decode(Head.self, from: Data(response.body))
        } catch {
            throw APIError(response.status, "malformed response (not LXD's JSON envelope): \(snippet(response.body))")
        }
    }

    static func decodeMetadata<T: Decodable>(_ type: T.Type, from response: HTTPResponse) throws -> T {
        do {
            // Only `metadata` is read here: APITypes.Response insists on every envelope field,
            // and a sync answer may leave out `operation`/`error_code`.
            let envelope = try JSONDecoder().decode(MetadataOnly<T>.self, from: Data(response.body))
            guard let metadata = envelope.metadata else {
                throw APIError(response.status, "response has no metadata (expected \(T.self))")
            }
            return metadata
        } catch let error as APIError {
            throw error
        } catch {
            throw APIError(response.status, "cannot decode \(T.self) from response: \(error)")
        }
    }

    struct MetadataOnly<T: Decodable>: Decodable {
        var metadata: T?
    }

    static func snippet(_ body: [UInt8]) -> String {
        let text = String(decoding: body.prefix(200), as: UTF8.self)
        return text.isEmpty ? "(empty body)" : text
    }
}
