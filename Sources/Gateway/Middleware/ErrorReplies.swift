import APITypes
import ClusterDB
import HTTPTypes
import Hummingbird

/// The router's first middleware: every error a handler throws becomes LXD's error reply here
/// (handlers just throw), and an error answer from below in another shape (a refused websocket
/// upgrade, Hummingbird's own errors) is given LXD's shape. It also checks that the router ran
/// the endpoint the front door authorized.
struct ErrorReplies: RouterMiddleware {
    typealias Context = APIContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let endpoint = context.endpoint, context.endpointPath == endpoint.path else {
            // Unreachable while the table and the router agree (checked when the router is built).
            return Reply.error(.internal("Routing mismatch for \(request.method.rawValue) \(request.uri.path): the server's endpoint table and router disagree"))
        }
        do {
            let response = try await next(request, context)
            guard response.status.code >= 400, response.headers[.contentType] != "application/json" else { return response }
            return Reply.error(APIError(response.status.code, response.status.reasonPhrase))
        } catch {
            return Reply.error(Reply.apiError(from: error))
        }
    }
}

extension Reply {
    /// Maps any error to the API boundary. An `APIError` is already a wire error and keeps its
    /// status (Gateway's own refusals, a member's answer relayed as it was); a use case's error
    /// gets the status of its kind; anything else is a 500 that still carries its message.
    static func apiError(from error: any Error) -> APIError {
        if let e = error as? APIError { return e }
        if let e = error as? any KindedError { return APIError(e.kind.httpStatus, e.message) }
        if let e = error as? ClusterDBError { return APIError(e.kind.httpStatus, e.description) }
        if let e = error as? any APIErrorConvertible { return e.apiError }
        // Hummingbird's own refusals (a body over its limit, a bad upgrade) keep their status.
        if let e = error as? HTTPError { return APIError(e.status.code, e.body ?? e.status.reasonPhrase) }
        return APIError(500, "\(error)")
    }
}

extension ErrorKind {
    /// The one mapping from a use case's kind of failure to the HTTP status clients see.
    var httpStatus: Int {
        switch self {
        case .invalid: 400
        case .forbidden: 403
        case .notFound: 404
        case .conflict: 409
        case .tooLarge: 413
        case .internal: 500
        case .unsupported: 501
        case .unavailable: 503
        }
    }
}

/// Gateway's own errors that carry their reply (a refused event stream).
protocol APIErrorConvertible: Error {
    var apiError: APIError { get }
}

extension ClusterDBError {
    /// Database refusals that reach the API: what the caller asked for is missing, taken or
    /// malformed, or the cluster is busy electing (retry); only a broken row is internal.
    var kind: ErrorKind {
        switch self {
        case .notFound: .notFound
        case .alreadyExists, .exhausted: .conflict
        case .ambiguous, .invalidArgument: .invalid
        case .outcomeUnknown, .retriesExhausted, .schemaTooNew: .unavailable
        case .corrupt, .migrationFailed: .internal
        }
    }
}
