/// LXD's `?filter=` (the `api_filtering` extension): clauses `[not] FIELD eq|ne VALUE` joined
/// by `and`/`or`, applied left to right with no precedence (`a or b and c` is `(a or b) and c`),
/// as LXD does. A value may be double-quoted to hold spaces.
///
/// A field names a key of the object as the API shows it (`status`, `location`,
/// `config.image.os`, `devices.root.pool`, `state.status`): at each level a key holding the
/// whole rest of the path wins (config keys have dots), else the path is split at its first
/// dot. A string value matches case-insensitively, as a pattern anchored at both ends unless
/// the value holds `^` or `$` (then found anywhere); a value that is no pattern we take
/// (`FilterPattern`) is compared as plain text. Numbers and booleans compare as their JSON
/// text; a missing field or an object matches nothing (`ne` matches it).
public struct APIFilter: Sendable, Equatable {
    public struct Clause: Sendable, Equatable {
        /// How the clause joins what came before it (the first joins `true` with `and`).
        public var joinsWithOr: Bool
        public var not: Bool
        public var field: String
        public var notEqual: Bool
        public var value: String
    }

    public let clauses: [Clause]

    /// Bounds on what a request may ask: enough for any real filter, small enough that a
    /// match stays cheap on every instance of a large cluster.
    public static let maxLength = 4096
    public static let maxClauses = 64

    public struct ParseError: Error, Equatable, CustomStringConvertible {
        public let reason: String
        public var description: String { "Invalid filter: \(reason)" }
    }

    /// Parses a filter; an empty (or all-blank) one matches everything.
    public init(parsing text: String) throws(ParseError) {
        guard text.utf8.count <= Self.maxLength else { throw ParseError(reason: "longer than \(Self.maxLength) bytes") }
        let words = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).map(String.init)
        var clauses: [Clause] = []
        var index = 0
        var joinsWithOr = false
        func next(_ missing: String) throws(ParseError) -> String {
            guard index < words.count else { throw ParseError(reason: missing) }
            defer { index += 1 }
            return words[index]
        }
        while index < words.count {
            var not = false
            if words[index].lowercased() == "not" {
                not = true
                index += 1
            }
            let field = try next(not ? "'not' with no clause after it" : "a clause has no field")
            let op = try next("clause on \(field) has no operator").lowercased()
            guard op == "eq" || op == "ne" else {
                throw ParseError(reason: "unknown operator \(op) on \(field) (use eq or ne)")
            }
            var value = try next("clause \(field) \(op) has no value")
            if value.hasPrefix("\"") {
                value.removeFirst()
                // A quoted value runs to the word that ends with a quote; words were split on
                // blanks, so single spaces stand in for whatever separated them.
                if value.hasSuffix("\"") && !value.isEmpty {
                    value.removeLast()
                } else {
                    while true {
                        let word = try next("unterminated quote in the value of \(field)")
                        if word.hasSuffix("\"") {
                            value += " " + word.dropLast()
                            break
                        }
                        value += " " + word
                    }
                }
            }
            clauses.append(Clause(joinsWithOr: joinsWithOr, not: not, field: field, notEqual: op == "ne", value: value))
            guard clauses.count <= Self.maxClauses else { throw ParseError(reason: "more than \(Self.maxClauses) clauses") }
            if index < words.count {
                switch words[index].lowercased() {
                case "and": joinsWithOr = false
                case "or": joinsWithOr = true
                default: throw ParseError(reason: "expected 'and' or 'or' after the clause on \(field), found '\(words[index])'")
                }
                index += 1
                guard index < words.count else { throw ParseError(reason: "'\(words[index - 1])' with no clause after it") }
            }
        }
        self.clauses = clauses
    }

    public var isEmpty: Bool { clauses.isEmpty }

    /// Whether `object` (an API object as JSON) passes the filter.
    public func matches(_ object: JSONValue) -> Bool {
        var result = true
        for clause in clauses {
            var hit = Self.value(of: clause.field, in: object).map { Self.matches($0, clause.value) } ?? false
            if clause.notEqual { hit.toggle() }
            if clause.not { hit.toggle() }
            result = clause.joinsWithOr ? (result || hit) : (result && hit)
        }
        return result
    }

    static func value(of path: String, in object: JSONValue) -> JSONValue? {
        guard case .object(let fields) = object else { return nil }
        if let whole = fields[path] { return whole }
        guard let dot = path.firstIndex(of: ".") else { return nil }
        guard let inner = fields[String(path[..<dot])] else { return nil }
        return value(of: String(path[path.index(after: dot)...]), in: inner)
    }

    static func matches(_ value: JSONValue, _ wanted: String) -> Bool {
        let text: String
        switch value {
        case .string(let s): text = s
        case .bool(let b): text = b ? "true" : "false"
        case .int(let i): text = String(i)
        case .double(let d): text = String(d)
        default: return false
        }
        guard case .string = value else { return text == wanted.lowercased() }
        let anchored = !(wanted.contains("^") || wanted.contains("$"))
        guard let pattern = FilterPattern(anchored ? "^" + wanted + "$" : wanted) else {
            return text.lowercased() == wanted.lowercased()
        }
        return pattern.matches(text)
    }
}
