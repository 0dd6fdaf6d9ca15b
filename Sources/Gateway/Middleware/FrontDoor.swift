import APITypes
import HTTPTypes
import Hummingbird

/// Every request of a listener passes here before the router: its path is normalised once
/// (`RequestPath`), resolved against the endpoint table, and the caller admitted for that
/// endpoint's access (`AccessControl`). The router then runs the same endpoint on the canonical
/// path, so no spelling of a path can reach a handler its caller may not call.
/// Refusals here are LXD errors: 400 bad path, 404 unknown route, 405 wrong method, 403.
struct FrontDoor<Inner: HTTPResponder>: HTTPResponder where Inner.Context == APIContext {
    typealias Context = APIContext
    let inner: Inner
    let endpoints: [Endpoint]
    let access: AccessControl
    /// Answers every request outside `endpoints` instead of 404/405 (a listener serving a part of the API).
    var unserved: APIError? = nil

    func respond(to request: Request, context: Context) async throws -> Response {
        var context = context
        let segments: [String]
        do {
            segments = try RequestPath.segments(of: request.uri.path)
            switch Endpoints.match(method: request.method.rawValue, segments: segments, in: endpoints) {
            case .found(let endpoint):
                try await access.admit(endpoint.access, context: &context)
                context.endpoint = endpoint
            case .methodNotAllowed(let allowed) where unserved == nil:
                var reply = Reply.error(APIError(405, "Method \(request.method.rawValue) is not allowed on \(RequestPath.path(segments)): use \(allowed.joined(separator: ", "))"))
                reply.headers[.allow] = allowed.joined(separator: ", ")
                return reply
            case .notFound, .methodNotAllowed:
                if let unserved { throw unserved }
                throw APIError.notFound("Unknown API route \(request.method.rawValue) \(RequestPath.path(segments)): see docs/rest-api.yaml for the routes this server has")
            }
        } catch {
            return Reply.error(Reply.apiError(from: error))
        }
        let canonical = RequestPath.path(segments)
        guard canonical != request.uri.path else { return try await inner.respond(to: request, context: context) }
        var head = request.head
        head.path = canonical + (request.uri.query.map { "?\($0)" } ?? "")
        return try await inner.respond(to: Request(head: head, body: request.body), context: context)
    }
}

/// Builds a router's responder behind a `FrontDoor`; hand this to `Application` and to the
/// websocket upgrade, so both paths go through the same door.
struct GuardedRouter: HTTPResponderBuilder {
    let router: Router<APIContext>
    let endpoints: [Endpoint]
    let access: AccessControl
    var unserved: APIError? = nil

    func buildResponder() -> FrontDoor<RouterResponder<APIContext>> {
        FrontDoor(inner: router.buildResponder(), endpoints: endpoints, access: access, unserved: unserved)
    }
}
