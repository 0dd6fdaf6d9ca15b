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
    /// Maps any error to the API boundary: our `APIError`s keep their status, anything else is a 500
    /// that still carries the underlying message.
    static func apiError(from error: any Error) -> APIError {
        if let e = error as? APIError { return e }
        if let e = error as? any APIErrorConvertible { return e.apiError }
        // Hummingbird's own refusals (a body over its limit, a bad upgrade) keep their status.
        if let e = error as? HTTPError { return APIError(e.status.code, e.body ?? e.status.reasonPhrase) }
        return APIError(500, "\(error)")
    }
}

/// Errors of lower layers that know their API status.
public protocol APIErrorConvertible: Error {
    var apiError: APIError { get }
}

/// Database refusals that reach the API: what the caller asked for is missing, taken or
/// malformed (4xx), or the cluster is busy electing (503, retry); only a broken row is a 500.
extension ClusterDBError: APIErrorConvertible {
    public var apiError: APIError {
        switch self {
        case .notFound: .notFound(description)
        case .alreadyExists, .exhausted: .conflict(description)
        case .ambiguous, .invalidArgument: .badRequest(description)
        case .outcomeUnknown, .retriesExhausted, .schemaTooNew: .unavailable(description)
        case .corrupt, .migrationFailed: .internal(description)
        }
    }
}
