import APITypes
@testable import Gateway
import Instances
import Testing

/// `POST /1.0/instances/NAME` over the fakes: which use case each body reaches, and what is
/// refused before any is called. The bodies are what Debian's `lxc` 5.0.2 sends (captured
/// from it against a recording unix socket).
@Suite struct InstancePostRouteTests {
    let h = RouteHarness()

    static let lxcRename = #"{"name":"c2","migration":false,"live":false,"instance_only":false,"container_only":false,"target":null,"pool":"","project":"","allow_inconsistent":false}"#
    static let lxcMove = #"{"name":"c1","migration":true,"live":true,"instance_only":false,"container_only":false,"target":null,"pool":"","project":"","allow_inconsistent":false}"#
    static let lxcStatelessMove = #"{"name":"c1","migration":true,"live":false,"instance_only":false,"container_only":false,"target":null,"pool":"","project":"","allow_inconsistent":false}"#

    func calls() -> [String] { h.instances.calls.withLock { $0 } }

    @Test func lxcRenameRenames() async throws {
        let r = try await h.call(.post, "/1.0/instances/c1", body: Self.lxcRename)
        #expect(r.status == 202)
        #expect(r.headers[.location] == "/1.0/operations/0-op-rename")
        #expect(calls() == ["rename c1 c2"])
    }

    @Test func lxcMoveWithTargetMovesLive() async throws {
        let r = try await h.call(.post, "/1.0/instances/c1?target=m2", body: Self.lxcMove)
        #expect(r.status == 202)
        #expect(calls() == ["move c1 m2 true"])
    }

    @Test func lxcStatelessMovePassesLiveFalse() async throws {
        let r = try await h.call(.post, "/1.0/instances/c1?target=m2", body: Self.lxcStatelessMove)
        #expect(r.status == 202)
        #expect(calls() == ["move c1 m2 false"])
    }

    @Test func aMoveWithoutLiveLeavesTheChoiceToTheUseCase() async throws {
        let r = try await h.call(.post, "/1.0/instances/c1?target=m2", body: #"{"migration": true}"#)
        #expect(r.status == 202)
        #expect(calls() == ["move c1 m2 -"])
    }

    @Test func aMoveHandsItsMigrationModeToTheUseCase() async throws {
        let r = try await h.call(.post, "/1.0/instances/c1?target=m2", body: #"{"migration": true, "live": true, "migration_mode": "pre-copy"}"#)
        #expect(r.status == 202)
        #expect(calls() == ["move c1 m2 true pre-copy"])
    }

    @Test func aRenameWithAMigrationModeIs400() async throws {
        let r = try await h.call(.post, "/1.0/instances/c1", body: #"{"name": "c2", "migration_mode": "stop-and-copy"}"#)
        #expect(r.status == 400)
        #expect(try r.error().error.contains("\"migration_mode\" applies to a move"))
        #expect(calls().isEmpty)
    }

    @Test(arguments: [#"{"migration": true, "migration_mode": 5}"#, #"{"migration": true, "migration_mode": ["pre-copy"]}"#])
    func aMigrationModeThatIsNoStringIs400(body: String) async throws {
        let r = try await h.call(.post, "/1.0/instances/c1?target=m2", body: body)
        #expect(r.status == 400)
        #expect(calls().isEmpty)
    }

    @Test(arguments: ["/1.0/instances/c1", "/1.0/instances/c1?target="])
    func aMigrationWithoutTargetIs400NamingTheWayWithinTheCluster(uri: String) async throws {
        let r = try await h.call(.post, uri, body: Self.lxcMove)
        #expect(r.status == 400)
        let e = try r.error()
        #expect(e.error.contains("between servers is not supported") && e.error.contains("?target=MEMBER"))
        #expect(calls().isEmpty)
    }

    @Test func aMoveThatRenamesIs400() async throws {
        let r = try await h.call(.post, "/1.0/instances/c1?target=m2", body: #"{"name": "c9", "migration": true}"#)
        #expect(r.status == 400)
        #expect(try r.error().error.contains("then rename it to c9"))
        #expect(calls().isEmpty)
    }

    @Test(arguments: ["{}", #"{"name": ""}"#, #"{"migration": false}"#, #"{"live": true}"#])
    func aBodyWithNeitherNameNorMigrationIs400(body: String) async throws {
        let r = try await h.call(.post, "/1.0/instances/c1", body: body)
        #expect(r.status == 400)
        #expect(try r.error().error.contains("give \"name\""))
        #expect(calls().isEmpty)
    }

    @Test func aRenameWithTargetIs400() async throws {
        let r = try await h.call(.post, "/1.0/instances/c1?target=m2", body: Self.lxcRename)
        #expect(r.status == 400)
        #expect(try r.error().error.contains("?target= applies to a move"))
        #expect(calls().isEmpty)
    }

    @Test(arguments: [#"{"name": 5}"#, #"{"migration": "yes"}"#, "[1]", "not json"])
    func aMalformedBodyIs400(body: String) async throws {
        let r = try await h.call(.post, "/1.0/instances/c1", body: body)
        #expect(r.status == 400)
        #expect(calls().isEmpty)
    }

    @Test func aRenameOfAMissingInstanceIsTheUseCases404() async throws {
        let r = try await h.call(.post, "/1.0/instances/nope", body: Self.lxcRename)
        #expect(r.status == 404)
        #expect(calls() == ["rename nope c2"])
    }

    @Test func theUseCasesConflictIs409() async throws {
        let h = RouteHarness(instances: FakeInstances(failure: InstancesError.conflict("Instance \"c2\" already exists: choose another name")))
        let r = try await h.call(.post, "/1.0/instances/c1", body: Self.lxcRename)
        #expect(r.status == 409)
    }
}
