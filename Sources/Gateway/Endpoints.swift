/// Who may call an endpoint. Authorization is decided on the endpoint a request resolves to
/// (after `RequestPath` has normalised its path), never on the path as spelled.
public enum Access: String, Sendable, CaseIterable {
    /// Anyone, untrusted HTTPS callers included: who the server is, presenting a trust token,
    /// a member joining with its token.
    case anyone
    /// A trusted client certificate (members' certificates are in the trust store too) or the unix socket.
    case client
    /// Another member of this cluster (its certificate is checked against the member list held
    /// in memory, not the trust store) or the unix socket.
    case member
    /// The unix socket only: changes to this member's own place in a cluster.
    case local
}

/// One route the API serves: method, path pattern (`{name}` is one segment, as in OpenAPI and
/// Hummingbird's route descriptions) and who may call it.
public struct Endpoint: Hashable, Sendable, CustomStringConvertible {
    public let method: String
    public let path: String
    public let access: Access
    /// A websocket (its GET upgrades the connection).
    public let webSocket: Bool

    public init(_ method: String, _ path: String, _ access: Access, webSocket: Bool = false) {
        self.method = method
        self.path = path
        self.access = access
        self.webSocket = webSocket
    }

    public var description: String { "\(method) \(path)" }

    /// The pattern's segments ("" is not one: patterns are written canonical).
    var segments: [Substring] { path.split(separator: "/") }
}

/// What a normalised path and a method resolve to.
public enum EndpointMatch: Equatable, Sendable {
    case found(Endpoint)
    /// The path exists with other methods (LXD answers 405).
    case methodNotAllowed(allowed: [String])
    case notFound
}

/// Every route of the API, in one table: the router is checked against it when it is built,
/// docs/rest-api.yaml is checked against it by a test, and the access each route requires is
/// read from it (so a route cannot be added without saying who may call it).
public enum Endpoints {
    public static let all: [Endpoint] = [
        // The server.
        .init("GET", "/", .anyone),
        .init("GET", "/1.0", .anyone),
        .init("PUT", "/1.0", .client),
        .init("PATCH", "/1.0", .client),
        .init("GET", "/1.0/events", .client, webSocket: true),

        // Instances.
        .init("GET", "/1.0/instances", .client),
        .init("POST", "/1.0/instances", .client),
        .init("GET", "/1.0/instances/{name}", .client),
        .init("PUT", "/1.0/instances/{name}", .client),
        .init("PATCH", "/1.0/instances/{name}", .client),
        // A rename, or a move to the member in ?target=.
        .init("POST", "/1.0/instances/{name}", .client),
        .init("DELETE", "/1.0/instances/{name}", .client),
        .init("GET", "/1.0/instances/{name}/state", .client),
        .init("PUT", "/1.0/instances/{name}/state", .client),
        .init("POST", "/1.0/instances/{name}/exec", .client),
        .init("GET", "/1.0/instances/{name}/console", .client),
        .init("POST", "/1.0/instances/{name}/console", .client),
        .init("DELETE", "/1.0/instances/{name}/console", .client),
        .init("GET", "/1.0/instances/{name}/logs", .client),
        .init("GET", "/1.0/instances/{name}/logs/{file}", .client),
        .init("GET", "/1.0/instances/{name}/files", .client),
        .init("POST", "/1.0/instances/{name}/files", .client),

        // Images.
        .init("GET", "/1.0/images", .client),
        .init("POST", "/1.0/images", .client),
        .init("GET", "/1.0/images/aliases", .client),
        .init("POST", "/1.0/images/aliases", .client),
        .init("GET", "/1.0/images/aliases/{alias}", .client),
        .init("DELETE", "/1.0/images/aliases/{alias}", .client),
        .init("GET", "/1.0/images/{fingerprint}", .client),
        .init("DELETE", "/1.0/images/{fingerprint}", .client),
        // Members fetch a layer's original tarball from the member that has it.
        .init("GET", "/1.0/images/{fingerprint}/export", .member),

        // Operations.
        .init("GET", "/1.0/operations", .client),
        .init("GET", "/1.0/operations/{id}", .client),
        .init("GET", "/1.0/operations/{id}/wait", .client),
        .init("GET", "/1.0/operations/{id}/websocket", .client, webSocket: true),

        // Trust.
        .init("GET", "/1.0/certificates", .client),
        // Untrusted callers may present a trust token here (the handler checks it).
        .init("POST", "/1.0/certificates", .anyone),
        .init("GET", "/1.0/certificates/{fingerprint}", .client),
        .init("DELETE", "/1.0/certificates/{fingerprint}", .client),

        // Cluster.
        .init("GET", "/1.0/cluster", .client),
        .init("PUT", "/1.0/cluster", .local),
        .init("GET", "/1.0/cluster/members", .client),
        .init("POST", "/1.0/cluster/members", .client),
        .init("GET", "/1.0/cluster/members/{member}", .client),
        .init("PUT", "/1.0/cluster/members/{member}", .client),
        .init("PATCH", "/1.0/cluster/members/{member}", .client),
        .init("DELETE", "/1.0/cluster/members/{member}", .client),
        .init("POST", "/1.0/cluster/members/{member}/state", .client),
        .init("GET", "/1.0/cluster/resources", .client),

        // Scheduling.
        .init("GET", "/1.0/placement-groups", .client),
        .init("POST", "/1.0/placement-groups", .client),
        .init("GET", "/1.0/placement-groups/{group}", .client),
        .init("DELETE", "/1.0/placement-groups/{group}", .client),

        // Between members. A joining member is not trusted yet: its token is the credential.
        .init("POST", "/internal/cluster/accept", .anyone),
        .init("POST", "/internal/cluster/heartbeat", .member),
        .init("GET", "/internal/database", .member, webSocket: true),
        .init("POST", "/internal/instances/materialise", .member),
        .init("POST", "/internal/moves", .member),
        .init("PUT", "/internal/moves/{token}/{stream}", .member),
        .init("GET", "/internal/moves/{token}/pages", .member, webSocket: true),
        .init("POST", "/internal/moves/{token}/handover", .member),
        .init("DELETE", "/internal/moves/{token}", .member),
    ]

    /// The endpoint `method` and the normalised `segments` resolve to. A literal segment beats a
    /// parameter at the same place (`/1.0/images/aliases` is not the image "aliases"), as in the router.
    public static func match(method: String, segments: [String], in table: [Endpoint] = all) -> EndpointMatch {
        var best: [Endpoint] = []
        var bestScore: [Bool] = []
        for endpoint in table {
            let pattern = endpoint.segments
            guard pattern.count == segments.count else { continue }
            var literal: [Bool] = []
            var matches = true
            for (p, s) in zip(pattern, segments) {
                if p.hasPrefix("{") {
                    literal.append(false)
                } else if p == s {
                    literal.append(true)
                } else {
                    matches = false
                    break
                }
            }
            guard matches else { continue }
            if best.isEmpty || Self.beats(literal, bestScore) {
                best = [endpoint]
                bestScore = literal
            } else if literal == bestScore {
                best.append(endpoint)
            }
        }
        guard !best.isEmpty else { return .notFound }
        if let hit = best.first(where: { $0.method == method }) { return .found(hit) }
        return .methodNotAllowed(allowed: best.map(\.method))
    }

    /// Literal segments earlier in the path win, as a trie router resolves them.
    private static func beats(_ a: [Bool], _ b: [Bool]) -> Bool {
        for (x, y) in zip(a, b) where x != y { return x }
        return false
    }
}
