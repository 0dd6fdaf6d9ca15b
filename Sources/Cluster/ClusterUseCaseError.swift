import APITypes

/// Why a cluster use case (membership, trust, member-to-member calls) refused or failed: the
/// kind of failure (Gateway turns it into an HTTP status) and the message for the operator.
/// A member's own answer relayed by `MemberClient` stays an `APIError` with the member's status.
public struct ClusterUseCaseError: KindedError, Equatable {
    public let kind: ErrorKind
    public let message: String
    public init(_ kind: ErrorKind, _ message: String) { (self.kind, self.message) = (kind, message) }
}
