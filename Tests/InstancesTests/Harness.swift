import APITypes
import ClusterDB
import DatabaseTestSupport
import Dqlite
import Foundation
@testable import Instances
import Logging
import Operations
import Synchronization
import Testing

/// One member "m1" over a real single-node dqlite database (in-process, no root) with one image
/// (alias `busybox`), a FakeHost and FakeLayers. Each test builds its own and calls `shutdown`.
final class Harness: Sendable {
    static let fingerprint = "b0" + String(repeating: "5", count: 62)

    let database: InProcessDatabase
    var dataDir: String { database.dataDir }
    var db: ClusterDB { database.db }
    let host = FakeHost()
    let layers = FakeLayers()
    let operations: OperationRegistry
    let member: MemberIdentity
    let service: InstanceService
    let idmaps = IDMapRange(start: 1_000_000, size: 16 * IDMapRange.block)

    var lifecycle: InstanceLifecycle { service.lifecycle }
    var access: InstanceAccess { service.access }
    var placement: PlacementService { service.placement }

    init() async throws {
        database = try await InProcessDatabase(label: "instances")
        let db = database.db
        let memberID = try await db.transaction { tx in
            let id = try tx.ensureMember(name: "m1", address: "127.0.0.1:8443")
            let image = try tx.insertImage(NewImage(fingerprint: Self.fingerprint, size: 1024, architecture: "x86_64", properties: ["os": "Busybox"]))
            try tx.addAlias(name: "busybox", imageID: image.id)
            try tx.addImageMember(imageID: image.id, memberID: id)
            return id
        }
        layers.add(Self.fingerprint)
        member = MemberIdentity(id: memberID, name: "m1")
        operations = OperationRegistry(location: "m1", memberID: memberID, logger: Logger(label: "test.operations"))
        service = InstanceService(member: member, db: db, runtime: host, store: layers, operations: operations, idmaps: idmaps,
                                  checkpointer: nil, dataDir: database.dataDir, logger: Logger(label: "test.instances"))
    }

    func shutdown() async { await database.close() }

    /// A launch body from the `busybox` alias.
    static func post(_ name: String, config: [String: String]? = nil, start: Bool = false) -> InstancesPost {
        InstancesPost(name: name, source: .init(alias: "busybox"), config: config, start: start)
    }

    /// Waits for an operation to end and returns it in its final state.
    func finish(_ op: APIOperation) async throws -> APIOperation {
        try #require(await operations.wait(op.id, timeout: nil))
    }

    /// Creates (and maybe starts) one instance and checks the operation succeeded.
    func launch(_ name: String, config: [String: String]? = nil, start: Bool = false) async throws {
        let op = try await finish(try await lifecycle.create(Self.post(name, config: config, start: start)))
        try #require(op.statusCode == StatusCode.success.rawValue, "create \(name): \(op.err)")
    }

    func changeState(_ name: String, _ action: String, timeout: Int? = nil) async throws -> APIOperation {
        try await finish(try await lifecycle.changeState(name, InstanceStatePut(action: action, timeout: timeout)))
    }

    func rows() async throws -> [InstanceRow] {
        try await db.transaction { tx in try tx.instances() }.sorted { $0.name < $1.name }
    }

    func row(_ name: String) async throws -> InstanceRow? {
        try await db.transaction { tx in try tx.instance(name: name) }
    }
}

/// Runs `body` against a fresh harness and always shuts it down.
func withHarness(_ body: (Harness) async throws -> Void) async throws {
    let harness = try await Harness()
    do {
        try await body(harness)
    } catch {
        await harness.shutdown()
        throw error
    }
    await harness.shutdown()
}

/// The kind of failure `body` throws, or nil when it throws nothing (or something else).
func kind(_ body: () async throws -> Void) async -> ErrorKind? {
    do {
        try await body()
        return nil
    } catch let error as InstancesError {
        return error.kind
    } catch {
        Issue.record("expected an InstancesError, got \(error)")
        return nil
    }
}
