import APITypes
import Dqlite
import Foundation
import Instances
import LXDClient

/// A move's calls from its source to its target, over the members' mutual-TLS link.
extension MemberClient: MoveTransport {
    /// A prepare may fetch the image layer first; a part is at most 4 MiB (20 s allows 200 KB/s,
    /// and a cut link is noticed that soon); a hand-over restores the whole memory of the instance.
    static let movePrepareTimeout: Duration = .seconds(300)
    static let movePartTimeout: Duration = .seconds(20)
    static let moveHandOverTimeout: Duration = .seconds(300)

    public func prepareMove(_ request: MovePrepareRequest, on member: String) async throws -> MovePrepared {
        try await moveCall("POST", "/internal/moves", json: request, on: member, timeout: Self.movePrepareTimeout)
    }

    public func uploadMovePart(token: String, stream: MoveStream, round: Int, part: Int, last: Bool, bytes: [UInt8],
                               on member: String) async throws {
        let target = "/internal/moves/\(token)/\(stream.rawValue)?round=\(round)&part=\(part)&last=\(last ? 1 : 0)"
        let answer = try await send(
            ForwardedRequest(method: "PUT", target: target,
                             headers: [("Content-Type", "application/octet-stream"), (ForwardedRequest.markerHeader, localMemberName)],
                             body: bytes),
            to: .name(member), timeout: Self.movePartTimeout)
        try Self.requireSuccess(answer, member: member)
    }

    public func openPageStream(token: String, on member: String) async throws -> any PeerStream {
        let (peer, client) = try await resolve(.name(member))
        do {
            return WebSocketLink(try await client.transport.openWebSocket(
                HTTPRequest(.GET, "/internal/moves/\(token)/pages", headers: [(ForwardedRequest.markerHeader, localMemberName)]),
                masking: .unmasked))
        } catch {
            throw ClusterUseCaseError.unavailable("Cannot open the memory stream of a move on member \(peer.name): \(error)")
        }
    }

    public func handOverMove(_ request: MoveHandOverRequest, on member: String) async throws -> MoveHandOverReply {
        try await moveCall("POST", "/internal/moves/\(request.token)/handover", json: request, on: member, timeout: Self.moveHandOverTimeout)
    }

    public func discardMove(token: String, on member: String) async {
        do {
            let answer = try await send(
                ForwardedRequest(method: "DELETE", target: "/internal/moves/\(token)",
                                 headers: [(ForwardedRequest.markerHeader, localMemberName)], body: []),
                to: .name(member), timeout: .seconds(15))
            try Self.requireSuccess(answer, member: member)
        } catch {
            logger.warning("could not tell the target to drop a called-off move; it drops it by itself", metadata: ["member": "\(member)", "error": "\(error)"])
        }
    }

    private func moveCall<Body: Encodable, Answer: Decodable>(_ method: String, _ target: String, json: Body, on member: String,
                                                              timeout: Duration) async throws -> Answer {
        let answer = try await send(
            ForwardedRequest(method: method, target: target,
                             headers: [("Content-Type", "application/json"), (ForwardedRequest.markerHeader, localMemberName)],
                             body: Array(try JSONEncoder().encode(json))),
            to: .name(member), timeout: timeout)
        try Self.requireSuccess(answer, member: member)
        do {
            guard let metadata = try JSONDecoder().decode(SyncEnvelope<Answer>.self, from: Data(answer.body)).metadata else {
                throw ClusterUseCaseError.internal("no metadata")
            }
            return metadata
        } catch {
            throw ClusterUseCaseError.internal("Member \(member) answered \(target) with a body that does not decode: \(error)")
        }
    }

    /// A 2xx, or the member's error (LXD's shape) as `APIError` with its status.
    static func requireSuccess(_ answer: ForwardedResponse, member: String) throws {
        guard !(200..<300).contains(answer.status) else { return }
        throw failure(answer, member: member, status: answer.status)
    }
}
