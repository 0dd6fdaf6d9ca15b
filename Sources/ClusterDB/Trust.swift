import Dqlite
import Foundation

/// A trusted certificate (`certificates` table).
public struct TrustedCertificate: Sendable, Equatable {
    public enum Kind: String, Sendable {
        case client, server
    }

    public var fingerprint: String
    public var name: String
    public var type: Kind
    /// PEM.
    public var certificate: String
    public var restricted: Bool

    public init(fingerprint: String, name: String, type: Kind, certificate: String, restricted: Bool = false) {
        self.fingerprint = fingerprint
        self.name = name
        self.type = type
        self.certificate = certificate
        self.restricted = restricted
    }
}

/// A pending trust token (`trust_tokens` table); the secret itself is never stored.
public struct PendingTrustToken: Sendable, Equatable {
    public var name: String
    public var secretSHA256: String
    public var expiresAt: Date?

    public init(name: String, secretSHA256: String, expiresAt: Date?) {
        self.name = name
        self.secretSHA256 = secretSHA256
        self.expiresAt = expiresAt
    }
}

/// Why a token was not accepted. Callers answer all of them with the same 403 so a guesser
/// learns nothing; the cases are for logs and tests.
public enum TrustTokenRejection: Error, Sendable, Equatable {
    case unknown
    case expired(name: String)
}

extension Transaction {
    public func trustedCertificates() throws -> [TrustedCertificate] {
        try query("SELECT fingerprint, name, type, certificate, restricted FROM certificates ORDER BY name, fingerprint").rows.map(trustedCertificate)
    }

    public func trustedCertificate(fingerprint: String) throws -> TrustedCertificate? {
        try query("SELECT fingerprint, name, type, certificate, restricted FROM certificates WHERE fingerprint = ?", .text(fingerprint))
            .rows.first.map(trustedCertificate)
    }

    /// The one certificate whose fingerprint starts with `prefix`.
    public func trustedCertificate(prefix: String) throws -> TrustedCertificate {
        let escaped = prefix.lowercased().replacingOccurrences(of: "%", with: "").replacingOccurrences(of: "_", with: "")
        let rows = try query("SELECT fingerprint, name, type, certificate, restricted FROM certificates WHERE fingerprint LIKE ? LIMIT 2",
                             .text(escaped + "%")).rows
        guard !rows.isEmpty else { throw ClusterDBError.notFound("certificate \(prefix)") }
        guard rows.count == 1 else { throw ClusterDBError.ambiguous("certificate fingerprint prefix \(prefix)") }
        return try trustedCertificate(rows[0])
    }

    public func addTrustedCertificate(_ c: TrustedCertificate) throws {
        do {
            try exec("INSERT INTO certificates (fingerprint, name, type, certificate, restricted) VALUES (?, ?, ?, ?, ?)",
                     .text(c.fingerprint), .text(c.name), .text(c.type.rawValue), .text(c.certificate), .integer(c.restricted ? 1 : 0))
        } catch let error as DqliteError {
            throw error.mappingUnique("certificate \(c.fingerprint)")
        }
    }

    public func deleteTrustedCertificate(fingerprint: String) throws {
        let result = try exec("DELETE FROM certificates WHERE fingerprint = ?", .text(fingerprint))
        if result.rowsAffected == 0 { throw ClusterDBError.notFound("certificate \(fingerprint)") }
    }

    public func addTrustToken(_ token: PendingTrustToken) throws {
        do {
            try exec("INSERT INTO trust_tokens (name, secret_sha256, expires_at) VALUES (?, ?, ?)",
                     .text(token.name), .text(token.secretSHA256), token.expiresAt.map { .integer(Timestamp.nanoseconds($0)) } ?? .null)
        } catch let error as DqliteError {
            throw error.mappingUnique("trust token")
        }
    }

    public func trustTokens() throws -> [PendingTrustToken] {
        try query("SELECT name, secret_sha256, expires_at FROM trust_tokens ORDER BY name").rows.map { values in
            let r = Row(values: values, table: "trust_tokens")
            return PendingTrustToken(name: try r.text(0, "name"), secretSHA256: try r.text(1, "secret_sha256"), expiresAt: try r.optionalDate(2, "expires_at"))
        }
    }

    /// Removes the token with this secret digest and returns it, whether or not it has expired:
    /// a token is single-use, and an expired one is garbage either way. The caller throws
    /// `TrustTokenRejection.expired` (rolling this back is harmless) or proceeds.
    public func takeTrustToken(secretSHA256: String, now: Date) throws -> PendingTrustToken {
        let rows = try query("SELECT name, expires_at FROM trust_tokens WHERE secret_sha256 = ?", .text(secretSHA256)).rows
        guard let values = rows.first else { throw TrustTokenRejection.unknown }
        let r = Row(values: values, table: "trust_tokens")
        let token = PendingTrustToken(name: try r.text(0, "name"), secretSHA256: secretSHA256, expiresAt: try r.optionalDate(1, "expires_at"))
        try exec("DELETE FROM trust_tokens WHERE secret_sha256 = ?", .text(secretSHA256))
        if let expiry = token.expiresAt, expiry <= now { throw TrustTokenRejection.expired(name: token.name) }
        return token
    }

    public func deleteTrustTokens(named name: String) throws {
        try exec("DELETE FROM trust_tokens WHERE name = ?", .text(name))
    }

    private func trustedCertificate(_ values: [DqliteValue]) throws -> TrustedCertificate {
        let r = Row(values: values, table: "certificates")
        let typeText = try r.text(2, "type")
        guard let type = TrustedCertificate.Kind(rawValue: typeText) else { throw ClusterDBError.corrupt("certificates.type is \(typeText)") }
        return TrustedCertificate(fingerprint: try r.text(0, "fingerprint"), name: try r.text(1, "name"), type: type,
                                  certificate: try r.text(3, "certificate"), restricted: try r.int(4, "restricted") != 0)
    }
}
