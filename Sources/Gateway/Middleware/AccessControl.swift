import APITypes
import Identity
import NIOCore
import NIOSSL

/// Who the caller is and whether it may reach an endpoint: the one place authorization is decided.
///
/// The unix socket is root's (mode 0660) and may call everything. Over HTTPS the client
/// certificate decides: `member` endpoints check it against the member list held in memory (the
/// database itself may travel over the link being authorized), `client` endpoints against the
/// trust store, and `anyone` endpoints only learn whether the caller is trusted.
struct AccessControl: Sendable {
    /// Whether a certificate fingerprint is in the trust store; nil trusts no client (the
    /// database-links listener, which serves members only).
    let isTrusted: (@Sendable (String) async throws -> Bool)?
    /// Whether a certificate fingerprint is a cluster member's, from memory.
    let isMember: @Sendable (String) async -> Bool
    /// The DER of the certificate the caller presented, nil for none.
    var peerCertificate: PeerCertificate = tlsPeerCertificate

    typealias PeerCertificate = @Sendable (any Channel) async -> [UInt8]?

    /// The client certificate of a TLS connection. The handshake is over once a request
    /// arrives, so it is final.
    static let tlsPeerCertificate: PeerCertificate = { channel in
        let certificate = try? await channel.nioSSL_peerCertificate().get()
        return certificate.flatMap { try? $0.toDERBytes() }
    }

    /// Sets `context.caller` and returns normally when it may call `access`; throws LXD's 403 otherwise.
    func admit(_ access: Access, context: inout APIContext) async throws {
        if case .local = context.caller { return }
        let der = await peerCertificate(context.channel)
        let fingerprint = der.map { Fingerprint.sha256(der: $0) }
        context.caller = .untrusted(certificateDER: der)
        switch access {
        case .local:
            throw APIError.forbidden("This is only allowed through the member's unix socket")
        case .member:
            guard let fingerprint, await isMember(fingerprint) else { throw Self.refusal }
            context.caller = .trusted(fingerprint: fingerprint)
        case .client, .anyone:
            if let fingerprint, let isTrusted, try await isTrusted(fingerprint) {
                context.caller = .trusted(fingerprint: fingerprint)
            } else if access == .client {
                throw Self.refusal
            }
        }
    }

    /// LXD's answer to a caller that may not do this.
    static let refusal = APIError.forbidden("not authorized")
}
