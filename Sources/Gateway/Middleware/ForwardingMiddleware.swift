import APITypes
import HTTPTypes
import Hummingbird
import Instances
import NIOCore

/// Sends requests about another member's instance or operation to that member.
struct ForwardingMiddleware: RouterMiddleware {
    typealias Context = APIContext
    let forwarder: any MemberForwarder
    let instances: any InstanceLifecycleUseCases
    let bodyLimit: Int

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard forwarder.isClustered else { return try await next(request, context) }
        let forwarded = request.headers[HTTPField.Name(Forwarding.markerHeader)!] != nil
        let method = request.method.rawValue
        var request = request
        if Forwarding.isCreate(method: method, path: request.uri.path) {
            // A copy runs on the member of the instance it copies, whatever `target` says (the
            // copy's own member): the source's files are read there.
            do {
                let body: ByteBuffer
                do { body = try await request.collectBody(upTo: bodyLimit) } catch {
                    throw APIError.tooLarge("Request body is larger than \(bodyLimit) bytes")
                }
                if let source = Forwarding.copySource(body: Array(buffer: body)) {
                    guard let location = try await instances.location(of: source), location != forwarder.localMemberName else {
                        return try await next(request, context)
                    }
                    return try await forward(request, to: .name(location), forwarded: forwarded, what: "instance \(source) on member \(location)")
                }
            } catch {
                return Reply.error(Reply.apiError(from: error))
            }
        }
        let route = Forwarding.route(method: method, path: request.uri.path, target: request.uri.queryParameters.get("target").map { String($0) })
        do {
            switch route {
            case .local:
                return try await next(request, context)
            case .create(let target):
                // `@group` targets are placed by the scheduler here, not forwarded.
                guard target != forwarder.localMemberName, !target.hasPrefix("@") else { return try await next(request, context) }
                return try await forward(request, to: .name(target), forwarded: forwarded, what: "creation on member \(target)")
            case .operation(let id), .operationWebSocket(let id):
                guard id != forwarder.localMemberID, id != 0 else { return try await next(request, context) }
                // The upgrade itself is proxied by the websocket route.
                if case .operationWebSocket = route { return try await next(request, context) }
                return try await forward(request, to: .id(id), forwarded: forwarded, what: "operation")
            case .instance(let name, let isStateRead):
                guard let location = try await instances.location(of: name), location != forwarder.localMemberName else {
                    return try await next(request, context)
                }
                if !isStateRead {
                    return try await forward(request, to: .name(location), forwarded: forwarded, what: "instance \(name) on member \(location)")
                }
                if forwarded { throw Self.refusal("instance \(name) on member \(location)") }
                do {
                    return try await relay(request, to: .name(location), timeout: Forwarding.instanceStateTimeout)
                } catch {
                    context.logger.notice("owner did not report the instance: answering status Error", metadata: [
                        "instance": "\(name)", "member": "\(location)", "error": "\(error)"])
                    return try await unreachableAnswer(name: name, path: request.uri.path, location: location)
                }
            }
        } catch {
            return Reply.error(Reply.apiError(from: error))
        }
    }

    static func refusal(_ what: String) -> APIError {
        .unavailable("The request about \(what) was already forwarded once and this member does not own it: retry (the owner may have changed)")
    }

    private func forward(_ request: Request, to member: MemberReference, forwarded: Bool, what: String) async throws -> Response {
        if forwarded { throw Self.refusal(what) }
        do {
            return try await relay(request, to: member, timeout: nil)
        } catch let error as APIError {
            throw error
        } catch let error as any KindedError {
            // The forwarder's own refusal (no such member, no certificate for it yet).
            throw error
        } catch {
            throw APIError.unavailable("Cannot reach the member owning \(what): \(error)")
        }
    }

    private func relay(_ request: Request, to member: MemberReference, timeout: Duration?) async throws -> Response {
        var request = request
        let body: ByteBuffer
        do {
            body = try await request.collectBody(upTo: bodyLimit)
        } catch {
            throw APIError.tooLarge("Request body is larger than \(bodyLimit) bytes")
        }
        var headers: [(name: String, value: String)] = []
        for field in request.headers {
            let name = field.name.canonicalName
            if name == "content-type" || name.hasPrefix("x-lxd-") { headers.append((field.name.rawName, field.value)) }
        }
        headers.append((Forwarding.markerHeader, forwarder.localMemberName))
        let target = request.uri.query.map { "\(request.uri.path)?\($0)" } ?? request.uri.path
        let answer = try await forwarder.send(
            ForwardedRequest(method: request.method.rawValue, target: target, headers: headers, body: Array(buffer: body)),
            to: member, timeout: timeout)
        var fields = HTTPFields()
        for (name, value) in answer.headers {
            let lower = name.lowercased()
            guard !["content-length", "connection", "transfer-encoding", "date", "server", "keep-alive"].contains(lower),
                  let field = HTTPField.Name(name) else { continue }
            fields.append(HTTPField(name: field, value: value))
        }
        return Response(status: .init(code: answer.status), headers: fields, body: .init(byteBuffer: ByteBuffer(bytes: answer.body)))
    }

    /// The owner did not answer a state read: the database's view, in status Error.
    private func unreachableAnswer(name: String, path: String, location: String) async throws -> Response {
        let instance = Forwarding.unreachable(try await instances.get(name, withState: false))
        if path.hasSuffix("/state") {
            return Reply.sync(InstanceState(status: .error, pid: 0, processes: 0, memory: .init(usage: 0, usagePeak: 0, total: 0), cpu: .init(usage: 0)))
        }
        return Reply.sync(instance)
    }
}

