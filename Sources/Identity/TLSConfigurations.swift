import NIOCore
import NIOSSL

/// NIOSSL configurations for fingerprint-pinned mutual TLS.
public enum TLSConfigurations {
    /// The server side: presents `identity` and asks every client for a certificate but accepts
    /// any (or none) at the TLS layer; the API decides per request from the fingerprint, so an
    /// untrusted client gets an LXD-shaped 403 instead of a handshake failure.
    /// Pair it with `acceptAnyCertificate` as the handler's custom verification callback.
    public static func server(_ identity: TLSIdentity) throws -> TLSConfiguration {
        var config = TLSConfiguration.makeServerConfiguration(
            certificateChain: [.certificate(try identity.nioCertificate())],
            privateKey: .privateKey(try identity.nioPrivateKey()))
        config.minimumTLSVersion = .tlsv12
        config.maximumTLSVersion = .tlsv13
        // Requested, validated by the callback (which accepts all), not required.
        config.certificateVerification = .optionalVerification
        return config
    }

    /// Accepts whatever certificate the peer presented; authorization happens above TLS.
    public static let acceptAnyCertificate: @Sendable ([NIOSSLCertificate], EventLoopPromise<NIOSSLVerificationResult>) -> Void = { _, promise in
        promise.succeed(.certificateVerified)
    }

    /// The client side: presents `identity`; the server is checked by `pinnedServerVerifier` only.
    public static func client(_ identity: TLSIdentity) throws -> TLSConfiguration {
        var config = TLSConfiguration.makeClientConfiguration()
        config.certificateChain = [.certificate(try identity.nioCertificate())]
        config.privateKey = .privateKey(try identity.nioPrivateKey())
        config.minimumTLSVersion = .tlsv12
        config.maximumTLSVersion = .tlsv13
        // Required, but the custom callback replaces chain and hostname checks.
        config.certificateVerification = .noHostnameVerification
        return config
    }

    /// Verifies the server by its leaf certificate's SHA-256 fingerprint: no CA, no host name.
    public static func pinnedServerVerifier(fingerprint: String) -> @Sendable ([NIOSSLCertificate], EventLoopPromise<NIOSSLVerificationResult>) -> Void {
        pinnedServerVerifier(fingerprints: [fingerprint])
    }

    /// Accepts a server whose leaf certificate is any of `fingerprints` (the members of one
    /// cluster each have their own certificate).
    public static func pinnedServerVerifier(fingerprints: Set<String>) -> @Sendable ([NIOSSLCertificate], EventLoopPromise<NIOSSLVerificationResult>) -> Void {
        let expected = Set(fingerprints.map { $0.lowercased() })
        return { certificates, promise in
            let actual = certificates.first.flatMap(PinCheck.fingerprint(of:))
            promise.succeed(actual.map(expected.contains) == true ? .certificateVerified : .failed)
        }
    }
}

/// Fingerprint of NIOSSL certificates.
public enum PinCheck {
    public static func fingerprint(of certificate: NIOSSLCertificate) -> String? {
        guard let der = try? certificate.toDERBytes() else { return nil }
        return Fingerprint.sha256(der: der)
    }

    static func matches(_ leaf: NIOSSLCertificate?, expected: String) -> Bool {
        guard let leaf, let actual = fingerprint(of: leaf) else { return false }
        return actual == expected
    }
}
