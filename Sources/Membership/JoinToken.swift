import Foundation

/// A cluster join token: what `lxdctl cluster add NAME` prints and `cluster join TOKEN` consumes.
///
/// Wire form: base64 (standard alphabet, padded) of a JSON object, like LXD's tokens:
/// `{"server_name", "fingerprint", "addresses", "secret", "expires_at"}`.
///
/// This type only encodes, decodes and checks what the token itself can prove. The issuing
/// member stores the secret in ClusterDB and deletes it on first use: **single use is enforced
/// by the database, not here**. The joining side must check the presented certificate against
/// `fingerprint` (`fingerprintMatches`) before it sends the secret.
public struct JoinToken: Sendable, Hashable {
    /// The member name the token was issued for; a join under another name is refused.
    public var name: String
    /// SHA-256 of the cluster certificate (DER), 64 lowercase hex digits.
    public var fingerprint: String
    /// Cluster HTTPS addresses of existing members (`host:port`, IPv6 hosts in brackets).
    public var addresses: [String]
    /// Random hex; compare with `JoinToken.secretsEqual`, never `==`.
    public var secret: String
    /// Unix seconds after which the token is no longer valid.
    public var expiresAt: Int64

    /// LXD's default token lifetime (`cluster.join_token_expiry` 3H).
    public static let defaultLifetime: Int64 = 3 * 3600
    /// Random bytes in a generated secret.
    public static let secretBytes = 32
    /// Longer input is refused before decoding (a token is a few hundred bytes).
    public static let maxEncodedLength = 16 * 1024

    public init(name: String, fingerprint: String, addresses: [String], secret: String, expiresAt: Int64) {
        self.name = name
        self.fingerprint = fingerprint
        self.addresses = addresses
        self.secret = secret
        self.expiresAt = expiresAt
    }

    public enum Error: Swift.Error, Sendable, Hashable, CustomStringConvertible {
        case malformed(String)
        case missingField(String)
        case invalidField(String, String)
        case badFingerprint(String)
        case noAddresses
        case badAddress(String)
        case expired(expiresAt: Int64, now: Int64)
        case wrongName(tokenFor: String, joining: String)

        public var description: String {
            switch self {
            case .malformed(let why): "join token is malformed (\(why)): copy the whole token printed by `cluster add`"
            case .missingField(let f): "join token has no \"\(f)\" field: issue a new one with `cluster add`"
            case .invalidField(let f, let why): "join token field \"\(f)\" is invalid: \(why)"
            case .badFingerprint(let v): "join token fingerprint \"\(v)\" is not a SHA-256 hex digest (64 hex digits)"
            case .noAddresses: "join token lists no member addresses: issue a new one with `cluster add`"
            case .badAddress(let a): "join token address \"\(a)\" is not host:port"
            case .expired(let exp, let now): "join token expired at \(exp) (now \(now)): issue a new one with `cluster add`"
            case .wrongName(let tokenFor, let joining): "join token was issued for member \"\(tokenFor)\", not \"\(joining)\": join with that name or issue a token for this one"
            }
        }
    }

    // MARK: Issuing

    /// A hex secret of `byteCount` random bytes. Pass a cryptographically secure generator
    /// (`SystemRandomNumberGenerator` reads getrandom on Linux); tests pass a seeded one.
    public static func generateSecret(byteCount: Int = secretBytes, using rng: inout some RandomNumberGenerator) -> String {
        var hex = ""
        hex.reserveCapacity(byteCount * 2)
        for _ in 0..<byteCount {
            let b = UInt8.random(in: .min ... .max, using: &rng)
            hex += String(b, radix: 16).leftPadded(to: 2)
        }
        return hex
    }

    /// A new token for `name`, valid for `lifetime` seconds from `now` (unix seconds).
    public static func issue(
        name: String, fingerprint: String, addresses: [String], now: Int64, lifetime: Int64 = defaultLifetime,
        using rng: inout some RandomNumberGenerator
    ) throws(Error) -> JoinToken {
        let token = JoinToken(name: name, fingerprint: fingerprint.lowercased(), addresses: addresses,
                              secret: generateSecret(using: &rng), expiresAt: now + lifetime)
        try token.validate()
        return token
    }

    // MARK: Codec

    private struct Wire: Codable {
        var server_name: String
        var fingerprint: String
        var addresses: [String]
        var secret: String
        var expires_at: Int64

        init(server_name: String, fingerprint: String, addresses: [String], secret: String, expires_at: Int64) {
            self.server_name = server_name
            self.fingerprint = fingerprint
            self.addresses = addresses
            self.secret = secret
            self.expires_at = expires_at
        }

        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            server_name = try c.decode(String.self, forKey: .server_name)
            fingerprint = try c.decode(String.self, forKey: .fingerprint)
            addresses = try c.decode([String].self, forKey: .addresses)
            secret = try c.decode(String.self, forKey: .secret)
            // Foundation on Linux reports a fractional number for an integer as "not valid JSON"
            // with no field name; name the field instead.
            if let v = try? c.decode(Int64.self, forKey: .expires_at) {
                expires_at = v
            } else if let text = try? c.decode(String.self, forKey: .expires_at) {
                // LXD's form (what `lxc cluster add` prints): an RFC 3339 time.
                guard let seconds = JoinToken.unixSeconds(rfc3339: text) else {
                    throw DecodingError.dataCorruptedError(forKey: .expires_at, in: c, debugDescription: "expected an RFC 3339 time or whole unix seconds")
                }
                expires_at = seconds
            } else if c.contains(.expires_at), (try? c.decodeNil(forKey: .expires_at)) == false {
                throw DecodingError.typeMismatch(Int64.self, .init(codingPath: [CodingKeys.expires_at], debugDescription: "expected whole unix seconds or an RFC 3339 time"))
            } else {
                expires_at = try c.decode(Int64.self, forKey: .expires_at) // names the missing/null field
            }
        }
    }

    /// Whole seconds of an RFC 3339 time (any offset; a fraction, Go writes up to nine digits,
    /// is dropped); nil if it is none.
    static func unixSeconds(rfc3339 text: String) -> Int64? {
        guard text.utf8.count <= 64 else { return nil }
        var whole = Substring(text)
        if let dot = whole.firstIndex(of: "."), whole[..<dot].contains("T") {
            let digitsEnd = whole[whole.index(after: dot)...].firstIndex { !$0.isASCII || !$0.isNumber } ?? whole.endIndex
            guard digitsEnd > whole.index(after: dot) else { return nil }
            whole = whole[..<dot] + whole[digitsEnd...]
        }
        guard let date = ISO8601DateFormatter().date(from: String(whole)) else { return nil }
        return Int64(date.timeIntervalSince1970.rounded(.down))
    }

    /// The printable token.
    public func encoded() -> String {
        let wire = Wire(server_name: name, fingerprint: fingerprint, addresses: addresses, secret: secret, expires_at: expiresAt)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys] // stable output for tests and logs
        // Encoding five plain fields cannot fail.
        let json = try! encoder.encode(wire)
        return json.base64EncodedString()
    }

    /// Parses and validates a token as typed or pasted by a user. Surrounding whitespace,
    /// line breaks, missing padding and the URL-safe alphabet are tolerated; unknown JSON
    /// fields are ignored (newer issuers may add some).
    public static func decode(_ text: String) throws(Error) -> JoinToken {
        guard text.utf8.count <= maxEncodedLength else { throw .malformed("longer than \(maxEncodedLength) bytes") }
        var b64 = String(text.unicodeScalars.filter { !CharacterSet.whitespacesAndNewlines.contains($0) })
        guard !b64.isEmpty else { throw .malformed("empty") }
        b64 = b64.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        if b64.utf8.count % 4 != 0 { b64 += String(repeating: "=", count: 4 - b64.utf8.count % 4) }
        guard let json = Data(base64Encoded: b64) else { throw .malformed("not base64") }

        let wire: Wire
        do {
            wire = try JSONDecoder().decode(Wire.self, from: json)
        } catch let DecodingError.keyNotFound(key, _) {
            throw .missingField(key.stringValue)
        } catch let DecodingError.valueNotFound(_, ctx) {
            throw .invalidField(ctx.codingPath.map(\.stringValue).joined(separator: "."), "is null")
        } catch let DecodingError.typeMismatch(type, ctx) {
            let path = ctx.codingPath.map(\.stringValue).joined(separator: ".")
            guard !path.isEmpty else { throw .malformed("not a JSON object") }
            throw .invalidField(path, "expected \(type)")
        } catch let DecodingError.dataCorrupted(ctx) where !ctx.codingPath.isEmpty {
            throw .invalidField(ctx.codingPath.map(\.stringValue).joined(separator: "."), ctx.debugDescription)
        } catch {
            throw .malformed("not JSON")
        }
        let token = JoinToken(name: wire.server_name, fingerprint: wire.fingerprint, addresses: wire.addresses,
                              secret: wire.secret, expiresAt: wire.expires_at)
        try token.validate()
        return token
    }

    /// Shape checks shared by `issue` and `decode`.
    public func validate() throws(Error) {
        guard !name.isEmpty, !name.unicodeScalars.contains(where: { $0.properties.isWhitespace || $0.value < 0x20 }) else {
            throw .invalidField("server_name", "must be a non-empty name without spaces or control characters")
        }
        guard fingerprint.utf8.count == 64, fingerprint.utf8.allSatisfy(Self.isLowerHex) else {
            throw .badFingerprint(fingerprint)
        }
        guard !addresses.isEmpty else { throw .noAddresses }
        for a in addresses where !Self.isHostPort(a) { throw .badAddress(a) }
        guard secret.utf8.count >= 32, secret.utf8.count % 2 == 0, secret.utf8.allSatisfy(Self.isLowerHex) else {
            throw .invalidField("secret", "must be at least 16 random bytes in lowercase hex")
        }
        guard expiresAt > 0 else { throw .invalidField("expires_at", "must be a positive unix time") }
    }

    // MARK: Checks

    /// Whether this token may be used by a member joining as `joiningName` at `now` (unix
    /// seconds of the checking member). `allowedSkew` tolerates the issuer's clock being behind.
    /// Does not check single use: the issuer's database does.
    public func check(forName joiningName: String, now: Int64, allowedSkew: Int64 = 60) throws(Error) {
        guard joiningName == name else { throw .wrongName(tokenFor: name, joining: joiningName) }
        guard now <= expiresAt + max(allowedSkew, 0) else { throw .expired(expiresAt: expiresAt, now: now) }
    }

    /// Whether a certificate fingerprint presented by a member (any hex case, optional colons)
    /// is the one in the token. Check this before sending the secret.
    public func fingerprintMatches(_ presented: String) -> Bool {
        let normalized = presented.lowercased().replacingOccurrences(of: ":", with: "")
        return Self.secretsEqual(normalized, fingerprint)
    }

    /// Compares two secrets in time that depends only on their lengths, not on where they
    /// differ, so a remote caller can't learn a secret byte by byte from response times.
    public static func secretsEqual(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        var diff: UInt8 = x.count == y.count ? 0 : 1
        for i in 0..<max(x.count, y.count) {
            diff |= (i < x.count ? x[i] : 0) ^ (i < y.count ? y[i] : 0)
        }
        return diff == 0
    }

    private static func isLowerHex(_ c: UInt8) -> Bool {
        (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")) || (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "f"))
    }

    /// `host:port` with a port in 1...65535; an IPv6 host must be bracketed (`[::1]:8443`).
    static func isHostPort(_ address: String) -> Bool {
        let host: Substring, port: Substring
        if address.hasPrefix("[") {
            guard let close = address.firstIndex(of: "]") else { return false }
            host = address[address.index(after: address.startIndex)..<close]
            let rest = address[address.index(after: close)...]
            guard rest.hasPrefix(":") else { return false }
            port = rest.dropFirst()
            guard host.contains(":") else { return false }
        } else {
            guard let colon = address.lastIndex(of: ":") else { return false }
            host = address[..<colon]
            port = address[address.index(after: colon)...]
            guard !host.contains(":") else { return false }
        }
        guard !host.isEmpty, !host.contains(where: { $0.isWhitespace || $0 == "/" || $0 == "@" }) else { return false }
        guard !port.isEmpty, port.allSatisfy(\.isASCII), port.allSatisfy(\.isNumber),
              let p = Int(port), (1...65535).contains(p) else { return false }
        return true
    }
}

private extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
