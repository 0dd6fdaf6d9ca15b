/// The patterns of `APIFilter` values, matched case-insensitively in time linear in the text
/// (a Pike VM: every alternative advances in step, so no pattern a client sends can make a
/// match backtrack for long, as RE2, which LXD uses, guarantees too).
///
/// Takes: literals, `.`, classes `[abc]`, `[a-z]`, `[^…]`, escapes `\d \w \s \D \W \S` and
/// escaped punctuation, `^`, `$`, groups `( )`, `(?:` `)`, alternation `|`, and `* + ?`
/// (greedy or lazy: the same for a yes/no match). Anything else (`{m,n}`, back-references,
/// look-around, flags) is no pattern here: `init` returns nil and the caller compares text.
public struct FilterPattern: Sendable {
    enum Instruction: Equatable {
        case scalar(Unicode.Scalar)
        case any
        case set(CharacterSet)
        case split(Int, Int)
        case jump(Int)
        case start
        case end
        case match
    }

    struct CharacterSet: Equatable {
        var negated = false
        var ranges: [ClosedRange<UInt32>] = []

        func contains(_ c: Unicode.Scalar) -> Bool {
            let hit = FilterPattern.foldings(c).contains { f in ranges.contains { $0.contains(f.value) } }
            return hit != negated
        }
    }

    let program: [Instruction]
    /// Bounds the program (and so the per-character work) whatever the pattern.
    public static let maxLength = 1024

    public init?(_ pattern: String) {
        guard pattern.unicodeScalars.count <= Self.maxLength else { return nil }
        var parser = Parser(Array(pattern.unicodeScalars))
        guard let node = parser.alternation(), parser.atEnd else { return nil }
        var program: [Instruction] = []
        Self.emit(node, into: &program)
        program.append(.match)
        self.program = program
    }

    /// Whether the pattern occurs in `text` (anchors make it a whole-text match).
    public func matches(_ text: String) -> Bool {
        let scalars = Array(text.unicodeScalars)
        var current: [Int] = []
        var seen = [Int](repeating: -1, count: program.count)
        var generation = 0
        // Threads start afresh at every position: the search is unanchored unless `^` says so.
        for position in 0...scalars.count {
            generation += 1
            var next: [Int] = []
            for pc in current { add(pc, position, scalars.count, &next, &seen, generation) }
            add(0, position, scalars.count, &next, &seen, generation)
            current = []
            for pc in next {
                switch program[pc] {
                case .match:
                    return true
                case .scalar(let s):
                    if position < scalars.count, Self.foldings(scalars[position]).contains(where: { Self.foldings(s).contains($0) }) {
                        current.append(pc + 1)
                    }
                case .any:
                    if position < scalars.count, scalars[position] != "\n" { current.append(pc + 1) }
                case .set(let set):
                    if position < scalars.count, set.contains(scalars[position]) { current.append(pc + 1) }
                default:
                    break
                }
            }
        }
        return false
    }

    /// Follows jumps, splits and anchors from `pc` at `position`, collecting the threads that
    /// wait on a character (or match); each instruction once per position.
    private func add(_ pc: Int, _ position: Int, _ count: Int, _ list: inout [Int], _ seen: inout [Int], _ generation: Int) {
        var stack = [pc]
        while let pc = stack.popLast() {
            guard seen[pc] != generation else { continue }
            seen[pc] = generation
            switch program[pc] {
            case .jump(let to):
                stack.append(to)
            case .split(let first, let second):
                stack.append(second)
                stack.append(first)
            case .start:
                if position == 0 { stack.append(pc + 1) }
            case .end:
                if position == count { stack.append(pc + 1) }
            default:
                list.append(pc)
            }
        }
    }

    /// The scalar and its simple lower- and upper-case forms: enough for case-insensitivity.
    static func foldings(_ c: Unicode.Scalar) -> [Unicode.Scalar] {
        var out = [c]
        for form in [c.properties.lowercaseMapping, c.properties.uppercaseMapping] {
            let scalars = form.unicodeScalars
            if scalars.count == 1, let f = scalars.first, !out.contains(f) { out.append(f) }
        }
        return out
    }

    indirect enum Node {
        case scalar(Unicode.Scalar)
        case any
        case set(CharacterSet)
        case start
        case end
        case sequence([Node])
        case alternation([Node])
        case star(Node)
        case plus(Node)
        case optional(Node)
    }

    static func emit(_ node: Node, into p: inout [Instruction]) {
        switch node {
        case .scalar(let s): p.append(.scalar(s))
        case .any: p.append(.any)
        case .set(let set): p.append(.set(set))
        case .start: p.append(.start)
        case .end: p.append(.end)
        case .sequence(let parts):
            for part in parts { emit(part, into: &p) }
        case .alternation(let options):
            // split L1, next; L1: option; jump end; next: split ... ; last option.
            var jumps: [Int] = []
            for (i, option) in options.enumerated() {
                if i < options.count - 1 {
                    let split = p.count
                    p.append(.split(split + 1, -1))
                    emit(option, into: &p)
                    jumps.append(p.count)
                    p.append(.jump(-1))
                    p[split] = .split(split + 1, p.count)
                } else {
                    emit(option, into: &p)
                }
            }
            for j in jumps { p[j] = .jump(p.count) }
        case .star(let inner):
            let split = p.count
            p.append(.split(split + 1, -1))
            emit(inner, into: &p)
            p.append(.jump(split))
            p[split] = .split(split + 1, p.count)
        case .plus(let inner):
            let begin = p.count
            emit(inner, into: &p)
            p.append(.split(begin, p.count + 1))
        case .optional(let inner):
            let split = p.count
            p.append(.split(split + 1, -1))
            emit(inner, into: &p)
            p[split] = .split(split + 1, p.count)
        }
    }

    /// Recursive descent over the scalars; nil for anything outside the documented syntax.
    struct Parser {
        let s: [Unicode.Scalar]
        var i = 0
        var depth = 0

        init(_ s: [Unicode.Scalar]) { self.s = s }

        var atEnd: Bool { i == s.count }

        mutating func alternation() -> Node? {
            var options: [Node] = []
            while true {
                guard let seq = sequence() else { return nil }
                options.append(seq)
                guard i < s.count, s[i] == "|" else { break }
                i += 1
            }
            return options.count == 1 ? options[0] : .alternation(options)
        }

        mutating func sequence() -> Node? {
            var parts: [Node] = []
            while i < s.count, s[i] != "|", s[i] != ")" {
                guard var atom = atom() else { return nil }
                while i < s.count, "*+?".unicodeScalars.contains(s[i]) {
                    // A quantified anchor or a quantifier on a quantifier (other than the lazy
                    // `?`) is refused rather than guessed at.
                    if case .start = atom { return nil }
                    if case .end = atom { return nil }
                    switch s[i] {
                    case "*": atom = .star(atom)
                    case "+": atom = .plus(atom)
                    default: atom = .optional(atom)
                    }
                    i += 1
                    if i < s.count, s[i] == "?" { i += 1 }
                    if i < s.count, "*+".unicodeScalars.contains(s[i]) { return nil }
                }
                parts.append(atom)
            }
            return .sequence(parts)
        }

        mutating func atom() -> Node? {
            let c = s[i]
            i += 1
            switch c {
            case ".": return .any
            case "^": return .start
            case "$": return .end
            case "(":
                depth += 1
                guard depth <= 32 else { return nil }
                if i + 1 < s.count, s[i] == "?" {
                    guard s[i + 1] == ":" else { return nil }
                    i += 2
                }
                guard let inner = alternation(), i < s.count, s[i] == ")" else { return nil }
                i += 1
                depth -= 1
                return inner
            case "[": return set()
            case "\\": return escape().map { $0 }
            case "*", "+", "?", "{", "}", ")": return nil
            default: return .scalar(c)
            }
        }

        mutating func escape() -> Node? {
            guard i < s.count else { return nil }
            let c = s[i]
            i += 1
            switch c {
            case "d": return .set(CharacterSet(ranges: [48...57]))
            case "D": return .set(CharacterSet(negated: true, ranges: [48...57]))
            case "w": return .set(Self.word)
            case "W": return .set(CharacterSet(negated: true, ranges: Self.word.ranges))
            case "s": return .set(Self.space)
            case "S": return .set(CharacterSet(negated: true, ranges: Self.space.ranges))
            case "n": return .scalar("\n")
            case "t": return .scalar("\t")
            default:
                // Only punctuation may be escaped: `\b`, `\1` and the like mean something we do
                // not do.
                guard c.value < 128, !(c.properties.isAlphabetic || ("0"..."9").contains(c)) else { return nil }
                return .scalar(c)
            }
        }

        static let word = CharacterSet(ranges: [48...57, 65...90, 95...95, 97...122])
        static let space = CharacterSet(ranges: [9...10, 12...13, 32...32])

        mutating func set() -> Node? {
            var set = CharacterSet()
            if i < s.count, s[i] == "^" {
                set.negated = true
                i += 1
            }
            var first = true
            while i < s.count, s[i] != "]" || first {
                first = false
                var low: Unicode.Scalar = s[i]
                i += 1
                if low == "\\" {
                    guard let node = escape() else { return nil }
                    switch node {
                    case .scalar(let e): low = e
                    case .set(let inner) where !inner.negated:
                        set.ranges += inner.ranges
                        continue
                    default: return nil
                    }
                } else if low == "[" {
                    return nil // POSIX classes ([:alpha:]) are not taken
                }
                if i + 1 < s.count, s[i] == "-", s[i + 1] != "]" {
                    var high = s[i + 1]
                    i += 2
                    if high == "\\" {
                        guard case .scalar(let e)? = escape() else { return nil }
                        high = e
                    }
                    guard low.value <= high.value else { return nil }
                    set.ranges.append(low.value...high.value)
                } else {
                    set.ranges.append(low.value...low.value)
                }
            }
            guard i < s.count, s[i] == "]" else { return nil }
            i += 1
            return .set(set)
        }
    }
}
