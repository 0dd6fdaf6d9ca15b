import APITypes
import Foundation
import Hummingbird

/// The one way a route reads a JSON body: collected up to `BodyLimits.json` (413 past it) and
/// decoded, a decoding failure being LXD's 400 that names the field.
extension APIRoutes {
    func decode<T: Decodable>(_ req: Request) async throws -> T {
        try Self.decodeBody(T.self, try await req.collectJSON(upTo: limits.json))
    }

    /// The JSON body decoded as two types (LXD's fields and our extension fields).
    func decodeTwice<A: Decodable, B: Decodable>(_ req: Request) async throws -> (A, B) {
        let data = try await req.collectJSON(upTo: limits.json)
        return (try Self.decodeBody(A.self, data), try Self.decodeBody(B.self, data))
    }

    static func decodeBody<T: Decodable>(_ type: T.Type, _ data: Data) throws -> T {
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch let error as APIError {
            // A body type's own check (a field out of range) says what is wrong.
            throw error
        } catch let DecodingError.keyNotFound(key, _) {
            throw APIError.badRequest("Invalid request body: missing field \"\(key.stringValue)\"")
        } catch let DecodingError.typeMismatch(_, c) {
            throw APIError.badRequest("Invalid request body: wrong type at \"\(c.codingPath.map(\.stringValue).joined(separator: "."))\"")
        } catch {
            throw APIError.badRequest("Invalid request body: malformed JSON")
        }
    }
}
