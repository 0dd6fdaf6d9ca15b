#if canImport(FoundationEssentials)
import FoundationEssentials  // not Foundation: lxdctl links this module (see SHA256.swift)
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import NIOSSL

/// A TLS identity: a self-signed certificate and its private key, both PEM.
///
/// Members and clients authenticate each other by certificate fingerprint (LXD's model), so
/// every identity is its own CA: no chain, no hostname checks, the fingerprint is the trust.
/// New identities come from `IdentityGenerator` (swift-certificates); this module only loads,
/// saves, fingerprints and configures TLS, without Foundation or swift-crypto.
public struct TLSIdentity: Sendable {
    public let certificatePEM: String
    public let privateKeyPEM: String
    public let certificateDER: [UInt8]

    /// Parses both and checks that the key belongs to the certificate.
    public init(certificatePEM: String, privateKeyPEM: String) throws {
        let certificate: NIOSSLCertificate
        do {
            certificate = try NIOSSLCertificate(bytes: Array(certificatePEM.utf8), format: .pem)
        } catch {
            throw IdentityError.invalidCertificate("not a PEM certificate (\(error))")
        }
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(bytes: Array(privateKeyPEM.utf8), format: .pem)
        } catch {
            throw IdentityError.invalidKey("not a PEM private key (\(error))")
        }
        // BoringSSL checks the key against the certificate when both go into one context.
        do {
            _ = try NIOSSLContext(configuration: .makeServerConfiguration(certificateChain: [.certificate(certificate)], privateKey: .privateKey(key)))
        } catch {
            throw IdentityError.keyMismatch
        }
        self.certificatePEM = certificatePEM
        self.privateKeyPEM = privateKeyPEM
        self.certificateDER = try certificate.toDERBytes()
    }

    /// SHA-256 of the DER certificate in lower-case hex, as `lxc config trust list` shows it.
    public var fingerprint: String { Fingerprint.sha256(der: certificateDER) }

    public func nioCertificate() throws -> NIOSSLCertificate {
        try NIOSSLCertificate(bytes: certificateDER, format: .der)
    }

    public func nioPrivateKey() throws -> NIOSSLPrivateKey {
        try NIOSSLPrivateKey(bytes: Array(privateKeyPEM.utf8), format: .pem)
    }

    // MARK: Files

    public static func load(certPath: String, keyPath: String) throws -> TLSIdentity {
        let cert = try readText(certPath)
        let key = try readText(keyPath)
        do {
            return try TLSIdentity(certificatePEM: cert, privateKeyPEM: key)
        } catch let error as IdentityError {
            throw IdentityError.file(path: "\(certPath), \(keyPath)", reason: error.description)
        }
    }

    /// Writes both files; the key is created with mode 0600 before any byte of it is written.
    public func save(certPath: String, keyPath: String) throws {
        try Self.write(privateKeyPEM, to: keyPath, mode: 0o600)
        try Self.write(certificatePEM, to: certPath, mode: 0o644)
    }

    /// Loads the identity at the two paths, or calls `create` and saves its result when neither
    /// file exists. One file without the other is an error rather than a silent replacement: a
    /// replaced certificate would break every peer that pinned it.
    public static func loadOrCreate(certPath: String, keyPath: String, create: () throws -> TLSIdentity) throws -> TLSIdentity {
        let fm = FileManager.default
        switch (fm.fileExists(atPath: certPath), fm.fileExists(atPath: keyPath)) {
        case (true, true):
            return try load(certPath: certPath, keyPath: keyPath)
        case (false, false):
            let dir = String(certPath[..<(certPath.lastIndex(of: "/") ?? certPath.startIndex)])
            if !dir.isEmpty { try fm.createDirectory(atPath: dir, withIntermediateDirectories: true) }
            let identity = try create()
            try identity.save(certPath: certPath, keyPath: keyPath)
            return identity
        case (true, false):
            throw IdentityError.file(path: keyPath, reason: "missing while \(certPath) exists; restore it or remove both to make a new identity")
        case (false, true):
            throw IdentityError.file(path: certPath, reason: "missing while \(keyPath) exists; restore it or remove both to make a new identity")
        }
    }

    static func readText(_ path: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw IdentityError.file(path: path, reason: "cannot read it (\(String(cString: strerror(errno))))")
        }
        return String(decoding: data, as: UTF8.self)
    }

    static func write(_ text: String, to path: String, mode: mode_t) throws {
        let tmp = "\(path).tmp-\(getpid())"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw IdentityError.file(path: tmp, reason: String(cString: strerror(errno))) }
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        let failed = written != bytes.count || fsync(fd) != 0
        close(fd)
        // rename keeps readers from ever seeing a half-written file.
        guard !failed, rename(tmp, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(tmp)
            throw IdentityError.file(path: path, reason: "cannot write it: \(reason)")
        }
    }
}

/// Certificate fingerprints.
public enum Fingerprint {
    /// Lower-case hex SHA-256 of DER bytes.
    public static func sha256(der: some Sequence<UInt8>) -> String {
        Hex.encode(SHA256Digest.hash(Array(der)))
    }

    /// Fingerprint of a certificate given as PEM, or as DER (raw or base64, as LXD's API accepts it).
    public static func of(certificate text: String) throws -> String {
        sha256(der: try CertificateText.der(from: text))
    }

    /// True when `prefix` (at least 12 hex digits, LXD's short form) identifies `fingerprint`.
    public static func matches(_ fingerprint: String, prefix: String) -> Bool {
        let p = prefix.lowercased()
        return p.count >= 12 && fingerprint.hasPrefix(p)
    }
}

/// Certificates as they travel in the API: PEM, or base64 DER.
public enum CertificateText {
    /// The DER bytes of a certificate given as PEM or base64 DER; the bytes must parse as X.509.
    public static func der(from text: String) throws -> [UInt8] {
        let trimmed = text.trimmedWhitespace
        do {
            if trimmed.hasPrefix("-----BEGIN") {
                return try NIOSSLCertificate(bytes: Array(trimmed.utf8), format: .pem).toDERBytes()
            }
        } catch {
            throw IdentityError.invalidCertificate("not a PEM certificate")
        }
        guard let data = Data(base64Encoded: trimmed, options: .ignoreUnknownCharacters), !data.isEmpty else {
            throw IdentityError.invalidCertificate("neither PEM nor base64 DER")
        }
        do {
            return try NIOSSLCertificate(bytes: Array(data), format: .der).toDERBytes()
        } catch {
            throw IdentityError.invalidCertificate("not an X.509 certificate")
        }
    }

    /// PEM of DER bytes.
    public static func pem(der: [UInt8]) -> String {
        let base64 = Data(der).base64EncodedString()
        var lines = ["-----BEGIN CERTIFICATE-----"]
        var rest = Substring(base64)
        while !rest.isEmpty {
            lines.append(String(rest.prefix(64)))
            rest = rest.dropFirst(64)
        }
        lines.append("-----END CERTIFICATE-----")
        return lines.joined(separator: "\n") + "\n"
    }
}

extension String {
    var trimmedWhitespace: String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\n" || $0 == "\r" || $0 == "\t" }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(self[first...last])
    }
}

/// Textual IP addresses to the bytes of an X.509 iPAddress name.
public enum IPAddressBytes {
    /// 4 bytes for IPv4, 16 for IPv6, nil for anything else (host names included).
    public static func parse(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            return withUnsafeBytes(of: &v4) { Array($0) }
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            return withUnsafeBytes(of: &v6) { Array($0) }
        }
        return nil
    }
}

public enum IdentityError: Error, CustomStringConvertible, Sendable, Equatable {
    case keyMismatch
    case invalidIPAddress(String)
    case invalidAddress(String)
    case invalidCertificate(String)
    case invalidKey(String)
    case file(path: String, reason: String)
    case generator(String)

    public var description: String {
        switch self {
        case .keyMismatch: "the private key does not belong to the certificate"
        case .invalidIPAddress(let s): "\"\(s)\" is not an IPv4 or IPv6 address"
        case .invalidAddress(let s): "\"\(s)\" is not an address: use host:port, e.g. 127.0.0.1:8443 or [::1]:8443"
        case .invalidCertificate(let r): "invalid certificate: \(r)"
        case .invalidKey(let r): "invalid private key: \(r)"
        case .file(let path, let reason): "\(path): \(reason)"
        case .generator(let r): "cannot make a certificate: \(r)"
        }
    }
}
