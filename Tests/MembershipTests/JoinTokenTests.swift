import Foundation
import Testing
@testable import Membership

private let fp = String(repeating: "ab", count: 32)
private let now: Int64 = 1_790_000_000

private func issue(name: String = "m2", seed: UInt64 = 1, addresses: [String] = ["127.0.0.1:8443", "127.0.0.2:8443"]) throws -> JoinToken {
    var rng = SeededGenerator(seed: seed)
    return try JoinToken.issue(name: name, fingerprint: fp, addresses: addresses, now: now, using: &rng)
}

/// base64 of a JSON object built from `fields` (to craft bad tokens).
private func craft(_ fields: [String: Any]) throws -> String {
    try JSONSerialization.data(withJSONObject: fields).base64EncodedString()
}

private func decodeError(_ text: String) -> JoinToken.Error? {
    do { _ = try JoinToken.decode(text); return nil } catch { return error }
}

/// The field an `.invalidField` error names (first path component), else nil.
private func invalidFieldName(_ error: JoinToken.Error?) -> String? {
    guard case .invalidField(let path, _)? = error else { return nil }
    return String(path.split(separator: ".").first ?? "")
}

private func validFields() -> [String: Any] {
    ["server_name": "m2", "fingerprint": fp, "addresses": ["127.0.0.1:8443"],
     "secret": String(repeating: "0f", count: 32), "expires_at": now + 100]
}

@Suite struct JoinTokenTests {
    @Test func issuedTokenRoundTrips() throws {
        let token = try issue()
        #expect(token.secret.utf8.count == 64)
        #expect(token.expiresAt == now + 3 * 3600)
        let decoded = try JoinToken.decode(token.encoded())
        #expect(decoded == token)
    }

    @Test func secretsComeFromTheGivenGenerator() throws {
        #expect(try issue(seed: 1).secret == issue(seed: 1).secret)
        #expect(try issue(seed: 1).secret != issue(seed: 2).secret)
        var system = SystemRandomNumberGenerator()
        let a = JoinToken.generateSecret(using: &system), b = JoinToken.generateSecret(using: &system)
        #expect(a != b && a.utf8.count == 64)
    }

    @Test func wireFormIsBase64JSONWithLXDFieldNames() throws {
        let token = try issue()
        let json = try #require(Data(base64Encoded: token.encoded()))
        let object = try #require(try JSONSerialization.jsonObject(with: json) as? [String: Any])
        #expect(Set(object.keys) == ["server_name", "fingerprint", "addresses", "secret", "expires_at"])
        #expect(object["server_name"] as? String == "m2")
        #expect(object["addresses"] as? [String] == ["127.0.0.1:8443", "127.0.0.2:8443"])
    }

    @Test func pastedTokensAreTolerated() throws {
        let token = try issue()
        let text = token.encoded()
        var chunked = ""
        for (i, c) in text.enumerated() { chunked.append(c); if i % 60 == 59 { chunked += "\n" } }
        #expect(try JoinToken.decode("  " + chunked + "\n") == token)
        let unpadded = String(text.reversed().drop(while: { $0 == "=" }).reversed())
        #expect(try JoinToken.decode(unpadded) == token)
        let urlSafe = text.replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
        #expect(try JoinToken.decode(urlSafe) == token)
    }

    @Test func unknownFieldsAreIgnored() throws {
        var f = validFields(); f["added_later"] = 1
        #expect(try JoinToken.decode(craft(f)).name == "m2")
    }

    @Test func malformedInputIsRefused() throws {
        #expect(throws: JoinToken.Error.malformed("empty")) { try JoinToken.decode(" \n ") }
        #expect(throws: JoinToken.Error.malformed("not base64")) { try JoinToken.decode("not*base64!") }
        #expect(throws: JoinToken.Error.malformed("not JSON")) { try JoinToken.decode(Data("hello".utf8).base64EncodedString()) }
        #expect(throws: JoinToken.Error.malformed("not a JSON object")) { try JoinToken.decode(Data("[1,2]".utf8).base64EncodedString()) }
        #expect(throws: JoinToken.Error.malformed("longer than 16384 bytes")) { try JoinToken.decode(String(repeating: "A", count: 20_000)) }
    }

    @Test func everyMissingFieldIsNamed() throws {
        for key in ["server_name", "fingerprint", "addresses", "secret", "expires_at"] {
            var f = validFields(); f[key] = nil
            #expect(throws: JoinToken.Error.missingField(key)) { try JoinToken.decode(craft(f)) }
        }
    }

    /// `lxc cluster add` prints the token from our operation's fields with Go's time encoding.
    @Test func lxdsRFC3339ExpiryIsRead() throws {
        for (text, seconds) in [("2026-12-08T03:00:00.123456789Z", Int64(1_796_698_800)), ("2026-12-08T03:00:00Z", 1_796_698_800),
                                ("2026-12-08T04:00:00.5+01:00", 1_796_698_800)] {
            var f = validFields(); f["expires_at"] = text
            #expect(try JoinToken.decode(craft(f)).expiresAt == seconds, "\(text)")
        }
        for bad in ["2026-12-08T03:00:00.Z", "2026-13-08T03:00:00Z", String(repeating: "9", count: 80)] {
            var f = validFields(); f["expires_at"] = bad
            #expect(invalidFieldName(decodeError(try craft(f))) == "expires_at", "\(bad)")
        }
    }

    @Test func wrongTypesAndValuesAreNamed() throws {
        let cases: [(String, Any)] = [
            ("expires_at", "tomorrow"), ("expires_at", 0), ("expires_at", 1.5), ("expires_at", NSNull()),
            ("secret", "short"), ("secret", String(repeating: "0G", count: 32)), ("secret", 7),
            ("server_name", "two words"), ("server_name", ""), ("addresses", "127.0.0.1:8443"), ("addresses", [1]),
        ]
        for (key, value) in cases {
            var f = validFields(); f[key] = value
            let error = decodeError(try craft(f))
            #expect(invalidFieldName(error) == key, "\(key)=\(value): \(String(describing: error))")
        }
    }

    @Test func badFingerprintShapesAreRefused() throws {
        for bad in [String(fp.dropLast()), fp + "0", fp.uppercased(), "zz" + fp.dropFirst(2), ""] {
            var f = validFields(); f["fingerprint"] = bad
            #expect(throws: JoinToken.Error.badFingerprint(bad)) { try JoinToken.decode(craft(f)) }
        }
    }

    @Test func addressesAreChecked() throws {
        var f = validFields(); f["addresses"] = [String]()
        #expect(throws: JoinToken.Error.noAddresses) { try JoinToken.decode(craft(f)) }
        for bad in ["127.0.0.1", "127.0.0.1:", "host:0", "host:70000", "host:+1", ":8443", "::1:8443", "[::1]", "[::1]8443", "a b:1", "[host]:1"] {
            f["addresses"] = ["127.0.0.1:8443", bad]
            #expect(throws: JoinToken.Error.badAddress(bad)) { try JoinToken.decode(craft(f)) }
        }
        for good in ["127.0.0.1:8443", "[::1]:8443", "member-1.example:1", "10.0.0.1:65535"] {
            f["addresses"] = [good]
            #expect(try JoinToken.decode(craft(f)).addresses == [good])
        }
    }

    @Test func tamperingIsDetectedOrChangesTheSecret() throws {
        let token = try issue()
        let encoded = Array(token.encoded())
        var rng = SeededGenerator(seed: 99)
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
        var refused = 0, accepted = 0
        for _ in 0..<500 {
            var t = encoded
            let i = Int.random(in: 0..<t.count, using: &rng)
            let c = alphabet.randomElement(using: &rng)!
            guard c != t[i], t[i] != "=" else { continue }
            t[i] = c
            // The last character before padding carries unused bits: skip edits that decode
            // to the same bytes (they are not tampering).
            if Data(base64Encoded: String(t)) == Data(base64Encoded: String(encoded)) { continue }
            guard let decoded = try? JoinToken.decode(String(t)) else { refused += 1; continue }
            // A token that still parses must differ from the issued one, so the issuer's
            // secret comparison or the name/expiry checks catch it.
            accepted += 1
            let sameSecret = JoinToken.secretsEqual(decoded.secret, token.secret)
            #expect(decoded != token)
            if sameSecret {
                #expect(decoded.name != token.name || decoded.expiresAt != token.expiresAt
                        || decoded.fingerprint != token.fingerprint || decoded.addresses != token.addresses)
            }
        }
        #expect(refused > 0 && accepted > 0, "refused \(refused), accepted \(accepted)")
    }

    @Test func expiryAllowsConfiguredSkewOnly() throws {
        let token = try issue()
        let exp = token.expiresAt
        #expect(throws: Never.self) { try token.check(forName: "m2", now: now) }
        #expect(throws: Never.self) { try token.check(forName: "m2", now: exp, allowedSkew: 0) }
        #expect(throws: JoinToken.Error.expired(expiresAt: exp, now: exp + 1)) { try token.check(forName: "m2", now: exp + 1, allowedSkew: 0) }
        #expect(throws: Never.self) { try token.check(forName: "m2", now: exp + 60) }
        #expect(throws: JoinToken.Error.expired(expiresAt: exp, now: exp + 61)) { try token.check(forName: "m2", now: exp + 61) }
        // A negative skew is treated as none, not as an earlier expiry.
        #expect(throws: Never.self) { try token.check(forName: "m2", now: exp, allowedSkew: -5) }
        #expect(throws: JoinToken.Error.expired(expiresAt: exp, now: exp + 1)) { try token.check(forName: "m2", now: exp + 1, allowedSkew: -5) }
    }

    @Test func wrongNameIsRefused() throws {
        let token = try issue(name: "m2")
        #expect(throws: JoinToken.Error.wrongName(tokenFor: "m2", joining: "m3")) { try token.check(forName: "m3", now: now) }
        #expect(throws: JoinToken.Error.wrongName(tokenFor: "m2", joining: "M2")) { try token.check(forName: "M2", now: now) }
        #expect("\(JoinToken.Error.wrongName(tokenFor: "m2", joining: "m3"))".contains("issued for member \"m2\""))
    }

    @Test func issueRefusesBadInput() throws {
        var rng = SeededGenerator(seed: 1)
        #expect(throws: JoinToken.Error.noAddresses) {
            try JoinToken.issue(name: "m2", fingerprint: fp, addresses: [], now: now, using: &rng)
        }
        #expect(throws: JoinToken.Error.badFingerprint("abc")) {
            try JoinToken.issue(name: "m2", fingerprint: "ABC", addresses: ["a:1"], now: now, using: &rng)
        }
        // Upper-case fingerprints from a certificate tool are normalized when issuing.
        #expect(try JoinToken.issue(name: "m2", fingerprint: fp.uppercased(), addresses: ["a:1"], now: now, using: &rng).fingerprint == fp)
    }

    @Test func fingerprintMatching() throws {
        let token = try issue()
        let colons = stride(from: 0, to: 64, by: 2).map { i in
            String(fp.uppercased().dropFirst(i).prefix(2))
        }.joined(separator: ":")
        #expect(token.fingerprintMatches(fp))
        #expect(token.fingerprintMatches(colons))
        #expect(!token.fingerprintMatches(String(repeating: "ac", count: 32)))
        #expect(!token.fingerprintMatches(""))
    }

    @Test func constantTimeComparison() {
        #expect(JoinToken.secretsEqual("abcd", "abcd"))
        #expect(JoinToken.secretsEqual("", ""))
        #expect(!JoinToken.secretsEqual("abcd", "abce"))
        #expect(!JoinToken.secretsEqual("abcd", "abc"))
        #expect(!JoinToken.secretsEqual("abc", "abcd"))
        #expect(!JoinToken.secretsEqual("", "a"))
        // Padding with NULs must not make a prefix equal.
        #expect(!JoinToken.secretsEqual("ab", "ab\u{0}"))
    }
}
