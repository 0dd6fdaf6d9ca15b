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
