import APITypes
import Dqlite
import Foundation
@testable import Gateway
import Identity
import InstanceConfig
import Instances
import Logging
import Operations
import Synchronization

// Small fakes of the use cases Gateway calls, so route tests run the real router and front
// door with no sockets, database or containers. Every fake throws `failure` when it is set.

/// One instance, "c1", and what the routes asked for.
final class FakeInstances: InstanceLifecycleUseCases, InstanceAccessUseCases, Sendable {
    let failure: (any Error)?
    /// The member that owns c1 ("none" is a single member's name).
    let owner: String
    let calls = Mutex<[String]>([])

    init(failure: (any Error)? = nil, owner: String = "none") {
        self.failure = failure
        self.owner = owner
    }

    static let c1 = Instance(name: "c1", status: .running, architecture: "x86_64", config: [:], location: "none",
                             createdAt: "2026-01-01T00:00:00Z", lastUsedAt: "2026-01-01T00:00:00Z")

    static func operation(_ description: String) -> APIOperation {
        APIOperation(id: "0-op-\(description)", class: "task", description: description, createdAt: "2026-01-01T00:00:00Z",
                     updatedAt: "2026-01-01T00:00:00Z", status: .running, resources: [:], metadata: nil, location: "none")
    }

    private func called(_ call: String) throws {
        calls.withLock { $0.append(call) }
        if let failure { throw failure }
    }

    private func instance(_ name: String) throws -> Instance {
        guard name == "c1" else { throw InstancesError.notFound("Instance \"\(name)\" not found") }
        return Self.c1
    }

    func list(withState: Bool) async throws -> [Instance] { try called("list"); return [Self.c1] }
    func get(_ name: String, withState: Bool) async throws -> Instance { try called("get \(name)"); return try instance(name) }
    func location(of name: String) async throws -> String? { name == "c1" ? owner : nil }
    func state(_ name: String) async throws -> InstanceState {
        try called("state \(name)")
        _ = try instance(name)
        return InstanceState(status: .running, pid: 1, processes: 1, memory: .init(usage: 0, usagePeak: 0, total: 0), cpu: .init(usage: 0))
    }
    func create(_ post: InstancesPost, options: CreateOptions) async throws -> APIOperation {
        try called("create \(post.name) count=\(options.count ?? 1)")
        return Self.operation("create")
    }
    func changeState(_ name: String, _ put: InstanceStatePut) async throws -> APIOperation {
        try called("\(put.action) \(name)")
        _ = try instance(name)
        return Self.operation(put.action)
    }
    func delete(_ name: String) async throws -> APIOperation { try called("delete \(name)"); _ = try instance(name); return Self.operation("delete") }
    /// Validates the config with the real schema, as InstanceLifecycle does.
    func update(_ name: String, _ put: InstancePut, replace: Bool) async throws {
        try called("update \(name)")
        _ = try instance(name)
        do {
            try InstanceConfigSchema.validate(user: put.config ?? [:])
        } catch {
            throw InstancesError.invalid("Invalid config: \(error)")
        }
    }
    func materialise(_ post: InstancesMaterialisePost) async throws -> APIOperation { try called("materialise"); return Self.operation("materialise") }
    func rename(_ name: String, to newName: String) async throws -> APIOperation {
        try called("rename \(name) \(newName)"); _ = try instance(name); return Self.operation("rename")
    }
    func acceptMove(_ request: MovePrepareRequest) async throws -> MovePrepared { try called("accept move \(request.name)"); return MovePrepared(criuVersion: nil) }
    func receiveMovePart(token: String, stream: MoveStream, round: Int, part: Int, last: Bool, bytes: [UInt8]) async throws {
        try called("move part \(stream.rawValue) \(round) \(part) \(last) \(bytes.count)")
    }
    func completeMove(_ request: MoveHandOverRequest) async throws -> MoveHandOverReply { try called("hand over \(request.name)"); return MoveHandOverReply(committed: false) }
    func discardMove(token: String) async { try? called("discard move") }
    func receivePages(token: String, stream: any PeerStream) async {
        try? called("receive pages")
        await stream.close()
    }
    func move(_ name: String, to target: String, live: Bool?, mode: String?) async throws -> APIOperation {
        try called("move \(name) \(target) \(live.map(String.init) ?? "-")" + (mode.map { " \($0)" } ?? "")); _ = try instance(name); return Self.operation("move")
    }

    func consoleLog(_ name: String) async throws -> [UInt8] { try called("console \(name)"); _ = try instance(name); return Array("booted\n".utf8) }
    func clearConsoleLog(_ name: String) async throws { try called("clear console \(name)"); _ = try instance(name) }
    func console(_ name: String, _ post: InstanceConsolePost) async throws -> APIOperation {
        try called("attach console \(name) \(post.width ?? -1)x\(post.height ?? -1) \(post.type ?? "-")")
        _ = try instance(name)
        return Self.operation("console")
    }
    func readFile(_ name: String, path: String) async throws -> InstanceFile {
        try called("pull \(name) \(path)")
        return InstanceFile(content: Array("hello".utf8), uid: 0, gid: 0, mode: 0o644)
    }
    func writeFile(_ name: String, path: String, _ file: InstanceFile) async throws {
        try called("push \(name) \(path) mode=\(String(file.mode, radix: 8)) bytes=\(file.content.count)")
    }
    func exec(_ name: String, _ post: InstanceExecPost) async throws -> APIOperation { try called("exec \(name)"); return Self.operation("exec") }
}

struct FakeScheduling: SchedulingUseCases {
    var failure: (any Error)? = nil
    func serverConfig() async throws -> [String: String] {
        if let failure { throw failure }
        return ["scheduler.instance_policy": "spread"]
    }
    func updateServerConfig(_ config: [String: String], replace: Bool) async throws { if let failure { throw failure } }
    func memberResources() async throws -> [MemberResources] { if let failure { throw failure }; return [] }
    func placementGroups() async throws -> [PlacementGroup] { if let failure { throw failure }; return [] }
    func placementGroup(_ name: String) async throws -> PlacementGroup { throw failure ?? InstancesError.notFound("Placement group \"\(name)\" not found") }
    func createPlacementGroup(_ post: PlacementGroup) async throws { if let failure { throw failure } }
    func deletePlacementGroup(_ name: String) async throws { if let failure { throw failure } }
}

struct FakeImages: ImageUseCases {
    var failure: (any Error)? = nil
    func list() async throws -> [Image] { if let failure { throw failure }; return [] }
    func get(_ fingerprint: String) async throws -> Image { throw failure ?? InstancesError.notFound("Image \"\(fingerprint)\" not found") }
    func importTarball(at path: String, filename: String) async throws -> APIOperation {
        unlink(path)
        if let failure { throw failure }
        return FakeInstances.operation("import")
    }
    func exportPath(_ fingerprint: String) async throws -> String { throw failure ?? InstancesError.notFound("Image \"\(fingerprint)\" not found") }
    func delete(_ fingerprint: String) async throws -> APIOperation { throw failure ?? InstancesError.notFound("Image \"\(fingerprint)\" not found") }
    func aliases() async throws -> [ImageAliasEntry] { if let failure { throw failure }; return [] }
    func alias(_ name: String) async throws -> ImageAliasEntry { throw failure ?? InstancesError.notFound("Alias \"\(name)\" not found") }
    func createAlias(_ post: ImageAliasesPost) async throws { if let failure { throw failure } }
    func deleteAlias(_ name: String) async throws { if let failure { throw failure } }
}

/// Trusts the certificates given; members are those given too.
struct FakeTrust: TrustService {
    let trusted: Set<String>
    func isTrusted(fingerprint: String) async throws -> Bool { trusted.contains(fingerprint) }
    func list() async throws -> [CertificateInfo] { [] }
    func get(_ fingerprintOrPrefix: String) async throws -> CertificateInfo { throw APIError.notFound("Certificate not found") }
    func delete(_ fingerprintOrPrefix: String) async throws {}
    func add(certificate text: String, name: String?, type: String?) async throws -> String { "" }
    func add(presented der: [UInt8], trustToken: String, name: String?) async throws -> String { "" }
    func createToken(name: String, expiresAt: Date?) async throws -> TrustToken {
        TrustToken(clientName: name, fingerprint: "", addresses: [], secret: "", expiresAt: expiresAt)
    }
}

struct FakeCluster: ClusterService {
    let memberFingerprints: Set<String>
    var failure: (any Error)? = nil
    func members() async throws -> [ClusterMemberInfo] { if let failure { throw failure }; return [] }
    func info() async throws -> ClusterInfo { ClusterInfo(serverName: "none", enabled: false) }
    func enable(serverName: String) async throws { if let failure { throw failure } }
    func updateMember(name: String, _ put: ClusterMemberPut) async throws { if let failure { throw failure } }
    func patchMember(name: String, _ patch: ClusterMemberPut) async throws { if let failure { throw failure } }
    func member(named name: String) async throws -> ClusterMemberInfo {
        throw failure ?? InstancesError.notFound("Cluster member \"\(name)\" not found: see lxdctl cluster list")
    }
    func issueJoinToken(name: String) async throws -> IssuedJoinToken {
        if let failure { throw failure }
        return IssuedJoinToken(serverName: name, fingerprint: "f", addresses: ["127.0.0.1:8443"], secret: "s", expiresAt: 0, encoded: "token")
    }
    func accept(_ request: ClusterAcceptRequest, presentedCertificate: [UInt8]) async throws -> ClusterAcceptResponse {
        throw failure ?? APIError.forbidden("not authorized")
    }
    func join(token: String, serverName: String?) async throws { if let failure { throw failure } }
    func remove(name: String, force: Bool) async throws { if let failure { throw failure } }
    func isMember(fingerprint: String) async -> Bool { memberFingerprints.contains(fingerprint) }
    func receiveHeartbeat(_ heartbeat: ClusterHeartbeat) async throws { if let failure { throw failure } }
    func servePeer(_ stream: any PeerStream) async {}
}

/// Member m1 of a cluster: records what it forwards and answers with `answer`, or throws `failure`.
final class FakeForwarder: MemberForwarder, Sendable {
    let answer: ForwardedResponse
    let failure: (any Error)?
    let sent = Mutex<[(ForwardedRequest, MemberReference)]>([])

    init(answer: ForwardedResponse = .init(status: 200, headers: [("Content-Type", "application/json")], body: Array("{\"type\":\"sync\"}".utf8)),
         failure: (any Error)? = nil) {
        self.answer = answer
        self.failure = failure
    }

    var localMemberID: Int64 { 1 }
    var localMemberName: String { "m1" }
    var isClustered: Bool { true }
    func otherMembers() async throws -> [String] { ["m2"] }
    func send(_ request: ForwardedRequest, to member: MemberReference, timeout: Duration?) async throws -> ForwardedResponse {
        sent.withLock { $0.append((request, member)) }
        if let failure { throw failure }
        return answer
    }
    func openWebSocket(target: String, to member: MemberReference) async throws -> any ForwardedWebSocket {
        throw failure ?? InstancesError.unavailable("no websockets here")
    }
}
