import APITypes

/// The one spelling of a request's path that routing, authorization and forwarding all see.
///
/// Empty segments and a trailing slash are dropped (`//1.0//instances/` is `/1.0/instances`), each
/// segment is percent-decoded once, and a segment that could mean something else further down
/// (`.`, `..`, a `/` or `%` after decoding, control characters, spaces, non-ASCII) refuses the
/// request with 400 instead of being guessed at.
public enum RequestPath {
    /// The canonical segments of `raw` (the path part of the request target, still escaped).
    public static func segments(of raw: String) throws(APIError) -> [String] {
        var result: [String] = []
        for piece in raw.split(separator: "/", omittingEmptySubsequences: true) {
            let segment = try decode(piece)
            guard segment != ".", segment != ".." else {
                throw .badRequest("Invalid request path \"\(raw)\": \".\" and \"..\" segments are not allowed")
            }
            result.append(segment)
        }
        return result
    }

    /// The canonical path of `segments`: what the router is given.
    public static func path(_ segments: [String]) -> String {
        "/" + segments.joined(separator: "/")
    }

    private static func decode(_ piece: Substring) throws(APIError) -> String {
        var bytes: [UInt8] = []
        var utf8 = piece.utf8[...]
        while let byte = utf8.popFirst() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = utf8.popFirst().flatMap(hexValue), let low = utf8.popFirst().flatMap(hexValue) else {
                throw .badRequest("Invalid request path: a \"%\" must be followed by two hexadecimal digits")
            }
            bytes.append(high << 4 | low)
        }
        for byte in bytes where !allowed.contains(byte) {
            throw .badRequest("Invalid request path: segment \"\(piece)\" holds \(describe(byte)); names use letters, digits and -._~!$&'()*+,;=:@ only")
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// RFC 3986 unreserved characters, sub-delimiters, ":" and "@": what a path segment may hold
    /// unescaped, so the canonical path is itself a valid request target.
    private static let allowed: Set<UInt8> = Set(
        Array(UInt8(ascii: "a")...UInt8(ascii: "z")) + Array(UInt8(ascii: "A")...UInt8(ascii: "Z")) + Array(UInt8(ascii: "0")...UInt8(ascii: "9"))
            + "-._~!$&'()*+,;=:@".utf8)

    private static func describe(_ byte: UInt8) -> String {
        byte >= 0x21 && byte <= 0x7e ? "\"\(Character(Unicode.Scalar(byte)))\"" : "byte 0x\(String(byte, radix: 16))"
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
