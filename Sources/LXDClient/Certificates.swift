import APITypes
import Identity
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// `/1.0/certificates`: the server's trust store.
extension LXDClient {
    public func certificates() async throws -> [CertificateInfo] {
        try await get([CertificateInfo].self, "/1.0/certificates", query: [QueryItem("recursion", "1")])
    }

    /// Adds `certificate` (PEM or base64 DER) as trusted; needs a trusted caller.
    public func addCertificate(_ certificate: String, name: String, type: String = "client") async throws {
        try await send(.POST, "/1.0/certificates", json: CertificatesPost(name: name, type: type, certificate: certificate))
    }

    /// Adds the certificate this connection presents, paid for with a trust token's secret.
    public func addPresentedCertificate(name: String, trustToken: String) async throws {
        try await send(.POST, "/1.0/certificates", json: CertificatesPost(name: name, type: "client", trustToken: trustToken))
    }

    public func deleteCertificate(_ fingerprint: String) async throws {
        try Envelope.checkSync(try await transport.send(HTTPRequest(.DELETE, "/1.0/certificates/\(fingerprint)")))
    }

    /// Asks the server for a trust token for a client named `name`.
    public func createTrustToken(name: String, expiresAt: Date?) async throws -> String {
        let body = CertificatesPost(name: name, type: "client", token: true, expiresAt: expiresAt.map { $0.formatted(.iso8601) })
        let response = try await transport.send(HTTPRequest(.POST, "/1.0/certificates", body: try Self.encode(body)))
        return try Envelope.decodeSync(CertificateToken.self, from: response).token
    }
}
