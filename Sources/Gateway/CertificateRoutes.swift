import APITypes
import Foundation
import Hummingbird
import Identity
import NIOCore
import NIOSSL

/// HTTPS authorization: the client certificate's fingerprint must be in the trust store.
/// Untrusted callers may only learn who the server is (`GET /1.0`) and present a trust token
/// (`POST /1.0/certificates`); everything else is LXD's 403.
struct RemoteAuthMiddleware: RouterMiddleware {
    typealias Context = APIContext
    let trust: TrustService
    let cluster: (any ClusterService)?

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        // The handshake is over once a request arrives, so the peer certificate is final.
        let certificate = try? await context.channel.nioSSL_peerCertificate().get()
        let der = certificate.flatMap { try? $0.toDERBytes() }
        if Self.isMembersOnly(request.uri.path) {
            // Database peer links are checked against the members' certificates held in memory:
            // a trust lookup would need the database, which may need this very link.
            guard let der, let cluster, await cluster.isMember(fingerprint: Fingerprint.sha256(der: der)) else {
                return Reply.error(.forbidden("not authorized"))
            }
            context.caller = .trusted(fingerprint: Fingerprint.sha256(der: der))
            return try await next(request, context)
        }
        let trusted: Bool
        do {
            if let der { trusted = try await trust.isTrusted(fingerprint: Fingerprint.sha256(der: der)) } else { trusted = false }
        } catch {
            return Reply.error(Reply.apiError(from: error))
        }
        if trusted, let der {
            context.caller = .trusted(fingerprint: Fingerprint.sha256(der: der))
        } else {
            context.caller = .untrusted(certificateDER: der)
            guard Self.openToUntrusted(request) else { return Reply.error(.forbidden("not authorized")) }
        }
        return try await next(request, context)
    }

    /// Paths for members only, checked against the member list held in memory.
    static let membersOnly: Set<String> = ["/internal/database", "/internal/cluster/heartbeat"]

    /// Image export serves whole layers to members fetching them; clients import, not export.
    static func isMembersOnly(_ path: String) -> Bool {
        if membersOnly.contains(path) { return true }
        let segments = path.split(separator: "/")
        return segments.count == 4 && segments[0] == "1.0" && segments[1] == "images" && segments[2] != "aliases" && segments[3] == "export"
    }

    static func openToUntrusted(_ request: Request) -> Bool {
        var path = request.uri.path
        while path.count > 1 && path.hasSuffix("/") { path.removeLast() }
        switch (request.method, path) {
        case (.get, "/"), (.get, "/1.0"), (.post, "/1.0/certificates"), (.post, "/internal/cluster/accept"): return true
        default: return false
        }
    }
}

/// `lxdctl config trust add` asks for a token with this body extension.
struct CertificateTokenReply: Codable, Sendable {
    var token: String
    var fingerprint: String
    var addresses: [String]
    var clientName: String
    var expiresAt: String?

    enum CodingKeys: String, CodingKey {
        case token, fingerprint, addresses
        case clientName = "client_name"
        case expiresAt = "expires_at"
    }
}

/// The body of `POST /1.0/certificates`, plus our token expiry (RFC 3339, optional).
struct CertificatesPostBody: Decodable {
    var post: CertificatesPost
    var expiresAt: Date?

    enum Keys: String, CodingKey { case expiresAt = "expires_at" }

    init(from decoder: any Decoder) throws {
        post = try CertificatesPost(from: decoder)
        let c = try decoder.container(keyedBy: Keys.self)
        if let text = try c.decodeIfPresent(String.self, forKey: .expiresAt), !text.isEmpty {
            guard let date = ISO8601DateFormatter().date(from: text) else {
                throw APIError.badRequest("Invalid expires_at \"\(text)\": use RFC 3339, e.g. 2030-01-01T00:00:00Z")
            }
            expiresAt = date
        }
    }
}

extension APIRoutes {
    func addCertificateRoutes(_ router: Router<Context>, _ trust: TrustService) {
        let r = self
        router.get("/1.0/certificates") { req, _ in
            try await handle {
                let recursion = req.uri.queryParameters.get("recursion").flatMap(Int.init) ?? 0
                let list = try await trust.list()
                if recursion == 0 { return Reply.sync(list.map { "/1.0/certificates/\($0.fingerprint)" }) }
                return Reply.sync(list)
            }
        }
        router.get("/1.0/certificates/:fingerprint") { _, ctx in
            try await handle { Reply.sync(try await trust.get(ctx.parameters.get("fingerprint") ?? "")) }
        }
        router.delete("/1.0/certificates/:fingerprint") { _, ctx in
            try await handle {
                try await trust.delete(ctx.parameters.get("fingerprint") ?? "")
                return Reply.empty()
            }
        }
        router.post("/1.0/certificates") { req, ctx in
            try await handle {
                let body: CertificatesPostBody = try await r.decode(req, ctx)
                let post = body.post
                if post.password != nil { throw APIError.badRequest("Trust passwords are not supported: use a trust token") }
                switch ctx.caller {
                case .untrusted(let presented):
                    // Only a token can make an untrusted client trusted, and only for the certificate it presented.
                    guard let presented, let secret = post.trustToken, !secret.isEmpty else { throw APIError.forbidden("not authorized") }
                    if let claimed = post.certificate, (try? CertificateText.der(from: claimed)) != presented {
                        throw APIError.forbidden("not authorized")
                    }
                    _ = try await trust.add(presented: presented, trustToken: secret, name: post.name)
                    return Reply.empty()
                case .local, .trusted:
                    if post.token == true {
                        let token = try await trust.createToken(name: post.name ?? "", expiresAt: body.expiresAt)
                        return Reply.sync(CertificateTokenReply(
                            token: token.encoded(), fingerprint: token.fingerprint, addresses: token.addresses,
                            clientName: token.clientName, expiresAt: token.expiresAt.map { ISO8601DateFormatter().string(from: $0) }))
                    }
                    guard let certificate = post.certificate else {
                        throw APIError.badRequest("Missing certificate: pass a PEM or base64 DER certificate, or token: true")
                    }
                    _ = try await trust.add(certificate: certificate, name: post.name, type: post.type)
                    return Reply.empty()
                }
            }
        }
    }
}
