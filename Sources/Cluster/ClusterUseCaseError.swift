import APITypes

/// Why a cluster use case (membership, trust, member-to-member calls) refused or failed: the
/// kind of failure (Gateway turns it into an HTTP status) and the message for the operator.
/// A member's own answer relayed by `MemberClient` stays an `APIError` with the member's status.
public struct ClusterUseCaseError: KindedError, Equatable {
    public let kind: ErrorKind
    public let message: String

    public init(_ kind: ErrorKind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public static func notFound(_ m: String) -> Self { .init(.notFound, m) }
    public static func conflict(_ m: String) -> Self { .init(.conflict, m) }
    public static func invalid(_ m: String) -> Self { .init(.invalid, m) }
    public static func forbidden(_ m: String) -> Self { .init(.forbidden, m) }
    public static func unavailable(_ m: String) -> Self { .init(.unavailable, m) }
    public static func `internal`(_ m: String) -> Self { .init(.internal, m) }
}
