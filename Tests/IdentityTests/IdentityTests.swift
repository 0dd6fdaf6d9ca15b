import Crypto
import Foundation
import Identity
import IdentityGenerator
import NIOSSL
import SwiftASN1
import Testing
import X509

@Suite struct IdentityTests {
    @Test func generatedCertificateHasTheExtensionsPeersNeed() throws {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let id = try IdentityGenerator.generate(commonName: "m1", dnsNames: ["m1.local"], ipAddresses: ["127.0.0.2", "::1"], now: now)
        let cert = try Certificate(derEncoded: id.certificateDER)
        #expect(cert.notValidBefore == now - 86_400, "backdated one day")
        #expect(cert.notValidAfter > now + 365 * 86_400)
        #expect(cert.issuer == cert.subject, "self-signed")
        #expect(cert.publicKey.isValidSignature(cert.signature, for: cert), "signed by its own key")

        let ku = try #require(try cert.extensions.keyUsage)
        #expect(ku.digitalSignature && ku.keyCertSign, "keyCertSign is required by BoringSSL for pinned self-signed certs")
        #expect(try cert.extensions.basicConstraints == .isCertificateAuthority(maxPathLength: nil))
        let eku = try #require(try cert.extensions.extendedKeyUsage)
        #expect(eku.contains(.serverAuth) && eku.contains(.clientAuth))
        let sans = try #require(try cert.extensions.subjectAlternativeNames)
        #expect(sans.contains(.dnsName("m1.local")))
        #expect(sans.contains(.ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 2]))))
        #expect(sans.contains(.ipAddress(ASN1OctetString(contentBytes: ArraySlice([UInt8](repeating: 0, count: 15) + [1])))))
    }

    @Test func invalidIPAddressIsRefused() {
        #expect(throws: IdentityError.invalidIPAddress("node1")) {
            try IdentityGenerator.generate(commonName: "x", ipAddresses: ["node1"])
        }
        #expect(IPAddressBytes.parse("10.0.0.300") == nil)
        #expect(IPAddressBytes.parse("fe80::1")?.count == 16)
    }

    @Test func fingerprintIsSHA256OfDERInHex() throws {
        let id = try IdentityGenerator.generate(commonName: "c")
        let expected = SHA256.hash(data: id.certificateDER).map { String(format: "%02x", $0) }.joined()
        #expect(id.fingerprint == expected)
        #expect(id.fingerprint.count == 64)
        // PEM, base64 DER and NIOSSL's view agree.
        #expect(try Fingerprint.of(certificate: id.certificatePEM) == expected)
        #expect(try Fingerprint.of(certificate: Data(id.certificateDER).base64EncodedString()) == expected)
        #expect(PinCheck.fingerprint(of: try id.nioCertificate()) == expected)
        #expect(Fingerprint.matches(expected, prefix: String(expected.prefix(12)).uppercased()))
        #expect(!Fingerprint.matches(expected, prefix: String(expected.prefix(6))), "too short a prefix is ambiguous")
        #expect(Fingerprint.sha256(der: Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    @Test func plainSwiftSHA256MatchesSwiftCrypto() {
        // Lengths around the padding boundaries (55/56/63/64 bytes) and multi-block inputs.
        var rng = SystemRandomNumberGenerator()
        for length in [0, 1, 3, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 1000, 4097] {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
            #expect(SHA256Digest.hash(bytes) == Array(SHA256.hash(data: bytes)), "length \(length)")
        }
        #expect(Hex.encode([0x00, 0x0f, 0xa0, 0xff]) == "000fa0ff")
    }

    @Test func pemRoundTrip() throws {
        let id = try IdentityGenerator.generate(commonName: "p")
        #expect(try CertificateText.der(from: CertificateText.pem(der: id.certificateDER)) == id.certificateDER)
    }

    @Test func garbageIsNotACertificate() {
        #expect(throws: IdentityError.self) { try Fingerprint.of(certificate: "aGVsbG8=") }
        #expect(throws: IdentityError.self) { try Fingerprint.of(certificate: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----") }
    }

    @Test func saveLoadRoundTripAndKeyMode() throws {
        let dir = NSTemporaryDirectory() + "identity-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cert = "\(dir)/sub/server.crt", key = "\(dir)/sub/server.key"
        let created = try IdentityGenerator.loadOrCreate(certPath: cert, keyPath: key, commonName: "m1", ipAddresses: ["127.0.0.1"])
        let attrs = try FileManager.default.attributesOfItem(atPath: key)
        #expect((attrs[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        let again = try IdentityGenerator.loadOrCreate(certPath: cert, keyPath: key, commonName: "other")
        #expect(again.fingerprint == created.fingerprint, "second call loads, never regenerates")
        #expect(again.privateKeyPEM == created.privateKeyPEM)

        try FileManager.default.removeItem(atPath: key)
        #expect(throws: IdentityError.self, "a lone certificate must not be silently replaced") {
            try IdentityGenerator.loadOrCreate(certPath: cert, keyPath: key, commonName: "m1")
        }
    }

    @Test func mismatchedKeyIsRefused() throws {
        let a = try IdentityGenerator.generate(commonName: "a"), b = try IdentityGenerator.generate(commonName: "b")
        #expect(throws: IdentityError.keyMismatch) { try TLSIdentity(certificatePEM: a.certificatePEM, privateKeyPEM: b.privateKeyPEM) }
    }

    @Test func trustTokenRoundTripAndValidation() throws {
        let token = TrustToken(clientName: "laptop", fingerprint: String(repeating: "ab", count: 32), addresses: ["127.0.0.1:8443"],
                               secret: TrustToken.newSecret(), expiresAt: Date(timeIntervalSince1970: 1_900_000_000))
        #expect(token.secret.count == 64)
        #expect(TrustToken.newSecret() != token.secret)
        #expect(try TrustToken.decode(token.encoded()) == token)
        #expect(throws: TrustTokenError.self) { try TrustToken.decode("not base64!") }
        #expect(throws: TrustTokenError.self) { try TrustToken.decode(Data("{\"x\":1}".utf8).base64EncodedString()) }
        var short = token
        short.fingerprint = "abcd"
        #expect(throws: TrustTokenError.self) { try TrustToken.decode(short.encoded()) }
        #expect(TrustToken.secretDigest("s") == Fingerprint.sha256(der: Array("s".utf8)))
    }

    @Test func tlsConfigurationsBuildContexts() throws {
        let id = try IdentityGenerator.generate(commonName: "m1", ipAddresses: ["127.0.0.1"])
        let server = try TLSConfigurations.server(id)
        #expect(server.minimumTLSVersion == .tlsv12)
        _ = try NIOSSLContext(configuration: server)
        _ = try NIOSSLContext(configuration: try TLSConfigurations.client(id))
    }
}

@Suite struct HostPortTests {
    @Test func parsesHostPortForms() {
        #expect(HostPort.parse("127.0.0.2:8443")! == ("127.0.0.2", 8443))
        #expect(HostPort.parse("[::1]:9000")! == ("::1", 9000))
        #expect(HostPort.parse("[::1]")! == ("::1", 8443))
        #expect(HostPort.parse("node1")! == ("node1", 8443))
        for bad in ["", ":8443", "h:0", "h:70000", "h:x", "::1", "[::1", "[::1]x"] {
            #expect(HostPort.parse(bad) == nil, "\(bad) must be refused")
        }
    }
}
