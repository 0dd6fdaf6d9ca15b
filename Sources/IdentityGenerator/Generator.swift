import Crypto
import Foundation
import Identity
import SwiftASN1
import X509

/// Makes new self-signed ECDSA P-256 identities (swift-certificates + swift-crypto).
/// Kept apart from `Identity` because swift-crypto links full Foundation on Linux, which lxdctl
/// must not load; lxdctl runs `lxd-keygen` once instead.
public enum IdentityGenerator {
    /// Creates a new self-signed identity.
    ///
    /// - notBefore is `now - backdate` (1 day by default): peers with a slightly slow clock must
    ///   not reject a certificate made seconds ago (DESIGN.md, "Time").
    /// - KeyUsage has keyCertSign and BasicConstraints CA: BoringSSL refuses a pinned self-signed
    ///   certificate without them (NOTES-runtime.md item 7).
    public static func generate(
        commonName: String,
        dnsNames: [String] = [],
        ipAddresses: [String] = [],
        now: Date = Date(),
        backdate: TimeInterval = 86_400,
        validity: TimeInterval = 10 * 365 * 86_400
    ) throws -> TLSIdentity {
        let key = P256.Signing.PrivateKey()
        var sans: [GeneralName] = dnsNames.map { .dnsName($0) }
        for ip in ipAddresses {
            guard let bytes = IPAddressBytes.parse(ip) else { throw IdentityError.invalidIPAddress(ip) }
            sans.append(.ipAddress(ASN1OctetString(contentBytes: ArraySlice(bytes))))
        }
        do {
            let name = try DistinguishedName {
                OrganizationName("lxd-swift")
                CommonName(commonName)
            }
            let extensions = try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
                Critical(KeyUsage(digitalSignature: true, keyCertSign: true))
                try ExtendedKeyUsage([.serverAuth, .clientAuth])
                if !sans.isEmpty {
                    SubjectAlternativeNames(sans)
                }
            }
            let certificate = try Certificate(
                version: .v3,
                serialNumber: Certificate.SerialNumber(),
                publicKey: .init(key.publicKey),
                notValidBefore: now - backdate,
                notValidAfter: now + validity,
                issuer: name,
                subject: name,
                signatureAlgorithm: .ecdsaWithSHA256,
                extensions: extensions,
                issuerPrivateKey: .init(key))
            return try TLSIdentity(certificatePEM: try certificate.serializeAsPEM().pemString, privateKeyPEM: key.pemRepresentation)
        } catch let error as IdentityError {
            throw error
        } catch {
            throw IdentityError.generator("\(error)")
        }
    }

    /// `TLSIdentity.loadOrCreate` with a generated identity.
    public static func loadOrCreate(
        certPath: String, keyPath: String, commonName: String, dnsNames: [String] = [], ipAddresses: [String] = []
    ) throws -> TLSIdentity {
        try TLSIdentity.loadOrCreate(certPath: certPath, keyPath: keyPath) {
            try generate(commonName: commonName, dnsNames: dnsNames, ipAddresses: ipAddresses)
        }
    }
}
