/// Transport-neutral HTTP request and response values.
///
/// They carry whole bodies in memory: every body this API moves (JSON, an image tarball of a few
/// MiB, one file, a console log) fits comfortably, and it keeps the transport contract small.

/// The methods LXD's API uses.
public enum RequestMethod: String, Sendable, Equatable {
    case GET, POST, PUT, PATCH, DELETE

    /// Whether re-sending after the connection dropped mid-request is harmless.
    /// DESIGN.md: clients re-send non-GET requests only after a connect failure.
    public var isSafeToResend: Bool { self == .GET }
}

public struct HTTPRequest: Sendable, Equatable {
    public var method: RequestMethod
    /// Already-escaped absolute path, e.g. `/1.0/instances/c1` (build it with `APIPath`).
    public var path: String
    public var query: [QueryItem]
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public init(_ method: RequestMethod, _ path: String, query: [QueryItem] = [], headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
    }

    /// The request target as sent on the request line: path plus escaped query.
    public var target: String {
        query.isEmpty ? path : path + "?" + QueryItem.encode(query)
    }

    public static func == (a: HTTPRequest, b: HTTPRequest) -> Bool {
        a.method == b.method && a.path == b.path && a.query == b.query && a.body == b.body
            && a.headers.map { "\($0.name):\($0.value)" } == b.headers.map { "\($0.name):\($0.value)" }
    }
}

public struct QueryItem: Sendable, Equatable {
    public var name: String
    public var value: String
    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }

    static func encode(_ items: [QueryItem]) -> String {
        items.map { PercentEncoding.escape($0.name) + "=" + PercentEncoding.escape($0.value) }.joined(separator: "&")
    }
}

public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public init(status: Int, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// First value of a header, compared case-insensitively as HTTP requires.
    public func header(_ name: String) -> String? {
        let lower = name.lowercased()
        return headers.first { $0.name.lowercased() == lower }?.value
    }
}

enum PercentEncoding {
    /// Escapes everything except RFC 3986 unreserved characters, so the result is safe both as a
    /// path segment (a `/` inside a name cannot split it) and as a query component.
    static func escape(_ s: String) -> String {
        var out = ""
        for byte in s.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."),
                 UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let hex = Array("0123456789ABCDEF".utf8)
                out.unicodeScalars.append("%")
                out.unicodeScalars.append(Unicode.Scalar(hex[Int(byte >> 4)]))
                out.unicodeScalars.append(Unicode.Scalar(hex[Int(byte & 0xF)]))
            }
        }
        return out
    }
}

/// Paths of the `/1.0` API; names are escaped as single path segments.
public enum APIPath {
    static func seg(_ s: String) -> String { PercentEncoding.escape(s) }

    public static let server = "/1.0"
    public static let instances = "/1.0/instances"
    public static func instance(_ name: String) -> String { "\(instances)/\(seg(name))" }
    public static func instanceState(_ name: String) -> String { instance(name) + "/state" }
    public static func instanceExec(_ name: String) -> String { instance(name) + "/exec" }
    public static func instanceConsole(_ name: String) -> String { instance(name) + "/console" }
    public static func instanceFiles(_ name: String) -> String { instance(name) + "/files" }
    public static let images = "/1.0/images"
    public static func image(_ fingerprint: String) -> String { "\(images)/\(seg(fingerprint))" }
    public static let imageAliases = "/1.0/images/aliases"
    public static func imageAlias(_ name: String) -> String { "\(imageAliases)/\(seg(name))" }
    public static let operations = "/1.0/operations"
    public static func operation(_ id: String) -> String { "\(operations)/\(seg(id))" }
    public static func operationWait(_ id: String) -> String { operation(id) + "/wait" }
    public static func operationWebSocket(_ id: String) -> String { operation(id) + "/websocket" }

    /// The operation id from an operation URL such as `/1.0/operations/<id>` (the `operation`
    /// field of an async response); nil when it is not one.
    public static func operationID(fromURL url: String) -> String? {
        let prefix = operations + "/"
        guard url.hasPrefix(prefix) else { return nil }
        let id = url.dropFirst(prefix.count).split(separator: "?", maxSplits: 1).first.map(String.init) ?? ""
        guard !id.isEmpty, !id.contains("/") else { return nil }
        return id.removingPercentEncodingASCII
    }
}

extension String {
    /// Decodes `%XX` escapes (only those our own escaping produces); leaves malformed ones as is.
    var removingPercentEncodingASCII: String {
        var bytes: [UInt8] = []
        var it = Array(utf8)[...]
        while let b = it.popFirst() {
            if b == UInt8(ascii: "%"), it.count >= 2,
               let v = UInt8(String(decoding: it.prefix(2), as: UTF8.self), radix: 16) {
                bytes.append(v)
                it = it.dropFirst(2)
            } else {
                bytes.append(b)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
