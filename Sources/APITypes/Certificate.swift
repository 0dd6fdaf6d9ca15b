/// A trusted certificate as `GET /1.0/certificates` shows it (LXD `api.Certificate`).
public struct CertificateInfo: Codable, Sendable, Equatable {
    public var name: String
    /// "client" or "server" (a member's).
    public var type: String
    public var restricted: Bool
    public var projects: [String]
    /// Base64 DER.
    public var certificate: String
    public var fingerprint: String

    public init(name: String, type: String, restricted: Bool, certificate: String, fingerprint: String, projects: [String] = []) {
        self.name = name
        self.type = type
        self.restricted = restricted
        self.projects = projects
        self.certificate = certificate
        self.fingerprint = fingerprint
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        type = try c.decode(String.self, forKey: .type)
        restricted = try c.decodeIfPresent(Bool.self, forKey: .restricted) ?? false
        // LXD sends null for an unrestricted certificate's projects.
        projects = try c.decodeIfPresent([String].self, forKey: .projects) ?? []
        certificate = try c.decode(String.self, forKey: .certificate)
        fingerprint = try c.decode(String.self, forKey: .fingerprint)
    }

    enum CodingKeys: String, CodingKey {
        case name, type, restricted, projects, certificate, fingerprint
    }
}

/// `POST /1.0/certificates` (LXD `api.CertificatesPost`), plus this server's `expires_at`.
public struct CertificatesPost: Codable, Sendable, Equatable {
    public var name: String?
    public var type: String?
    public var restricted: Bool?
    /// base64 DER or PEM; absent when the presented TLS client certificate is meant.
    public var certificate: String?
    /// Legacy password field (LXD); refused.
    public var password: String?
    /// Ask for a trust token instead of adding a certificate (`lxc config trust add`).
    public var token: Bool?
    /// A token's secret or the whole token; authorizes adding the presented certificate.
    public var trustToken: String?
    /// With `token`: when the token expires (RFC 3339). Checked by the server, which refuses a bad one.
    public var expiresAt: String?

    enum CodingKeys: String, CodingKey {
        case name, type, restricted, certificate, password, token
        case trustToken = "trust_token"
        case expiresAt = "expires_at"
    }

    public init(name: String? = nil, type: String? = nil, certificate: String? = nil, token: Bool? = nil, trustToken: String? = nil,
                expiresAt: String? = nil) {
        self.name = name
        self.type = type
        self.certificate = certificate
        self.token = token
        self.trustToken = trustToken
        self.expiresAt = expiresAt
    }
}

/// The answer to `POST /1.0/certificates` with `token: true`: the trust token as `lxdctl config
/// trust add` prints it, and what it tells the client about this server.
public struct CertificateToken: Codable, Sendable, Equatable {
    /// The whole token (base64 JSON), what `lxdctl remote add --token` reads.
    public var token: String
    public var fingerprint: String
    public var addresses: [String]
    public var clientName: String
    /// RFC 3339; nil when the token does not expire.
    public var expiresAt: String?

    enum CodingKeys: String, CodingKey {
        case token, fingerprint, addresses
        case clientName = "client_name"
        case expiresAt = "expires_at"
    }

    public init(token: String, fingerprint: String, addresses: [String], clientName: String, expiresAt: String?) {
        self.token = token
        self.fingerprint = fingerprint
        self.addresses = addresses
        self.clientName = clientName
        self.expiresAt = expiresAt
    }
}
