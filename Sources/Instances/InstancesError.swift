import APITypes

/// Why an instance, image or placement use case refused or failed: the kind of failure (Gateway
/// turns it into an HTTP status) and the message for the operator. Made with `KindedError`'s
/// constructors: `InstancesError.notFound("…")`.
public struct InstancesError: KindedError, Equatable {
    public let kind: ErrorKind
    public let message: String
    public init(_ kind: ErrorKind, _ message: String) { (self.kind, self.message) = (kind, message) }
}
