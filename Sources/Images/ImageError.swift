import Glibc

/// Why an image could not be read, checked or stored.
///
/// Messages name what failed and on what; the API layer maps every case of an
/// image the client sent (`invalidImage`, `tooLarge`, ...) to 400 and I/O
/// failures on this member to 500.
public enum ImageError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The archive is not a well-formed tar (bad checksum, bad number field, truncated).
    case corruptArchive(String)
    /// The archive is well-formed but breaks a rule of our image format.
    case invalidImage(String)
    /// The compressed stream is damaged or uses an unsupported feature.
    case decompression(String)
    /// The image is bigger than the configured limit.
    case tooLarge(limit: Int64)
    /// The tarball's sha256 differs from the fingerprint it was fetched under.
    case fingerprintMismatch(expected: String, actual: String)
    /// A system call on this member failed.
    case io(operation: String, path: String, errno: Int32)

    public var description: String {
        switch self {
        case .corruptArchive(let why):
            return "corrupt image tarball: \(why)"
        case .invalidImage(let why):
            return why
        case .decompression(let why):
            return "cannot decompress image tarball: \(why)"
        case .tooLarge(let limit):
            return "image is larger than the limit of \(limit) bytes; raise the limit or use a smaller image"
        case .fingerprintMismatch(let expected, let actual):
            return "image tarball has fingerprint \(actual), expected \(expected); the copy is damaged, fetch it again"
        case .io(let operation, let path, let code):
            return "\(operation) \(path): \(String(cString: strerror(code)))"
        }
    }
}
