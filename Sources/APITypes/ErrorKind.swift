/// What kind of failure a use case reports, in the domain's terms. Use cases throw errors of
/// their own that carry a kind (`KindedError`); only Gateway decides which HTTP status each kind
/// is, so modules below it need not know HTTP.
public enum ErrorKind: String, Sendable, CaseIterable {
    /// What was asked for does not exist (an instance, image, member, group).
    case notFound
    /// It exists already, or the state of things refuses the change (a name taken, no member fits).
    case conflict
    /// The request itself is wrong: a bad name, an unknown config key, a value out of range.
    case invalid
    /// The caller may not do this.
    case forbidden
    /// Larger than this member accepts.
    case tooLarge
    /// Not now: the cluster or a member cannot answer or is busy; a retry may work.
    case unavailable
    /// This build does not do that (yet).
    case unsupported
    /// A fault on this side.
    case `internal`
}

/// An error that says what kind of failure it is, and in `message` what failed, on what, and
/// what to do next (shown to the operator unchanged).
public protocol KindedError: Error, CustomStringConvertible, Sendable {
    var kind: ErrorKind { get }
    var message: String { get }
    init(_ kind: ErrorKind, _ message: String)
}

extension KindedError {
    public var description: String { message }

    public static func notFound(_ message: String) -> Self { Self(.notFound, message) }
    public static func conflict(_ message: String) -> Self { Self(.conflict, message) }
    public static func invalid(_ message: String) -> Self { Self(.invalid, message) }
    public static func forbidden(_ message: String) -> Self { Self(.forbidden, message) }
    public static func tooLarge(_ message: String) -> Self { Self(.tooLarge, message) }
    public static func unavailable(_ message: String) -> Self { Self(.unavailable, message) }
    public static func unsupported(_ message: String) -> Self { Self(.unsupported, message) }
    public static func `internal`(_ message: String) -> Self { Self(.internal, message) }
}
