import APITypes
import Foundation
import Identity

/// Trust use cases the certificate routes and the HTTPS authentication call; Cluster implements
/// them over the cluster-wide trust store (`ClusterTrust`).
public protocol TrustService: Sendable {
    /// Looked up on every HTTPS request: a removed certificate loses access at once. Throws an
    /// error of kind `unavailable` when the store cannot answer (a trusted client must then hear
    /// "try later", not "not authorized").
    func isTrusted(fingerprint: String) async throws -> Bool
    func list() async throws -> [CertificateInfo]
    /// One certificate by fingerprint or unique prefix.
    func get(_ fingerprintOrPrefix: String) async throws -> CertificateInfo
    /// Removes a client certificate by fingerprint or unique prefix (members' own ones are refused).
    func delete(_ fingerprintOrPrefix: String) async throws
    /// Adds a client certificate given by a trusted caller (PEM or base64 DER); returns its fingerprint.
    func add(certificate text: String, name: String?, type: String?) async throws -> String
    /// Adds the certificate a client presented, paid for with a trust token (or its secret).
    func add(presented der: [UInt8], trustToken: String, name: String?) async throws -> String
    /// Creates a token for a client named `name`.
    func createToken(name: String, expiresAt: Date?) async throws -> TrustToken
}
