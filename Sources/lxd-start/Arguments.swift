// The helper's command line: `lxd-start start|exec key=value ...`, keys may repeat.
// Written by Runtime's HelperInvocation; kept trivially parseable so no Foundation is needed.

struct Arguments {
    let mode: String
    private var values: [String: [String]] = [:]

    init(_ argv: [String]) throws(HelperError) {
        guard argv.count >= 2 else { throw HelperError("usage: lxd-start start|exec key=value ...") }
        mode = argv[1]
        for item in argv.dropFirst(2) {
            guard let eq = item.firstIndex(of: "=") else {
                throw HelperError("argument '\(item)' is not key=value")
            }
            values[String(item[..<eq]), default: []].append(String(item[item.index(after: eq)...]))
        }
    }

    func all(_ key: String) -> [String] { values[key] ?? [] }
    func optional(_ key: String) -> String? { values[key]?.last }

    func required(_ key: String) throws(HelperError) -> String {
        guard let v = values[key]?.last, !v.isEmpty else { throw HelperError("missing argument \(key)=") }
        return v
    }

    func int(_ key: String) throws(HelperError) -> Int {
        let s = try required(key)
        guard let v = Int(s) else { throw HelperError("argument \(key)=\(s) is not an integer") }
        return v
    }
}

/// An id map line "0 BASE SIZE" given as `BASE:SIZE`.
struct IDRange {
    let base: Int
    let size: Int

    init(_ text: String) throws(HelperError) {
        let parts = text.split(separator: ":")
        guard parts.count == 2, let b = Int(parts[0]), let s = Int(parts[1]), b >= 0, s > 0 else {
            throw HelperError("id map '\(text)' is not BASE:SIZE")
        }
        base = b
        size = s
    }

    var mapLine: String { "0 \(base) \(size)\n" }
}
