import APITypes
import Foundation
import Hummingbird
import Identity
import NIOCore
import NIOSSL

/// The body of `POST /1.0/certificates`, with its token expiry (RFC 3339, optional) checked and parsed.
struct CertificatesPostBody: Decodable {
    var post: CertificatesPost
    var expiresAt: Date?

    init(from decoder: any Decoder) throws {
        post = try CertificatesPost(from: decoder)
        if let text = post.expiresAt, !text.isEmpty {
            guard let date = ISO8601DateFormatter().date(from: text) else {
                throw APIError.badRequest("Invalid expires_at \"\(text)\": use RFC 3339, e.g. 2030-01-01T00:00:00Z")
            }
            // Stored as Int64 nanoseconds, which end in 2262; a token has no use past a century.
            guard date.timeIntervalSince1970 >= 0, date < Date().addingTimeInterval(100 * 365 * 86_400) else {
                throw APIError.badRequest("Invalid expires_at \"\(text)\": give a time before 100 years from now")
            }
            expiresAt = date
        }
    }
}

extension APIRoutes {
    func addCertificateRoutes(_ router: Router<Context>, _ trust: any TrustService) {
        let r = self
        router.get("/1.0/certificates") { req, _ in
            let recursion = try req.recursion()
            let list = try await trust.list()
            if recursion == 0 { return Reply.sync(list.map { "/1.0/certificates/\($0.fingerprint)" }) }
            return Reply.sync(list)
        }
        router.get("/1.0/certificates/:fingerprint") { _, ctx in
            Reply.sync(try await trust.get(ctx.parameters.get("fingerprint") ?? ""))
        }
        router.delete("/1.0/certificates/:fingerprint") { _, ctx in
            try await trust.delete(ctx.parameters.get("fingerprint") ?? "")
            return Reply.empty()
        }
        router.post("/1.0/certificates") { req, ctx in
            let body: CertificatesPostBody = try await r.decode(req)
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
                    return Reply.sync(CertificateToken(
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
