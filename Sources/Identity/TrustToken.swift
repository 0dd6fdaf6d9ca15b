#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A trust token: what `lxdctl config trust add` prints and `lxdctl remote add --token` reads.
/// Base64 of JSON, like LXD's: the server's fingerprint lets the client check it is talking to
/// the right server *before* it sends the secret.
public struct TrustToken: Codable, Sendable, Equatable {
    public var clientName: String
    public var fingerprint: String
    public var addresses: [String]
    public var secret: String
    public var expiresAt: Date?

    enum CodingKeys: String, CodingKey {
        case clientName = "client_name"
        case fingerprint, addresses, secret
        case expiresAt = "expires_at"
    }

    public init(clientName: String, fingerprint: String, addresses: [String], secret: String, expiresAt: Date?) {
        self.clientName = clientName
        self.fingerprint = fingerprint
        self.addresses = addresses
        self.secret = secret
        self.expiresAt = expiresAt
    }

    public func encoded() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        // Encoding strings, arrays and a date cannot fail.
        return (try! encoder.encode(self)).base64EncodedString()
    }

    public static func decode(_ text: String) throws -> TrustToken {
        guard let data = Data(base64Encoded: text.trimmedWhitespace) else {
            throw TrustTokenError.malformed("not base64")
        }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        let token: TrustToken
        do {
            token = try decoder.decode(TrustToken.self, from: data)
        } catch {
            throw TrustTokenError.malformed("not a trust token JSON object")
        }
        guard token.fingerprint.count == 64, token.fingerprint.allSatisfy(\.isHexDigit) else {
            throw TrustTokenError.malformed("fingerprint is not 64 hex digits")
        }
        guard !token.secret.isEmpty else { throw TrustTokenError.malformed("empty secret") }
        return token
    }

    /// 32 random bytes in hex. SystemRandomNumberGenerator is getrandom(2) on Linux: fit for secrets.
    public static func newSecret() -> String {
        var rng = SystemRandomNumberGenerator()
        return Hex.encode((0..<32).map { _ in UInt8.random(in: .min ... .max, using: &rng) })
    }

    /// What the server stores: the secret's SHA-256, so a database dump does not hold usable tokens.
    public static func secretDigest(_ secret: String) -> String {
        Fingerprint.sha256(der: Array(secret.utf8))
    }
}

public enum TrustTokenError: Error, CustomStringConvertible, Sendable, Equatable {
    case malformed(String)

    public var description: String {
        switch self {
        case .malformed(let r): "invalid trust token (\(r)): pass the whole text printed by `lxdctl config trust add`"
        }
    }
}
