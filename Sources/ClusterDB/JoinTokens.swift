import Dqlite
import Foundation

/// A pending cluster join token (`join_tokens`); only the secret's SHA-256 is stored.
public struct PendingJoinToken: Sendable, Equatable {
    public var name: String
    public var secretSHA256: String
    public var expiresAt: Date

    public init(name: String, secretSHA256: String, expiresAt: Date) {
        self.name = name
        self.secretSHA256 = secretSHA256
        self.expiresAt = expiresAt
    }
}

/// Why a join token was not accepted. The API answers all of them with one 403; the cases are
/// for logs and tests.
public enum JoinTokenRejection: Error, Sendable, Equatable {
    case unknown
    case expired(name: String)
    case wrongName(tokenFor: String, joining: String)
}

/// A member and the fingerprint of its server certificate (trusted as type `server` under the member's name).
public struct MemberPeer: Sendable, Equatable, Codable {
    public var id: Int64
    public var name: String
    public var address: String
    public var fingerprint: String

    public init(id: Int64, name: String, address: String, fingerprint: String) {
        self.id = id
        self.name = name
        self.address = address
        self.fingerprint = fingerprint
    }
}

extension Transaction {
    public func addJoinToken(_ token: PendingJoinToken) throws {
        do {
            try exec("INSERT INTO join_tokens (name, secret_sha256, expires_at) VALUES (?, ?, ?)",
                     .text(token.name), .text(token.secretSHA256), .integer(Timestamp.nanoseconds(token.expiresAt)))
        } catch let error as DqliteError {
            throw error.mappingUnique("join token")
        }
    }

    public func joinTokens() throws -> [PendingJoinToken] {
        try query("SELECT name, secret_sha256, expires_at FROM join_tokens ORDER BY id").rows.map { values in
            let r = Row(values: values, table: "join_tokens")
            return PendingJoinToken(name: try r.text(0, "name"), secretSHA256: try r.text(1, "secret_sha256"), expiresAt: try r.date(2, "expires_at"))
        }
    }

    /// Deletes the token with this secret digest and checks it admits `name` at `now`. The
    /// delete happens first, so a token is spent by any attempt that names its secret; the
    /// caller's transaction decides whether the deletion sticks (a rejection rolls it back,
    /// and the caller may re-run just the deletion to burn a misused token).
    public func takeJoinToken(secretSHA256: String, name: String, now: Date) throws -> PendingJoinToken {
        let rows = try query("SELECT name, expires_at FROM join_tokens WHERE secret_sha256 = ?", .text(secretSHA256)).rows
        guard let values = rows.first else { throw JoinTokenRejection.unknown }
        let r = Row(values: values, table: "join_tokens")
        let token = PendingJoinToken(name: try r.text(0, "name"), secretSHA256: secretSHA256, expiresAt: try r.date(1, "expires_at"))
        try exec("DELETE FROM join_tokens WHERE secret_sha256 = ?", .text(secretSHA256))
        if token.expiresAt <= now { throw JoinTokenRejection.expired(name: token.name) }
        if token.name != name { throw JoinTokenRejection.wrongName(tokenFor: token.name, joining: name) }
        return token
    }

    /// Inserts a new member; `alreadyExists` when its name or address is taken.
    public func insertMember(name: String, address: String) throws -> Int64 {
        do {
            return try exec("INSERT INTO members (name, address) VALUES (?, ?)", .text(name), .text(address)).lastInsertID
        } catch let error as DqliteError {
            throw error.mappingUnique("a member named \(name) or with address \(address)")
        }
    }

    /// Every member with the fingerprint of its trusted server certificate ("" when none is trusted yet).
    public func memberPeers() throws -> [MemberPeer] {
        try query("""
            SELECT m.id, m.name, m.address, COALESCE(c.fingerprint, '')
            FROM members m LEFT JOIN certificates c ON c.name = m.name AND c.type = 'server'
            ORDER BY m.id
            """).rows.map { values in
            let r = Row(values: values, table: "members")
            return MemberPeer(id: try r.int(0, "id"), name: try r.text(1, "name"), address: try r.text(2, "address"), fingerprint: try r.text(3, "fingerprint"))
        }
    }
}
