/// The fields of an image's metadata.yaml that we use.
public struct ImageMetadata: Sendable, Equatable {
    public var architecture: String
    /// Unix seconds, when the file has `creation_date`.
    public var creationDate: Int64?
    public var properties: [String: String]

    public init(architecture: String, creationDate: Int64? = nil, properties: [String: String] = [:]) {
        self.architecture = architecture
        self.creationDate = creationDate
        self.properties = properties
    }

    /// Reads the flat shape LXD writes:
    ///
    ///     architecture: x86_64
    ///     creation_date: 1700000000
    ///     properties:
    ///       description: Busybox x86_64
    ///       os: "Busybox"
    ///     templates: ...
    ///
    /// A deliberately small, tolerant reader (no YAML dependency): top-level
    /// `key: value` lines, and one level of `key: value` under `properties:`
    /// (a flow map `{a: b}` too). Other keys and deeper nesting are skipped,
    /// plain/single/double-quoted scalars are understood.
    /// Throws only when `architecture` is missing, since nothing can run without it.
    public static func parse(_ text: String) throws -> ImageMetadata {
        var architecture: String?
        var creationDate: Int64?
        var properties: [String: String] = [:]
        var inProperties = false
        var propertyIndent: Int?

        for rawLine in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" || $0 == "\r" }) {
            let line = String(rawLine)
            let trimmed = line.drop { $0 == " " || $0 == "\t" }
            if trimmed.isEmpty || trimmed.hasPrefix("#") || trimmed == "---" { continue }
            let indent = line.count - trimmed.count

            if indent == 0 {
                inProperties = false
                guard let (key, value) = splitKeyValue(String(trimmed)) else { continue }
                switch key {
                case "architecture": architecture = scalar(value)
                case "creation_date": creationDate = Int64(scalar(value))
                case "properties":
                    if value.hasPrefix("{") {
                        properties = flowMap(value)
                    } else {
                        inProperties = true
                        propertyIndent = nil
                    }
                default: break
                }
                continue
            }
            guard inProperties else { continue }
            // The first nested line fixes the indent of property keys; deeper
            // lines belong to a nested value we ignore.
            if propertyIndent == nil { propertyIndent = indent }
            guard indent == propertyIndent, let (key, value) = splitKeyValue(String(trimmed)) else { continue }
            properties[scalar(key)] = scalar(value)
        }

        guard let architecture, !architecture.isEmpty else {
            throw ImageError.invalidImage("image metadata.yaml has no architecture; add a line such as `architecture: x86_64`")
        }
        return ImageMetadata(architecture: architecture, creationDate: creationDate, properties: properties)
    }

    /// "key: value" → (key, value); a key may be quoted. Nil if there is no ": ".
    static func splitKeyValue(_ line: String) -> (String, String)? {
        var inQuote: Character?
        var index = line.startIndex
        while index < line.endIndex {
            let c = line[index]
            if let q = inQuote {
                if c == q { inQuote = nil }
            } else if c == "\"" || c == "'" {
                inQuote = c
            } else if c == ":" {
                let after = line.index(after: index)
                if after == line.endIndex || line[after] == " " || line[after] == "\t" {
                    let key = line[..<index].trimmingSpaces()
                    let value = line[after...].trimmingSpaces()
                    return (key, value)
                }
            }
            index = line.index(after: index)
        }
        return nil
    }

    /// A YAML scalar: quoted strings are unquoted, plain ones lose a trailing ` # comment`.
    static func scalar(_ raw: String) -> String {
        let s = raw.trimmingSpaces()
        if s.hasPrefix("\""), s.count >= 2, s.hasSuffix("\"") {
            var out = ""
            var escaped = false
            for c in s.dropFirst().dropLast() {
                if escaped {
                    switch c {
                    case "n": out.append("\n")
                    case "t": out.append("\t")
                    default: out.append(c)
                    }
                    escaped = false
                } else if c == "\\" {
                    escaped = true
                } else {
                    out.append(c)
                }
            }
            return out
        }
        if s.hasPrefix("'"), s.count >= 2, s.hasSuffix("'") {
            return String(s.dropFirst().dropLast()).replacing("''", with: "'")
        }
        if let hash = s.firstRange(of: " #") {
            return String(s[..<hash.lowerBound]).trimmingSpaces()
        }
        return s
    }

    /// `{a: b, "c": 'd'}` → ["a": "b", "c": "d"]; commas inside quotes are kept.
    static func flowMap(_ raw: String) -> [String: String] {
        var body = raw.trimmingSpaces()
        guard body.hasPrefix("{") else { return [:] }
        body.removeFirst()
        if body.hasSuffix("}") { body.removeLast() }
        var result: [String: String] = [:]
        var parts: [String] = []
        var current = ""
        var inQuote: Character?
        for c in body {
            if let q = inQuote {
                if c == q { inQuote = nil }
                current.append(c)
            } else if c == "\"" || c == "'" {
                inQuote = c
                current.append(c)
            } else if c == "," {
                parts.append(current)
                current = ""
            } else {
                current.append(c)
            }
        }
        parts.append(current)
        for part in parts {
            if let (k, v) = splitKeyValue(part.trimmingSpaces()) { result[scalar(k)] = scalar(v) }
        }
        return result
    }
}

extension StringProtocol {
    fileprivate func trimmingSpaces() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" { s.removeLast() }
        return String(s)
    }
}
