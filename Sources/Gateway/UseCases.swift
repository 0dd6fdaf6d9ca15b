import APITypes
import Dqlite
import Instances

// The instance and image use cases the routes call, as narrow protocols: Instances' services
// implement them (conformances at the end), route tests back them with fakes.

/// Create, read, change and delete instances (`InstanceLifecycle`).
public protocol InstanceLifecycleUseCases: Sendable {
    func list(withState: Bool) async throws -> [Instance]
    func get(_ name: String, withState: Bool) async throws -> Instance
    /// The member that owns `name`; nil when there is no such instance.
    func location(of name: String) async throws -> String?
    func state(_ name: String) async throws -> InstanceState
    func create(_ post: InstancesPost, options: CreateOptions) async throws -> APIOperation
    func changeState(_ name: String, _ put: InstanceStatePut) async throws -> APIOperation
    func delete(_ name: String) async throws -> APIOperation
    func update(_ name: String, _ put: InstancePut, replace: Bool) async throws
    /// Renames a stopped instance (on its owner).
    func rename(_ name: String, to newName: String) async throws -> APIOperation
    /// Moves an instance to member `target` (on its owner): live when running and `live` is not
    /// false, else stopped, copied and started there when it was running. `mode`: the memory
    /// mode a live move must use ("stop-and-copy", "post-copy", "pre-copy"), nil to let it choose.
    func move(_ name: String, to target: String, live: Bool?, mode: String?) async throws -> APIOperation
    /// A move's target side (members only): get ready, receive parts, take over, drop.
    func acceptMove(_ request: MovePrepareRequest) async throws -> MovePrepared
    func receiveMovePart(token: String, stream: MoveStream, round: Int, part: Int, last: Bool, bytes: [UInt8]) async throws
    func completeMove(_ request: MoveHandOverRequest) async throws -> MoveHandOverReply
    /// A live move's memory, CRIU's page-server protocol; returns when the transfer ended.
    func receivePages(token: String, stream: any PeerStream) async
    func discardMove(token: String) async
    /// On the owner: creates the instances another member placed here.
    func materialise(_ post: InstancesMaterialisePost) async throws -> APIOperation
}

/// Exec, console and its log, file pull and push (`InstanceAccess`).
public protocol InstanceAccessUseCases: Sendable {
    func consoleLog(_ name: String) async throws -> [UInt8]
    func clearConsoleLog(_ name: String) async throws
    func console(_ name: String, _ post: InstanceConsolePost) async throws -> APIOperation
    func readFile(_ name: String, path: String) async throws -> InstanceFile
    func writeFile(_ name: String, path: String, _ file: InstanceFile) async throws
    func exec(_ name: String, _ post: InstanceExecPost) async throws -> APIOperation
}

/// Server config, members' capacity and placement groups (`PlacementService`).
public protocol SchedulingUseCases: Sendable {
    func serverConfig() async throws -> [String: String]
    func updateServerConfig(_ config: [String: String], replace: Bool) async throws
    func memberResources() async throws -> [MemberResources]
    func placementGroups() async throws -> [PlacementGroup]
    func placementGroup(_ name: String) async throws -> PlacementGroup
    func createPlacementGroup(_ post: PlacementGroup) async throws
    func deletePlacementGroup(_ name: String) async throws
}

/// Image upload, listing, export, deletion and aliases (`ImageService`).
public protocol ImageUseCases: Sendable {
    func list() async throws -> [Image]
    func get(_ fingerprint: String) async throws -> Image
    /// Imports the tarball uploaded to `path` (the use case owns the file from here).
    func importTarball(at path: String, filename: String) async throws -> APIOperation
    /// The original tarball of an image, for a member fetching it.
    func exportPath(_ fingerprint: String) async throws -> String
    func delete(_ fingerprint: String) async throws -> APIOperation
    func aliases() async throws -> [ImageAliasEntry]
    func alias(_ name: String) async throws -> ImageAliasEntry
    func createAlias(_ post: ImageAliasesPost) async throws
    func deleteAlias(_ name: String) async throws
}

extension InstanceLifecycle: InstanceLifecycleUseCases {}
extension InstanceAccess: InstanceAccessUseCases {}
extension PlacementService: SchedulingUseCases {}
extension ImageService: ImageUseCases {}
