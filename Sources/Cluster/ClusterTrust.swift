import APITypes
import ClusterDB
import Foundation
import Identity
import Logging

/// The trust store's use cases, as ClusterDB transactions (the store is cluster-wide): which
/// client certificates may use the remote API, and single-use tokens that let a new client add
/// its own certificate. Gateway's certificate routes and HTTPS authentication reach it through
/// their `TrustService` port, which the agent conforms this to.
public struct ClusterTrust: Sendable {
    let db: ClusterDB
    /// What a token tells the client about this server.
    public let serverFingerprint: String
    public let serverAddresses: @Sendable () -> [String]
    let logger: Logger

    public init(db: ClusterDB, serverFingerprint: String, serverAddresses: @escaping @Sendable () -> [String], logger: Logger) {
        self.db = db
        self.serverFingerprint = serverFingerprint
        self.serverAddresses = serverAddresses
        self.logger = logger
    }

    /// Looked up on every HTTPS request: a removed certificate loses access at once.
    /// Throws `ClusterUseCaseError.unavailable` when the database cannot answer (no quorum, no leader): a
    /// trusted client must then hear "try later", not "not authorized".
    public func isTrusted(fingerprint: String) async throws -> Bool {
        do {
            return try await db.transaction { tx in try tx.trustedCertificate(fingerprint: fingerprint) } != nil
        } catch {
            logger.warning("trust lookup failed", metadata: ["error": "\(error)"])
            throw ClusterUseCaseError.unavailable("This member cannot check client certificates: the cluster database is unavailable (\(error)); retry, or see lxdctl cluster list on another member")
        }
    }

    public func list() async throws -> [CertificateInfo] {
        try await db.transaction { tx in try tx.trustedCertificates() }.map(Self.record)
    }

    public func get(_ fingerprintOrPrefix: String) async throws -> CertificateInfo {
        try await Self.mapLookup(fingerprintOrPrefix) {
            Self.record(try await db.transaction { tx in try tx.trustedCertificate(prefix: fingerprintOrPrefix) })
        }
    }

    public func delete(_ fingerprintOrPrefix: String) async throws {
        try await Self.mapLookup(fingerprintOrPrefix) {
            try await db.transaction { tx in
                let c = try tx.trustedCertificate(prefix: fingerprintOrPrefix)
                // Without it the member's links and heartbeats would be refused by the others.
                guard c.type == .client else {
                    throw ClusterUseCaseError.invalid("Certificate \(c.fingerprint.prefix(12)) is member \(c.name)'s: it goes when the member is removed (lxdctl cluster remove \(c.name))")
                }
                try tx.deleteTrustedCertificate(fingerprint: c.fingerprint)
            }
        }
    }

    private static func mapLookup<T>(_ prefix: String, _ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch ClusterDBError.notFound {
            throw ClusterUseCaseError.notFound("Certificate \(prefix) not found: see lxdctl config trust list")
        } catch ClusterDBError.ambiguous {
            throw ClusterUseCaseError.invalid("Certificate prefix \(prefix) matches more than one certificate: give more digits")
        }
    }

    /// Adds a certificate given by a trusted caller (PEM or base64 DER). Only clients: a member's
    /// `server` certificate is what members are recognised by (the database links, heartbeats),
    /// so it comes from joining the cluster and nowhere else.
    public func add(certificate text: String, name: String?, type: String?) async throws -> String {
        guard type.map({ $0 == TrustedCertificate.Kind.client.rawValue }) ?? true else {
            throw ClusterUseCaseError.invalid("Only certificates of type client can be added: a member's server certificate is added when it joins (lxdctl cluster add, then join)")
        }
        let der: [UInt8]
        do {
            der = try CertificateText.der(from: text)
        } catch {
            throw ClusterUseCaseError.invalid("Invalid certificate: \(error)")
        }
        return try await insert(der: der, name: name, type: type, consumingSecret: nil)
    }

    /// Adds the certificate a client presented, paid for with a token's secret (or the whole token).
    /// Every refusal is the same 403: a guesser must not learn whether a secret existed.
    public func add(presented der: [UInt8], trustToken: String, name: String?) async throws -> String {
        let secret = (try? TrustToken.decode(trustToken))?.secret ?? trustToken
        return try await insert(der: der, name: name, type: "client", consumingSecret: secret)
    }

    /// Creates a token for a client named `name`.
    public func createToken(name: String, expiresAt: Date?) async throws -> TrustToken {
        guard !name.isEmpty else { throw ClusterUseCaseError.invalid("A token needs a client name") }
        let token = TrustToken(clientName: name, fingerprint: serverFingerprint, addresses: serverAddresses(),
                               secret: TrustToken.newSecret(), expiresAt: expiresAt)
        try await db.transaction { tx in
            try tx.addTrustToken(PendingTrustToken(name: name, secretSHA256: TrustToken.secretDigest(token.secret), expiresAt: expiresAt))
        }
        return token
    }

    private func insert(der: [UInt8], name: String?, type: String?, consumingSecret secret: String?) async throws -> String {
        let kind = try TrustedCertificate.Kind(rawValue: type ?? "client") ?? { throw ClusterUseCaseError.invalid("Unknown certificate type \"\(type ?? "")\": use client or server") }()
        let fingerprint = Fingerprint.sha256(der: der)
        let pem = CertificateText.pem(der: der)
        let now = Date()
        do {
            return try await db.transaction { tx in
                var finalName = name ?? ""
                if let secret {
                    let token = try tx.takeTrustToken(secretSHA256: TrustToken.secretDigest(secret), now: now)
                    if finalName.isEmpty { finalName = token.name }
                }
                if finalName.isEmpty { finalName = String(fingerprint.prefix(12)) }
                try tx.addTrustedCertificate(TrustedCertificate(fingerprint: fingerprint, name: finalName, type: kind, certificate: pem))
                return fingerprint
            }
        } catch let rejection as TrustTokenRejection {
            logger.notice("trust token refused", metadata: ["reason": "\(rejection)", "fingerprint": "\(fingerprint)"])
            throw ClusterUseCaseError.forbidden("not authorized")
        } catch ClusterDBError.alreadyExists {
            throw ClusterUseCaseError.conflict("Certificate \(fingerprint) is already trusted")
        }
    }

    static func record(_ c: TrustedCertificate) -> CertificateInfo {
        let base64 = (try? CertificateText.der(from: c.certificate)).map { Data($0).base64EncodedString() } ?? c.certificate
        return CertificateInfo(name: c.name, type: c.type.rawValue, restricted: c.restricted, certificate: base64, fingerprint: c.fingerprint)
    }
}
