import APITypes
import Foundation
import HTTPTypes
import Hummingbird
import Instances
import NIOCore
import Operations

/// Sends requests to other members over mutual TLS (Cluster's `MemberClient`, conformed by the
/// agent). `timeout` nil waits as long as the answer takes.
public protocol MemberForwarder: Sendable {
    var localMemberID: Int64 { get }
    var localMemberName: String { get }
    /// False on a single member: nothing can live elsewhere, so no lookups are spent.
    var isClustered: Bool { get }
    /// Names of the other members.
    func otherMembers() async throws -> [String]
    func send(_ request: ForwardedRequest, to member: MemberReference, timeout: Duration?) async throws -> ForwardedResponse
    /// Opens a websocket on `member` (`target` is path and query, already escaped).
    func openWebSocket(target: String, to member: MemberReference) async throws -> any ForwardedWebSocket
}

/// The member-side end of a proxied websocket (exec's stdin/stdout/control on the owner).
public protocol ForwardedWebSocket: Sendable {
    /// Messages from the owner; finishes when it closes.
    var frames: AsyncStream<ForwardedFrame> { get }
    func send(_ frame: ForwardedFrame) async throws
    func close() async
    /// Sends a websocket ping without waiting; the answer moves `lastHeard`.
    func ping()
    /// When a frame of any kind (data, ping, pong) last arrived from the member.
    var lastHeard: ContinuousClock.Instant { get }
}

/// DESIGN "Forwarding": a forwarded request is answered locally, never forwarded again.
public enum Forwarding {
    /// `X-LXD-Forwarded`, the wire's marker (declared with `ForwardedRequest` in APITypes).
    public static let markerHeader = ForwardedRequest.markerHeader
    /// How long a member may take to report the live state of its instances in a list: a hung
    /// member must not hold up the whole list.
    public static let stateTimeout: Duration = .seconds(2)
    /// How long the owner may take to report one instance. Longer than a list's: a client reads
    /// one instance to decide what to do next (`delete --force` stops one that is not Stopped),
    /// and an owner busy deleting or creating dozens can take seconds, which is not Error.
    public static let instanceStateTimeout: Duration = .seconds(10)

    /// Where a request must go, decided from its method, path and `target` alone (pure).
    public enum Route: Equatable, Sendable {
        /// `/1.0/instances/NAME...`: wherever NAME lives.
        case instance(name: String, isStateRead: Bool)
        /// `/1.0/operations/ID` and `/wait`: the member whose id is in ID.
        case operation(memberID: Int64)
        /// `/1.0/operations/ID/websocket` of another member: proxied by the websocket route.
        case operationWebSocket(memberID: Int64)
        /// `POST /1.0/instances?target=MEMBER`.
        case create(target: String)
        case local
    }

    public static func route(method: String, path: String, target: String?) -> Route {
        // `path` is canonical (RequestPath): segments are already decoded, once.
        let segments = path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        guard segments.count >= 2, segments[0] == "1.0" else { return .local }
        switch segments[1] {
        case "instances":
            if segments.count == 2 {
                if method == "POST", let target, !target.isEmpty { return .create(target: target) }
                return .local
            }
            let read = method == "GET" && (segments.count == 3 || (segments.count == 4 && segments[3] == "state"))
            return .instance(name: segments[2], isStateRead: read)
        case "operations":
            guard segments.count >= 3, let id = OperationID.memberID(of: segments[2]) else { return .local }
            if segments.count == 4 && segments[3] == "websocket" { return .operationWebSocket(memberID: id) }
            return .operation(memberID: id)
        default:
            return .local
        }
    }

    /// The statuses reported by each owner replace the receiving member's (stale) view; an owner
    /// that did not answer leaves its instances in status Error, location kept.
    public static func merge(_ list: [Instance], answers: [String: [Instance]?], local: String, withState: Bool) -> [Instance] {
        list.map { instance in
            guard instance.location != local, let answer = answers[instance.location] else { return instance }
            guard let reported = answer else { return unreachable(instance) }
            guard var remote = reported.first(where: { $0.name == instance.name }) else { return unreachable(instance) }
            if !withState { remote.state = nil }
            return remote
        }
    }

    static func unreachable(_ instance: Instance) -> Instance {
        var i = instance
        i.setStatus(.error)
        i.state = nil
        return i
    }
}

/// Sends requests about another member's instance or operation to that member.
struct ForwardingMiddleware: RouterMiddleware {
    typealias Context = APIContext
    let forwarder: any MemberForwarder
    let instances: InstanceService
    let bodyLimit: Int

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard forwarder.isClustered else { return try await next(request, context) }
        let forwarded = request.headers[HTTPField.Name(Forwarding.markerHeader)!] != nil
        let method = request.method.rawValue
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
                guard let location = try await instances.lifecycle.location(of: name), location != forwarder.localMemberName else {
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
        let instance = Forwarding.unreachable(try await instances.lifecycle.get(name, withState: false))
        if path.hasSuffix("/state") {
            return Reply.sync(InstanceState(status: .error, pid: 0, processes: 0, memory: .init(usage: 0, usagePeak: 0, total: 0), cpu: .init(usage: 0)))
        }
        return Reply.sync(instance)
    }
}

extension APIRoutes {
    /// The instance list as the whole cluster sees it: one request per other member that owns
    /// listed instances (in parallel, `Forwarding.stateTimeout` each).
    func clusterWide(_ list: [Instance], withState: Bool, forwarded: Bool) async -> [Instance] {
        guard let forwarder, !forwarded else { return list }
        let local = forwarder.localMemberName
        let owners = Set(list.map(\.location).filter { $0 != local && !$0.isEmpty })
        guard !owners.isEmpty else { return list }
        let answers = await withTaskGroup(of: (String, [Instance]?).self) { group in
            for owner in owners {
                group.addTask {
                    let request = ForwardedRequest(method: "GET", target: "/1.0/instances?recursion=\(withState ? 2 : 1)",
                                                   headers: [(Forwarding.markerHeader, local)], body: [])
                    guard let answer = try? await forwarder.send(request, to: .name(owner), timeout: Forwarding.stateTimeout),
                          answer.status == 200,
                          let envelope = try? JSONDecoder().decode(APITypes.Response<[Instance]>.self, from: Data(answer.body)) else {
                        return (owner, nil)
                    }
                    return (owner, envelope.metadata ?? [])
                }
            }
            var all: [String: [Instance]?] = [:]
            for await (owner, instances) in group { all[owner] = .some(instances) }
            return all
        }
        return Forwarding.merge(list, answers: answers, local: local, withState: withState)
    }
}

extension APIRoutes {
    /// Every member's operations (DESIGN "Identity": listing operations asks every member);
    /// a member that does not answer within `Forwarding.stateTimeout` is left out.
    func clusterOperations(_ local: [APIOperation], forwarded: Bool) async -> [APIOperation] {
        guard let forwarder, forwarder.isClustered, !forwarded, let others = try? await forwarder.otherMembers() else { return local }
        let name = forwarder.localMemberName
        return await withTaskGroup(of: [APIOperation].self) { group in
            for member in others {
                group.addTask {
                    let request = ForwardedRequest(method: "GET", target: "/1.0/operations?recursion=1",
                                                   headers: [(Forwarding.markerHeader, name)], body: [])
                    guard let answer = try? await forwarder.send(request, to: .name(member), timeout: Forwarding.stateTimeout),
                          answer.status == 200,
                          let envelope = try? JSONDecoder().decode(APITypes.Response<[String: [APIOperation]]>.self, from: Data(answer.body)) else {
                        return []
                    }
                    return (envelope.metadata ?? [:]).values.flatMap { $0 }
                }
            }
            var all = local
            for await ops in group { all += ops }
            return all.sorted { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) }
        }
    }
}
