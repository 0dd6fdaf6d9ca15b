/// Parsing of LXD-style quantities: byte sizes ("64MiB", "1GB", "512") and cpu values.
public enum Quantity {
    public enum Error: Swift.Error, CustomStringConvertible, Equatable {
        case invalidSize(String)
        case invalidCPU(String)
        case invalidInteger(String)

        public var description: String {
            switch self {
            case .invalidSize(let s): "invalid size \"\(s)\": use a number with an optional unit such as 64MiB, 1GiB, 500MB"
            case .invalidCPU(let s): "invalid cpu value \"\(s)\": use a number of cpus (1, 2, 0.5) or a cpu set (0-1,3)"
            case .invalidInteger(let s): "invalid integer \"\(s)\": use a positive whole number"
            }
        }
    }

    private static let units: [(String, Int64)] = [
        ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("TiB", 1 << 40), ("PiB", 1 << 50),
        ("kB", 1_000), ("KB", 1_000), ("MB", 1_000_000), ("GB", 1_000_000_000), ("TB", 1_000_000_000_000),
        ("PB", 1_000_000_000_000_000), ("B", 1),
    ]

    /// Bytes from a size with an optional decimal or binary unit.
    public static func bytes(_ text: String) throws(Error) -> Int64 {
        let s = text.trimmingSpaces()
        var numberPart = s
        var multiplier: Int64 = 1
        for (suffix, m) in units where s.hasSuffix(suffix) {
            numberPart = String(s.dropLast(suffix.count)).trimmingSpaces()
            multiplier = m
            break
        }
        guard !numberPart.isEmpty, numberPart.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
              let value = Double(numberPart), value >= 0 else {
            throw .invalidSize(text)
        }
        let result = value * Double(multiplier)
        guard result <= Double(Int64.max / 2) else { throw .invalidSize(text) }
        return Int64(result.rounded(.down))
    }

    /// A cpu limit: a count of cpus (possibly fractional, as an allowance) or an explicit set to pin to.
    public enum CPU: Equatable, Sendable {
        case count(Double)
        case set([Int])

        /// The allowance in cpus, used for scheduling and cfs quota.
        public var cores: Double {
            switch self {
            case .count(let c): c
            case .set(let s): Double(s.count)
            }
        }
    }

    public static func cpu(_ text: String) throws(Error) -> CPU {
        let s = text.trimmingSpaces()
        if s.contains("-") || s.contains(",") {
            var cpus: [Int] = []
            for part in s.split(separator: ",", omittingEmptySubsequences: false) {
                let bounds = part.split(separator: "-", omittingEmptySubsequences: false)
                guard bounds.count == 1 || bounds.count == 2,
                      let lo = Int(bounds[0]), lo >= 0,
                      let hi = bounds.count == 2 ? Int(bounds[1]) : lo, hi >= lo, hi < 4096 else {
                    throw .invalidCPU(text)
                }
                cpus.append(contentsOf: lo...hi)
            }
            return .set(Array(Set(cpus)).sorted())
        }
        guard let value = Double(s), value > 0, value <= 4096, s.allSatisfy({ $0.isNumber || $0 == "." }) else {
            throw .invalidCPU(text)
        }
        return .count(value)
    }

    public static func positiveInteger(_ text: String) throws(Error) -> Int64 {
        guard let v = Int64(text.trimmingSpaces()), v > 0 else { throw .invalidInteger(text) }
        return v
    }
}

extension String {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while s.first?.isWhitespace == true { s = s.dropFirst() }
        while s.last?.isWhitespace == true { s = s.dropLast() }
        return String(s)
    }
}
