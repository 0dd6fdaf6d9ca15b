/// A value a template can read: text, or a map of named values (`container`, `config`, ...).
public indirect enum TemplateValue: Sendable, Equatable {
    case string(String)
    case map([String: TemplateValue])

    /// Truthiness as pongo2 has it for these values: non-empty text or map.
    var isTrue: Bool {
        switch self {
        case .string(let s): return !s.isEmpty
        case .map(let m): return !m.isEmpty
        }
    }
}

/// Why a template could not be rendered; names the file, the line and the construct.
public struct TemplateError: Error, Sendable, Equatable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var message: String

    public var description: String { "image template \(file), line \(line): \(message)" }
}

/// Renders the subset of pongo2 (Django-like templates) that LXD image templates use. Pure: no
/// I/O; the caller reads the template and writes the result.
///
/// Supported: `{{ expr }}`, `{% if expr %}` … `{% else %}` … `{% endif %}`, `{# comment #}`.
/// An expression is a lookup (`container.name`), a string literal (`"x"` or `'x'`), or
/// `config_get("key", "default")` (the config value without trailing line breaks, as LXD gives
/// it), optionally piped through `default:"x"`; conditions also take
/// `==`, `!=`, `not`, `and`, `or`. A missing name reads as empty text. Anything else (other tags
/// or filters, numbers, calls) is an error naming the construct, the file and the line, so an
/// image is never half-understood.
public enum TemplateRenderer {
    public static let maxOutputBytes = 1 << 20
    public static let maxNesting = 32

    public static func render(
        _ source: String, file: String, context: [String: TemplateValue],
        maxOutputBytes: Int = TemplateRenderer.maxOutputBytes
    ) throws(TemplateError) -> String {
        var parser = Parser(source: Array(source.unicodeScalars), file: file)
        let nodes = try parser.parseBody(depth: 0, end: [])
        var evaluator = Evaluator(file: file, context: context, limit: maxOutputBytes)
        try evaluator.render(nodes)
        return evaluator.output
    }

    // MARK: - Syntax

    indirect enum Expr: Equatable {
        case lookup([String])
        case literal(String)
        case configGet(Expr, Expr)
        case defaultFilter(Expr, Expr)
        case not(Expr)
        case equal(Expr, Expr, negated: Bool)
        case and(Expr, Expr)
        case or(Expr, Expr)
    }

    enum Node: Equatable {
        case text(String)
        case output(Expr, line: Int)
        case conditional(Expr, then: [Node], otherwise: [Node], line: Int)
    }

    /// What ended a body: `else`, `endif`, or the end of the template.
    enum Terminator { case elseTag, endifTag, end }

    struct Parser {
        let source: [Unicode.Scalar]
        let file: String
        var index = 0
        var line = 1

        init(source: [Unicode.Scalar], file: String) {
            self.source = source
            self.file = file
        }

        func error(_ message: String, line: Int? = nil) -> TemplateError {
            TemplateError(file: file, line: line ?? self.line, message: message)
        }

        mutating func advance() {
            if source[index] == "\n" { line += 1 }
            index += 1
        }

        func starts(_ s: String, at i: Int) -> Bool {
            var j = i
            for c in s.unicodeScalars {
                guard j < source.count, source[j] == c else { return false }
                j += 1
            }
            return true
        }

        /// Reads the inside of a tag up to `close`; the tag opener is already consumed.
        mutating func tagBody(close: String, opener: String) throws(TemplateError) -> String {
            let startLine = line
            var body = ""
            while index < source.count {
                if starts(close, at: index) {
                    index += close.unicodeScalars.count
                    return body
                }
                body.unicodeScalars.append(source[index])
                advance()
            }
            throw error("\(opener) is never closed with \(close)", line: startLine)
        }

        /// Text and tags up to one of `end` (or the end of the source when `end` is empty).
        mutating func parseBody(depth: Int, end: Set<String>) throws(TemplateError) -> [Node] {
            var nodes: [Node] = []
            var text = ""
            func flush() {
                if !text.isEmpty { nodes.append(.text(text)); text = "" }
            }
            while index < source.count {
                if starts("{{", at: index) {
                    flush()
                    let tagLine = line
                    index += 2
                    let body = try tagBody(close: "}}", opener: "{{")
                    let expr = try ExprParser.parse(body, file: file, line: tagLine, construct: "{{\(body)}}")
                    nodes.append(.output(expr, line: tagLine))
                } else if starts("{#", at: index) {
                    flush()
                    index += 2
                    _ = try tagBody(close: "#}", opener: "{#")
                } else if starts("{%", at: index) {
                    flush()
                    let tagLine = line
                    index += 2
                    let body = try tagBody(close: "%}", opener: "{%")
                    let trimmed = body.trimmingWhitespace()
                    let word = String(trimmed.prefix { $0.isLetter || $0 == "_" })
                    switch word {
                    case "if":
                        guard depth < TemplateRenderer.maxNesting else {
                            throw error("{% if %} nested deeper than \(TemplateRenderer.maxNesting) levels", line: tagLine)
                        }
                        let condition = try ExprParser.parse(String(trimmed.dropFirst(2)), file: file, line: tagLine, construct: "{%\(body)%}")
                        let then = try parseBody(depth: depth + 1, end: ["else", "endif"])
                        var otherwise: [Node] = []
                        if lastTerminator == "else" {
                            otherwise = try parseBody(depth: depth + 1, end: ["endif"])
                        }
                        guard lastTerminator == "endif" else {
                            throw error("{% if %} is never closed with {% endif %}", line: tagLine)
                        }
                        lastTerminator = nil
                        nodes.append(.conditional(condition, then: then, otherwise: otherwise, line: tagLine))
                    case "else", "endif":
                        guard trimmed == word else { throw error("{%\(body)%} takes no arguments", line: tagLine) }
                        guard end.contains(word) else { throw error("{% \(word) %} without a matching {% if %}", line: tagLine) }
                        lastTerminator = word
                        return nodes
                    default:
                        throw error("unsupported tag {%\(body)%}; image templates may use if, else and endif", line: tagLine)
                    }
                } else {
                    text.unicodeScalars.append(source[index])
                    advance()
                }
            }
            flush()
            lastTerminator = nil
            return nodes
        }

        /// The tag that ended the last `parseBody` (nil: the end of the source).
        var lastTerminator: String?
    }

    /// Expressions inside `{{ }}` and `{% if %}`: a tokenizer and a recursive-descent parser.
    struct ExprParser {
        enum Token: Equatable {
            case name(String)
            case string(String)
            case symbol(String)
        }

        var tokens: [Token]
        var position = 0
        let file: String
        let line: Int
        let construct: String

        func error(_ message: String) -> TemplateError {
            TemplateError(file: file, line: line, message: "\(message) in \(construct)")
        }

        static func parse(_ text: String, file: String, line: Int, construct: String) throws(TemplateError) -> Expr {
            var parser = ExprParser(tokens: [], file: file, line: line, construct: construct)
            parser.tokens = try parser.tokenize(text)
            guard !parser.tokens.isEmpty else { throw parser.error("empty expression") }
            let expr = try parser.parseOr(depth: 0)
            if parser.position < parser.tokens.count {
                throw parser.error("unexpected \(parser.describe(parser.tokens[parser.position]))")
            }
            return expr
        }

        func describe(_ token: Token) -> String {
            switch token {
            case .name(let n): return "'\(n)'"
            case .string(let s): return "string \"\(s)\""
            case .symbol(let s): return "'\(s)'"
            }
        }

        func tokenize(_ text: String) throws(TemplateError) -> [Token] {
            let chars = Array(text.unicodeScalars)
            var out: [Token] = []
            var i = 0
            func isNameStart(_ c: Unicode.Scalar) -> Bool { c == "_" || ("a"..."z").contains(c) || ("A"..."Z").contains(c) }
            func isNameChar(_ c: Unicode.Scalar) -> Bool { isNameStart(c) || ("0"..."9").contains(c) }
            while i < chars.count {
                let c = chars[i]
                if c == " " || c == "\t" || c == "\n" || c == "\r" {
                    i += 1
                } else if isNameStart(c) {
                    var name = ""
                    while i < chars.count, isNameChar(chars[i]) { name.unicodeScalars.append(chars[i]); i += 1 }
                    out.append(.name(name))
                } else if c == "\"" || c == "'" {
                    var s = ""
                    i += 1
                    var closed = false
                    while i < chars.count {
                        let d = chars[i]
                        if d == c { closed = true; i += 1; break }
                        if d == "\\", i + 1 < chars.count {
                            let e = chars[i + 1]
                            switch e {
                            case "n": s += "\n"
                            case "t": s += "\t"
                            default: s.unicodeScalars.append(e)
                            }
                            i += 2
                            continue
                        }
                        s.unicodeScalars.append(d)
                        i += 1
                    }
                    guard closed else { throw error("unterminated string literal") }
                    out.append(.string(s))
                } else if (c == "=" || c == "!"), i + 1 < chars.count, chars[i + 1] == "=" {
                    out.append(.symbol(c == "=" ? "==" : "!="))
                    i += 2
                } else if ".|:(),".unicodeScalars.contains(c) {
                    out.append(.symbol(String(c)))
                    i += 1
                } else {
                    throw error("unsupported character '\(c)'")
                }
            }
            return out
        }

        var peek: Token? { position < tokens.count ? tokens[position] : nil }

        mutating func expect(_ symbol: String) throws(TemplateError) {
            guard peek == .symbol(symbol) else {
                throw error("expected '\(symbol)'" + (peek.map { ", found \(describe($0))" } ?? " at the end"))
            }
            position += 1
        }

        mutating func parseOr(depth: Int) throws(TemplateError) -> Expr {
            guard depth < TemplateRenderer.maxNesting else { throw error("expression nested too deeply") }
            var left = try parseAnd(depth: depth)
            while peek == .name("or") {
                position += 1
                left = .or(left, try parseAnd(depth: depth))
            }
            return left
        }

        mutating func parseAnd(depth: Int) throws(TemplateError) -> Expr {
            var left = try parseNot(depth: depth)
            while peek == .name("and") {
                position += 1
                left = .and(left, try parseNot(depth: depth))
            }
            return left
        }

        mutating func parseNot(depth: Int) throws(TemplateError) -> Expr {
            if peek == .name("not") {
                guard depth < TemplateRenderer.maxNesting else { throw error("expression nested too deeply") }
                position += 1
                return .not(try parseNot(depth: depth + 1))
            }
            let left = try parseFiltered(depth: depth)
            if peek == .symbol("==") || peek == .symbol("!=") {
                let negated = peek == .symbol("!=")
                position += 1
                return .equal(left, try parseFiltered(depth: depth), negated: negated)
            }
            return left
        }

        mutating func parseFiltered(depth: Int) throws(TemplateError) -> Expr {
            var value = try parsePrimary(depth: depth)
            while peek == .symbol("|") {
                position += 1
                guard case .name(let filter)? = peek else { throw error("expected a filter name after '|'") }
                position += 1
                guard filter == "default" else { throw error("unsupported filter '\(filter)'; image templates may use default") }
                try expect(":")
                value = .defaultFilter(value, try parsePrimary(depth: depth))
            }
            return value
        }

        mutating func parsePrimary(depth: Int) throws(TemplateError) -> Expr {
            guard let token = peek else { throw error("expected a value at the end") }
            position += 1
            switch token {
            case .string(let s):
                return .literal(s)
            case .name(let name) where peek == .symbol("("):
                guard name == "config_get" else { throw error("unsupported function '\(name)'; image templates may call config_get") }
                position += 1
                let key = try parseOr(depth: depth + 1)
                try expect(",")
                let fallback = try parseOr(depth: depth + 1)
                try expect(")")
                return .configGet(key, fallback)
            case .name(let name):
                if ["and", "or", "not"].contains(name) { throw error("unexpected '\(name)'") }
                var path = [name]
                while peek == .symbol(".") {
                    position += 1
                    guard case .name(let part)? = peek else { throw error("expected a name after '.'") }
                    position += 1
                    path.append(part)
                }
                return .lookup(path)
            case .symbol("("):
                let inner = try parseOr(depth: depth + 1)
                try expect(")")
                return inner
            case .symbol:
                throw error("unexpected \(describe(token))")
            }
        }
    }

    // MARK: - Evaluation

    struct Evaluator {
        let file: String
        let context: [String: TemplateValue]
        let limit: Int
        var output = ""
        var outputBytes = 0

        mutating func render(_ nodes: [Node]) throws(TemplateError) {
            for node in nodes {
                switch node {
                case .text(let s):
                    try append(s, line: nil)
                case .output(let expr, let line):
                    switch try value(expr, line: line) {
                    case .string(let s)?: try append(s, line: line)
                    case nil: break
                    case .map?:
                        throw TemplateError(file: file, line: line, message: "cannot print a map; name one of its fields (such as container.name)")
                    }
                case .conditional(let condition, let then, let otherwise, let line):
                    try render(truth(condition, line: line) ? then : otherwise)
                }
            }
        }

        mutating func append(_ s: String, line: Int?) throws(TemplateError) {
            outputBytes += s.utf8.count
            guard outputBytes <= limit else {
                throw TemplateError(file: file, line: line ?? 0, message: "output is larger than \(limit) bytes")
            }
            output += s
        }

        func truth(_ expr: Expr, line: Int) throws(TemplateError) -> Bool {
            switch expr {
            case .not(let e): return try !truth(e, line: line)
            // No && or ||: their autoclosures would throw `any Error`.
            case .and(let a, let b):
                if try !truth(a, line: line) { return false }
                return try truth(b, line: line)
            case .or(let a, let b):
                if try truth(a, line: line) { return true }
                return try truth(b, line: line)
            case .equal(let a, let b, let negated):
                // A missing name compares as empty text.
                let same = try (value(a, line: line) ?? .string("")) == (value(b, line: line) ?? .string(""))
                return same != negated
            default: return try value(expr, line: line)?.isTrue ?? false
            }
        }

        /// nil: a name that is not there (pongo2 renders it as nothing).
        func value(_ expr: Expr, line: Int) throws(TemplateError) -> TemplateValue? {
            switch expr {
            case .literal(let s):
                return .string(s)
            case .lookup(let path):
                var current = context[path[0]]
                for part in path.dropFirst() {
                    guard case .map(let m)? = current else { return nil }
                    current = m[part]
                }
                return current
            case .configGet(let key, let fallback):
                guard case .string(let k)? = try value(key, line: line) else {
                    throw TemplateError(file: file, line: line, message: "config_get needs a text key")
                }
                // As LXD: trailing line breaks of the value are dropped.
                if case .map(let config)? = context["config"], case .string(var v)? = config[k] {
                    while let last = v.unicodeScalars.last, last == "\n" || last == "\r" { v.unicodeScalars.removeLast() }
                    return .string(v)
                }
                return try value(fallback, line: line)
            case .defaultFilter(let e, let fallback):
                if let v = try value(e, line: line), v.isTrue { return v }
                return try value(fallback, line: line)
            case .not, .and, .or, .equal:
                // As pongo2 prints a boolean.
                return try truth(expr, line: line) ? .string("True") : .string("False")
            }
        }
    }
}

extension StringProtocol {
    fileprivate func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s.removeFirst() }
        while let l = s.last, l.isWhitespace { s.removeLast() }
        return String(s)
    }
}
