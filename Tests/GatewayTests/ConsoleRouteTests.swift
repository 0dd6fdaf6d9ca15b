import APITypes
import Foundation
@testable import Gateway
import HTTPTypes
import Testing

/// `POST /1.0/instances/NAME/console` (attach) and `DELETE …/console` (clear the log) in
/// LXD's shape, here and forwarded to the owner.
@Suite struct ConsoleRouteTests {
    @Test func attachingAnswersAnOperationWithTheBodyPassedOn() async throws {
        let h = RouteHarness()
        let r = try await h.call(.post, "/1.0/instances/c1/console", body: #"{"width": 80, "height": 24, "type": "console"}"#)
        #expect(r.status == 202)
        #expect(try r.json()["type"] as? String == "async")
        #expect(r.headers[.location] == "/1.0/operations/0-op-console")
        #expect(h.instances.calls.withLock { $0 } == ["attach console c1 80x24 console"])
    }

    @Test func anEmptyBodyIsLXDsDefaults() async throws {
        let h = RouteHarness()
        let r = try await h.call(.post, "/1.0/instances/c1/console", body: "{}")
        #expect(r.status == 202)
        #expect(h.instances.calls.withLock { $0 } == ["attach console c1 -1x-1 -"])
    }

    @Test(arguments: [#"{"width": "80"}"#, #"{"width": 99999999999999999999999}"#, #"{"height": 1.5}"#, #"{"type": 3}"#])
    func aMistypedOrOversizedFieldIs400BeforeTheUseCase(body: String) async throws {
        let h = RouteHarness()
        let r = try await h.call(.post, "/1.0/instances/c1/console", body: body)
        #expect(r.status == 400)
        _ = try r.error()
        #expect(h.instances.calls.withLock { $0 }.isEmpty)
    }

    @Test func deleteClearsTheLog() async throws {
        let h = RouteHarness()
        let r = try await h.call(.delete, "/1.0/instances/c1/console")
        #expect(r.status == 200)
        #expect(try r.json()["type"] as? String == "sync")
        #expect(h.instances.calls.withLock { $0 } == ["clear console c1"])
        let missing = try await h.call(.delete, "/1.0/instances/nope/console")
        #expect(missing.status == 404)
    }

    @Test func anotherMembersConsoleIsAttachedOnItsOwner() async throws {
        var h = RouteHarness()
        h.instances = FakeInstances(owner: "m2")
        let forwarder = FakeForwarder()
        h.forwarder = forwarder
        for method in [HTTPRequest.Method.post, .delete] {
            let r = try await h.call(method, "/1.0/instances/c1/console", body: method == .post ? #"{"width": 80, "height": 24}"# : nil)
            #expect(r.status == 200)
        }
        let sent = forwarder.sent.withLock { $0 }
        #expect(sent.map(\.0.method) == ["POST", "DELETE"])
        #expect(sent.allSatisfy { $0.0.target == "/1.0/instances/c1/console" && $0.1 == .name("m2") })
        let body = String(decoding: sent.first.map(\.0.body) ?? [], as: UTF8.self)
        #expect(body.contains("\"width\""))
        #expect(h.instances.calls.withLock { $0 }.isEmpty)
    }
}
