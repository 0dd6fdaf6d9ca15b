/// A request as one member sends it on to another (path and query already escaped): Gateway
/// forwards a client's request in this shape, Cluster's member client puts it on the wire.
public struct ForwardedRequest: Sendable {
    /// The header a member adds to a request it sends on: the receiver answers it locally and
    /// never forwards it again (DESIGN "Forwarding"); its value is the sending member's name.
    public static let markerHeader = "X-LXD-Forwarded"

    public var method: String
    public var target: String
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public init(method: String, target: String, headers: [(name: String, value: String)], body: [UInt8]) {
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
    }
}

/// The owning member's answer, passed back unchanged (errors included).
public struct ForwardedResponse: Sendable {
    public var status: Int
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public init(status: Int, headers: [(name: String, value: String)], body: [UInt8]) {
        self.status = status
        self.headers = headers
        self.body = body
    }
}

/// Which member a request goes to.
public enum MemberReference: Sendable, Equatable {
    case name(String)
    case id(Int64)
}

/// One websocket message, as relayed between members.
public enum ForwardedFrame: Sendable, Equatable {
    case binary([UInt8])
    case text(String)
}
