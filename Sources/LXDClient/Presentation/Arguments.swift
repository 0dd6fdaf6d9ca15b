/// Parsing of command-line argument shapes shared by lxdctl's commands (pure, tested).
public enum ArgumentSyntax {
    public struct Invalid: Error, CustomStringConvertible, Equatable {
        public var description: String
    }

    /// `key=value` (the value may contain `=` and may be empty; the key may not).
    public static func keyValue(_ text: String) throws -> (key: String, value: String) {
        guard let eq = text.firstIndex(of: "=") else {
            throw Invalid(description: "'\(text)' is not key=value")
        }
        let key = String(text[..<eq])
        guard !key.isEmpty else { throw Invalid(description: "'\(text)' has an empty key; expected key=value") }
        return (key, String(text[text.index(after: eq)...]))
    }

    /// Several `key=value` arguments as a dictionary; a repeated key keeps the last value.
    public static func keyValues(_ items: [String]) throws -> [String: String] {
        var result: [String: String] = [:]
        for item in items {
            let (key, value) = try keyValue(item)
            result[key] = value
        }
        return result
    }

    /// `NAME/PATH` of `file push|pull` → ("NAME", "/PATH").
    public static func instancePath(_ text: String) throws -> (instance: String, path: String) {
        guard let slash = text.firstIndex(of: "/"), slash != text.startIndex else {
            throw Invalid(description: "'\(text)' is not INSTANCE/PATH (e.g. c1/etc/hosts)")
        }
        let path = String(text[slash...])
        guard path.count > 1 else { throw Invalid(description: "'\(text)' has no path after the instance name") }
        return (String(text[..<slash]), path)
    }
}
