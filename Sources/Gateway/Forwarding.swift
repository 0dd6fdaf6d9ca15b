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

    /// Whether the request creates instances (`POST /1.0/instances`): its body may be a copy,
    /// which runs where the copied instance lives (`copySource`).
    public static func isCreate(method: String, path: String) -> Bool {
        method == "POST" && path.split(separator: "/", omittingEmptySubsequences: true) == ["1.0", "instances"]
    }

    /// The instance a create body copies (`source.type` "copy"), or nil (a launch, or a body
    /// that is not JSON: the route refuses it).
    public static func copySource(body: [UInt8]) -> String? {
        struct Peek: Decodable {
            struct Source: Decodable { var type: String?; var source: String? }
            var source: Source?
        }
        guard let peek = try? JSONDecoder().decode(Peek.self, from: Data(body)), peek.source?.type == "copy",
              let name = peek.source?.source, !name.isEmpty else { return nil }
        return name
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
