import APITypes
import Foundation
@testable import Gateway
import Synchronization
import Testing

/// Evacuate and restore as `MemberEvacuation` answers them: members m1 (this one, as
/// FakeForwarder names itself), m2 ONLINE, m3 OFFLINE, m4 EVACUATED.
final class FakeMemberState: MemberStateService, Sendable {
    let started = Mutex<[(String, ClusterMemberStatePost)]>([])
    static let states = ["m1": "ONLINE", "m2": "ONLINE", "m3": "OFFLINE", "m4": "EVACUATED"]

    func checkStateChange(member: String, _ post: ClusterMemberStatePost) async throws {
        guard let state = Self.states[member] else { throw APIError.notFound("Cluster member \"\(member)\" not found") }
        switch (post.action, state) {
        case ("evacuate", "EVACUATED"): throw APIError.badRequest("Member \(member) is already evacuated")
        case ("evacuate", "OFFLINE"): throw APIError.badRequest("Member \(member) is OFFLINE")
        case ("restore", let s) where s != "EVACUATED": throw APIError.badRequest("Member \(member) is not evacuated")
        case ("evacuate", _), ("restore", _): return
        default: throw APIError.badRequest("Unknown action \"\(post.action)\"")
        }
    }

    func changeState(member: String, _ post: ClusterMemberStatePost) async throws -> APIOperation {
        started.withLock { $0.append((member, post)) }
        return APIOperation(id: "op-\(member)", class: "task", description: "Evacuating cluster member", createdAt: "", updatedAt: "",
                            status: .running, resources: [:], metadata: nil, location: member)
    }
}

@Suite struct MemberStateRouteTests {
    @Test func evacuatingThisMemberStartsAnOperationHere() async throws {
        var h = RouteHarness()
        let fake = FakeMemberState()
        h.memberState = fake
        h.forwarder = FakeForwarder()
        let r = try await h.call(.post, "/1.0/cluster/members/m1/state", body: #"{"action": "evacuate", "mode": "stop"}"#)
        #expect(r.status == 202)
        #expect(r.headers[.location] == "/1.0/operations/op-m1")
        let started = fake.started.withLock { $0 }
        #expect(started.count == 1 && started.first?.0 == "m1" && started.first?.1 == ClusterMemberStatePost(action: "evacuate", mode: "stop"))
        #expect(h.forwarder!.sent.withLock { $0 }.isEmpty)
    }

    @Test func anotherMembersStateChangeIsForwardedToIt() async throws {
        var h = RouteHarness()
        let fake = FakeMemberState()
        h.memberState = fake
        let answer = ForwardedResponse(status: 202, headers: [("Content-Type", "application/json"), ("Location", "/1.0/operations/x")],
                                       body: Array(#"{"type":"async","operation":"/1.0/operations/x"}"#.utf8))
        h.forwarder = FakeForwarder(answer: answer)
        let r = try await h.call(.post, "/1.0/cluster/members/m2/state", body: #"{"action": "evacuate"}"#)
        #expect(r.status == 202)
        #expect(r.headers[.location] == "/1.0/operations/x")
        let sent = h.forwarder!.sent.withLock { $0 }
        #expect(sent.count == 1)
        #expect(sent.first?.0.target == "/1.0/cluster/members/m2/state" && sent.first?.1 == .name("m2"))
        #expect(try JSONDecoder().decode(ClusterMemberStatePost.self, from: Data(sent.first!.0.body)) == ClusterMemberStatePost(action: "evacuate"))
        #expect(fake.started.withLock { $0 }.isEmpty)
    }

    @Test func refusalsAreAnsweredBeforeAnythingIsForwarded() async throws {
        var h = RouteHarness()
        h.memberState = FakeMemberState()
        h.forwarder = FakeForwarder()
        for (member, body, status) in [("m3", "evacuate", 400), ("m4", "evacuate", 400), ("m2", "restore", 400),
                                       ("m9", "evacuate", 404), ("m2", "dance", 400)] {
            let r = try await h.call(.post, "/1.0/cluster/members/\(member)/state", body: "{\"action\": \"\(body)\"}")
            #expect(r.status == status, "\(body) \(member)")
            _ = try r.error()
        }
        let missing = try await h.call(.post, "/1.0/cluster/members/m2/state", body: "{}")
        #expect(missing.status == 400)
        #expect(h.forwarder!.sent.withLock { $0 }.isEmpty)
    }

    @Test func withoutTheServiceTheRouteAnswers501() async throws {
        let r = try await RouteHarness().call(.post, "/1.0/cluster/members/m1/state", body: #"{"action": "evacuate"}"#)
        #expect(r.status == 501)
        _ = try r.error()
    }
}
