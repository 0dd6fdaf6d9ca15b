/// LXD's rules for instance names: they become hostnames.
public enum InstanceName {
    public static func validate(_ name: String) throws(NameError) {
        guard !name.isEmpty, name.utf8.count <= 63 else { throw .length }
        guard name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }) else { throw .characters }
        guard let first = name.first, !first.isNumber, first != "-" else { throw .start }
        guard name.last != "-" else { throw .end }
    }

    public enum NameError: Error, CustomStringConvertible, Equatable {
        case length, characters, start, end

        public var description: String {
            switch self {
            case .length: "Invalid instance name: it must be 1 to 63 characters long"
            case .characters: "Invalid instance name: only ASCII letters, digits and hyphens are allowed"
            case .start: "Invalid instance name: it must not start with a digit or a hyphen"
            case .end: "Invalid instance name: it must not end with a hyphen"
            }
        }
    }
}

/// Rules for cluster member names: they name cgroups, directories, operation locations and log
/// fields on every member, so only what is safe in all of those: 1 to 63 ASCII letters, digits,
/// '-', '_' and '.', starting with a letter or digit.
public enum MemberName {
    public static func validate(_ name: String) throws(NameError) {
        guard !name.isEmpty, name.utf8.count <= 63 else { throw .length(name) }
        guard name.utf8.allSatisfy(allowed.contains) else { throw .characters(name) }
        guard let first = name.utf8.first, first != UInt8(ascii: "-"), first != UInt8(ascii: "_"), first != UInt8(ascii: ".") else { throw .start(name) }
    }

    private static let allowed: Set<UInt8> = Set(
        Array(UInt8(ascii: "a")...UInt8(ascii: "z")) + Array(UInt8(ascii: "A")...UInt8(ascii: "Z")) + Array(UInt8(ascii: "0")...UInt8(ascii: "9"))
            + "-_.".utf8)

    public enum NameError: Error, CustomStringConvertible, Equatable {
        case length(String), characters(String), start(String)

        public var description: String {
            switch self {
            case .length(let n): "Invalid member name \(n.debugDescription): it must be 1 to 63 characters long"
            case .characters(let n): "Invalid member name \(n.debugDescription): only ASCII letters, digits, '-', '_' and '.' are allowed"
            case .start(let n): "Invalid member name \(n.debugDescription): it must start with a letter or a digit"
            }
        }
    }
}
