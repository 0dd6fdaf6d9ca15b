import APITypes
import ClusterDB
import Foundation
import Images
import InstanceConfig
import Logging
import Migration
import Operations
import Runtime

/// This member's identity in the cluster.
public struct MemberIdentity: Sendable {
    public let id: Int64
    public let name: String
    public init(id: Int64, name: String) {
        self.id = id
        self.name = name
    }
}

/// Host ids that containers' user namespaces are mapped to, allocated per instance in ClusterDB.
/// Blocks are allocated cluster-wide, so every member of a cluster must use the same range.
public struct IDMapRange: Sendable, Equatable, CustomStringConvertible {
    public let start: Int64
    public let size: Int64
    public static let block: Int64 = 65536
    /// The highest usable host id: uid_t is 32 bits and (uid_t)-1 means "no id".
    public static let maxID: Int64 = 4_294_967_294
    public init(start: Int64, size: Int64) {
        self.start = start
        self.size = size
    }

    /// How many isolated instances the range holds (one block of 65,536 ids each).
    public var instances: Int64 { size / Self.block }

    public var description: String { "\(start):\(size)" }

    /// `START:COUNT` as `lxdd --idmap-range` takes it: both decimal, the range above the host's
    /// own ids (below 65,536), within uid_t, and large enough for one instance.
    public init(parsing text: String) throws(IDMapRangeError) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let start = Int64(parts[0]), let count = Int64(parts[1]) else {
            throw IDMapRangeError("invalid id range \"\(text)\": use START:COUNT, two decimal numbers (e.g. 1000000000:1000000000)")
        }
        guard start >= Self.block else {
            throw IDMapRangeError("invalid id range \"\(text)\": START must be at least \(Self.block) (ids below are the host's own users and groups)")
        }
        guard count >= Self.block else {
            throw IDMapRangeError("invalid id range \"\(text)\": COUNT must be at least \(Self.block), the ids of one isolated instance (use a multiple of \(Self.block): one block per instance)")
        }
        guard start <= Self.maxID, count <= Self.maxID - start + 1 else {
            throw IDMapRangeError("invalid id range \"\(text)\": it ends past \(Self.maxID), the highest host id (uid_t is 32 bits): lower START or COUNT")
        }
        self.init(start: start, size: count)
    }

    /// Root's subordinate ids from /etc/subuid, else LXD's default range.
    public static func fromHost() -> IDMapRange {
        if let text = try? String(contentsOfFile: "/etc/subuid", encoding: .utf8) {
            for line in text.split(separator: "\n") {
                let f = line.split(separator: ":")
                if f.count == 3, f[0] == "root", let s = Int64(f[1]), let n = Int64(f[2]), n >= block {
                    return IDMapRange(start: s, size: n)
                }
            }
        }
        return fromHostDefault
    }

    /// LXD's range when /etc/subuid has none for root.
    public static let fromHostDefault = IDMapRange(start: 1_000_000, size: 1_000_000_000)
}

/// Why an id range was refused; the text says what to change.
public struct IDMapRangeError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A file read from or written into an instance.
public struct InstanceFile: Sendable {
    public var content: [UInt8]
    public var uid: UInt32
    public var gid: UInt32
    public var mode: UInt32
    public var type: String
    public init(content: [UInt8], uid: UInt32, gid: UInt32, mode: UInt32, type: String = "file") {
        self.content = content
        self.uid = uid
        self.gid = gid
        self.mode = mode
        self.type = type
    }
}

/// Instance use cases: validate → persist → run locally → undo on failure. Every entry point
/// (API, CLI through the API, later forwarding) goes through here.
public final class InstanceService: Sendable {
    let member: MemberIdentity
    let db: ClusterDB
    let runtime: ContainerRuntime
    let store: ImageStore
    let operations: OperationRegistry
    let idmaps: IDMapRange
    let locks = InstanceLocks()
    /// Checkpoint/restore for stateful stop and start; nil when no usable CRIU was found.
    let checkpointer: Checkpointer?
    let dataDir: String
    /// Brings a missing image layer from a member holding it; nil (a single member) fetches nothing.
    let imageFetch: ImageFetch?
    /// Asks other members to create instances placed on them; nil (a single member) places here.
    let materialiser: (any InstanceMaterialiser)?
    let logger: Logger

    /// `imageFetcher` and `uploadDirectory` let a create fetch an image imported on another member.
    public init(member: MemberIdentity, db: ClusterDB, runtime: ContainerRuntime, store: ImageStore, operations: OperationRegistry, idmaps: IDMapRange, checkpointer: Checkpointer?, dataDir: String,
                imageFetcher: (any ImageTarballFetcher)? = nil, uploadDirectory: String? = nil, maxImageBytes: Int64 = 4 << 30,
                materialiser: (any InstanceMaterialiser)? = nil, logger: Logger) {
        self.materialiser = materialiser
        self.imageFetch = imageFetcher.map {
            ImageFetch(member: member, db: db, store: store, fetcher: $0, uploadDirectory: uploadDirectory ?? "\(dataDir)/uploads",
                       maxImageBytes: maxImageBytes, logger: logger)
        }
        self.checkpointer = checkpointer
        self.dataDir = dataDir
        self.member = member
        self.db = db
        self.runtime = runtime
        self.store = store
        self.operations = operations
        self.idmaps = idmaps
        self.logger = logger
    }

    // MARK: reads

    public func list(withState: Bool) async throws -> [Instance] {
        let rows = try await db.transaction { tx in try tx.instances() }
        return rows.map { apiInstance($0, withState: withState) }
    }

    public func get(_ name: String, withState: Bool) async throws -> Instance {
        apiInstance(try await row(name), withState: withState)
    }

    /// The member an instance lives on; nil when there is no such instance.
    public func location(of name: String) async throws -> String? {
        try await db.transaction { tx in try tx.instance(name: name) }?.location
    }

    /// This member's name, as instances' `location` shows it.
    public var memberName: String { member.name }

    public func state(_ name: String) async throws -> InstanceState {
        let r = try await row(name)
        return apiState(r)
    }

    // MARK: create

    /// Creates one instance where the scheduler (or `?target=`) puts it; see ``create(_:options:)``.
    public func create(_ post: InstancesPost) async throws -> APIOperation {
        try await create(post, options: CreateOptions())
    }

    // MARK: state changes

    public func changeState(_ name: String, _ put: InstanceStatePut) async throws -> APIOperation {
        let r = try await row(name)
        let force = put.force ?? false
        let stateful = put.stateful ?? false
        // LXD's -1 (the client's default) means no timeout given; anything else must be a sane number of seconds.
        if let t = put.timeout, t != -1, !(0...86_400).contains(t) {
            throw APIError.badRequest("Invalid timeout \(t): use seconds from 0 to 86400, or -1 for the default (30 s)")
        }
        let timeout = Duration.seconds(put.timeout.flatMap { $0 >= 0 ? $0 : nil } ?? 30)
        if stateful {
            guard put.action == "stop" else { throw APIError.badRequest("stateful applies to stop only: start restores a saved state by itself") }
            guard checkpointer != nil else {
                throw APIError.badRequest("Stateful stop needs CRIU >= 4.2 on member \(member.name): run scripts/install-criu")
            }
        }
        switch put.action {
        case "start":
            if runtime.state(name: name)?.running == true { throw APIError.badRequest("Instance \(name) is already running") }
        case "stop":
            if runtime.state(name: name)?.running != true { throw APIError.badRequest("Instance \(name) is not running") }
        case "restart":
            if runtime.state(name: name)?.running != true { throw APIError.badRequest("Instance \(name) is not running: use start") }
        default:
            throw APIError.badRequest("Unsupported action \"\(put.action)\": use start, stop or restart")
        }
        return await operations.start(
            description: "\(put.action.prefix(1).uppercased())\(put.action.dropFirst())ing instance",
            resources: ["instances": ["/1.0/instances/\(name)"]]
        ) { [self] _ in
            try await locks.withLock(name) {
                switch put.action {
                case "start":
                    try await self.startLocked(r)
                case "stop" where stateful:
                    try await self.checkpointLocked(name)
                case "stop":
                    try await self.stopLocked(name, force: force, timeout: timeout)
                default:
                    try await self.stopLocked(name, force: force, timeout: timeout)
                    try await self.startLocked(try await self.row(name))
                }
            }
            self.announceStateChange(name, action: put.action, stateful: stateful)
            return nil
        }
    }

    private func startLocked(_ r: InstanceRow) async throws {
        if runtime.state(name: r.name)?.running == true { return }
        if hasSavedState(r.name) {
            guard let checkpointer else {
                throw APIError.badRequest("Instance \(r.name) has a saved state but CRIU is missing on member \(member.name): run scripts/install-criu")
            }
            do {
                _ = try await checkpointer.restore(name: r.name, destination: runtime, from: stateDirectory(r.name))
            } catch {
                throw APIError.internal("Restoring the saved state of \(r.name) failed: \(error). The state is kept; start again to retry")
            }
            try? FileManager.default.removeItem(atPath: stateDirectory(r.name))
        } else {
            let spec = try spec(for: r)
            _ = try await runtime.start(spec)
        }
        try await db.transaction { tx in
            try tx.updateInstancePowerState(name: r.name, .running)
            try tx.touchInstance(name: r.name, lastUsedAt: Date())
        }
    }

    /// Stateful stop: CRIU dumps the process tree into the instance's state directory and the
    /// container stops; the next start restores it (memory, pids, open files).
    private func checkpointLocked(_ name: String) async throws {
        guard let checkpointer else { throw APIError.badRequest("Stateful stop needs CRIU") }
        let dir = stateDirectory(name)
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        do {
            _ = try await checkpointer.checkpoint(name: name, source: runtime, into: dir)
        } catch {
            try? FileManager.default.removeItem(atPath: dir)
            throw APIError.internal("Stateful stop of \(name) failed: \(error). The instance keeps running")
        }
        try await db.transaction { tx in try tx.updateInstancePowerState(name: name, .stopped) }
    }

    func stateDirectory(_ name: String) -> String { "\(dataDir)/containers/\(name)/state" }

    func hasSavedState(_ name: String) -> Bool {
        FileManager.default.fileExists(atPath: "\(stateDirectory(name))/inventory.img")
    }

    private func stopLocked(_ name: String, force: Bool, timeout: Duration) async throws {
        try await runtime.stop(name: name, force: force, timeout: timeout)
        try await db.transaction { tx in try tx.updateInstancePowerState(name: name, .stopped) }
    }

    // MARK: boot

    /// After the agent starts (host reboot or agent restart): starts this member's instances that
    /// are not running but should be, as LXD does: `boot.autostart=true`, or the key unset and
    /// the instance was running when last seen. Failures are logged, one instance at a time.
    public func startOnBoot() async {
        let rows: [InstanceRow]
        do {
            rows = try await db.transaction { [member] tx in try tx.instances(memberID: member.id) }
        } catch {
            logger.error("cannot list instances to autostart", metadata: ["error": "\(error)"])
            return
        }
        for r in rows where runtime.state(name: r.name)?.running != true {
            let autostart = r.config["boot.autostart"].map(InstanceConfigSchema.isTrue) ?? (r.powerState == .running)
            guard autostart else { continue }
            do {
                try await locks.withLock(r.name) { try await self.startLocked(r) }
                logger.info("instance autostarted", metadata: ["instance": "\(r.name)"])
                events.instance(.instanceStarted, r.name, context: ["autostart": .bool(true)])
            } catch {
                logger.error("autostart failed", metadata: ["instance": "\(r.name)", "error": "\(error)"])
            }
        }
    }

    // MARK: delete

    public func delete(_ name: String) async throws -> APIOperation {
        let r = try await row(name)
        if runtime.state(name: name)?.running == true {
            throw APIError.badRequest("Instance \(name) is running: stop it first (or delete --force)")
        }
        return await operations.start(description: "Deleting instance", resources: ["instances": ["/1.0/instances/\(name)"]]) { [self] _ in
            try await locks.withLock(name) {
                if self.runtime.state(name: name)?.running == true {
                    throw APIError.badRequest("Instance \(name) is running: stop it first (or delete --force)")
                }
                try await Blocking.run { try self.runtime.delete(name: name) }
                let stillUsed: Bool = try await self.db.transaction { tx in
                    _ = try tx.deleteInstance(name: name)
                    let imageKnown = try tx.image(fingerprintPrefix: r.imageFingerprint) != nil
                    let users = try tx.instanceCount(usingImage: r.imageFingerprint)
                    return imageKnown || users > 0
                }
                // A layer outlives its image while instances use it; the last one removes it.
                if !stillUsed { _ = try? await Blocking.run { try self.store.removeLayer(fingerprint: r.imageFingerprint) } }
            }
            self.events.instance(.instanceDeleted, name)
            return nil
        }
    }

    // MARK: config

    public func update(_ name: String, _ put: InstancePut, replace: Bool) async throws {
        if let devices = put.devices, !devices.isEmpty {
            throw APIError.badRequest("Devices are not supported yet: remove \(devices.keys.sorted().joined(separator: ", "))")
        }
        try await locks.withLock(name) {
            let r = try await self.row(name)
            let running = self.runtime.state(name: name)?.running == true
            var next: [String: String]
            if replace {
                // PUT: the user's keys replace the user's keys; server keys stay.
                next = r.config.filter { InstanceConfigSchema.key($0.key)?.scope == .server }
                for (k, v) in put.config ?? [:] { next[k] = v }
            } else {
                next = r.config
                for (k, v) in put.config ?? [:] { next[k] = v }
            }
            do {
                // Server keys passed back unchanged are accepted; changed ones are refused.
                try InstanceConfigSchema.validate(user: next, previous: r.config, running: running)
            } catch {
                throw APIError.badRequest("Invalid config: \(error)")
            }
            if running {
                let limits = ResourceLimits(config: next)
                if limits != ResourceLimits(config: r.config) {
                    try self.runtime.updateLimits(name: name, limits: Self.runtimeLimits(limits))
                }
            }
            let finalConfig = next
            try await self.db.transaction { tx in
                try tx.updateInstanceConfig(name: name, config: finalConfig)
                // The scheduler's allocation sums read these columns.
                try tx.setInstanceFootprint(name: name, InstanceFootprint(instanceConfig: finalConfig))
            }
        }
        events.instance(.instanceUpdated, name)
    }

    // MARK: console and files

    public func consoleLog(_ name: String) async throws -> [UInt8] {
        _ = try await row(name)
        return try runtime.consoleLog(name: name)
    }

    public func readFile(_ name: String, path: String) async throws -> InstanceFile {
        _ = try await row(name)
        guard path.hasPrefix("/") else { throw APIError.badRequest("File path must be absolute: \(path)") }
        do {
            let f = try await runtime.readFile(name: name, path: path)
            if let entries = f.entries {
                return InstanceFile(content: Array(entries.joined(separator: "\n").utf8), uid: f.uid, gid: f.gid, mode: f.mode, type: "directory")
            }
            return InstanceFile(content: f.content, uid: f.uid, gid: f.gid, mode: f.mode)
        } catch {
            throw error.apiError
        }
    }

    public func writeFile(_ name: String, path: String, _ file: InstanceFile) async throws {
        _ = try await row(name)
        guard path.hasPrefix("/") else { throw APIError.badRequest("File path must be absolute: \(path)") }
        guard file.type == "file" else { throw APIError.badRequest("Only regular files can be pushed") }
        do {
            try await runtime.writeFile(name: name, path: path, content: file.content, mode: file.mode, uid: file.uid, gid: file.gid)
        } catch {
            throw error.apiError
        }
    }

    // MARK: helpers

    func row(_ name: String) async throws -> InstanceRow {
        guard let r = try await db.transaction({ tx in try tx.instance(name: name) }) else {
            throw APIError.notFound("Instance \"\(name)\" not found")
        }
        return r
    }

    func resolveImage(alias: String?, fingerprint: String?) async throws -> ImageRow {
        let found: ImageRow? = try await db.transaction { tx in
            if let fp = fingerprint, !fp.isEmpty { return try tx.image(fingerprintPrefix: fp) }
            if let a = alias, !a.isEmpty { return try tx.imageByAlias(a) }
            return nil
        }
        guard let image = found else {
            if (alias ?? "").isEmpty, (fingerprint ?? "").isEmpty {
                throw APIError.badRequest("Image source needs an alias or a fingerprint")
            }
            throw APIError.notFound("Image \"\(alias ?? fingerprint ?? "")\" not found: import it with lxdctl image import")
        }
        return image
    }

    func spec(for r: InstanceRow) throws -> ContainerSpec {
        guard let layer = store.layer(fingerprint: r.imageFingerprint) else {
            throw APIError.internal("Image layer \(r.imageFingerprint.prefix(12)) of instance \(r.name) is missing on member \(member.name)")
        }
        var env: [String: String] = [:]
        for (k, v) in r.config where k.hasPrefix("environment.") { env[String(k.dropFirst(12))] = v }
        return ContainerSpec(
            name: r.name, layerRootfs: layer.rootfsPath,
            idmap: r.idmapBase.map { IDMap(hostBase: UInt32($0), size: UInt32(IDMapRange.block)) },
            limits: Self.runtimeLimits(ResourceLimits(config: r.config)),
            environment: env)
    }

    static func runtimeLimits(_ l: ResourceLimits) -> Limits {
        Limits(memoryBytes: l.memoryBytes, cpuCores: l.cpu?.cores, processes: l.processes)
    }

    func apiInstance(_ r: InstanceRow, withState: Bool) -> Instance {
        let st = runtime.state(name: r.name)
        let status: StatusCode = st?.running == true ? .running : .stopped
        var i = Instance(
            name: r.name, status: status, architecture: r.architecture, config: r.config, location: r.location,
            createdAt: Self.iso(r.createdAt), lastUsedAt: Self.iso(r.lastUsedAt ?? Date(timeIntervalSince1970: 0)))
        i.stateful = hasSavedState(r.name)
        if withState { i.state = apiState(r, st) }
        return i
    }

    func apiState(_ r: InstanceRow, _ known: ContainerState?? = nil) -> InstanceState {
        let st = known ?? runtime.state(name: r.name)
        let running = st?.running == true
        return InstanceState(
            status: running ? .running : .stopped,
            pid: running ? Int64(st!.pid) : 0,
            processes: running ? Int64(st!.processes) : 0,
            memory: .init(usage: running ? st!.memoryUsage : 0, usagePeak: running ? st!.memoryPeak : 0, total: 0),
            cpu: .init(usage: running ? st!.cpuUsageNanoseconds : 0))
    }

    static func iso(_ date: Date) -> String { OperationRegistry.timestamp(date) }
}

extension InstanceService {
    /// `POST /1.0/instances/NAME/exec`: a websocket operation as LXD's clients expect.
    public func exec(_ name: String, _ post: InstanceExecPost) async throws -> APIOperation {
        _ = try await row(name)
        guard runtime.state(name: name)?.running == true else {
            throw APIError.badRequest("Instance \(name) is not running: start it first")
        }
        guard !post.command.isEmpty, !post.command[0].isEmpty else { throw APIError.badRequest("Exec needs a command") }
        guard post.waitForWebsocket == true else {
            throw APIError.badRequest("Only wait-for-websocket=true is supported: connect to the operation's websockets")
        }
        let session = ExecSession(interactive: post.interactive ?? false)
        var secrets: [String: String] = [:]
        var fds: [String: JSONValue] = [:]
        for fd in session.names {
            var bytes = [UInt8](repeating: 0, count: 32)
            for i in bytes.indices { bytes[i] = UInt8.random(in: 0...255) }
            let secret = bytes.map { String(format: "%02x", $0) }.joined()
            secrets[secret] = fd
            fds[fd] = .string(secret)
        }
        var env = ["PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "USER": "root", "LANG": "C.UTF-8"]
        if post.interactive == true { env["TERM"] = "xterm-256color" }
        for (k, v) in post.environment ?? [:] { env[k] = v }
        let request = ExecRequest(
            command: post.command, environment: env, cwd: post.cwd ?? "/root",
            uid: post.user ?? 0, gid: post.group ?? 0)
        let runtime = self.runtime
        let logger = self.logger
        return await operations.start(
            class: "websocket", description: "Executing command",
            resources: ["instances": ["/1.0/instances/\(name)"]],
            metadata: ["fds": .object(fds)], secrets: secrets,
            webSocketHandler: { fd, attachment in await session.attach(fd, attachment) }
        ) { _ in
            try await session.waitForAll(timeout: .seconds(30))
            let code = try await session.run(runtime: runtime, name: name, request: request, width: post.width, height: post.height, logger: logger)
            return ["return": .int(Int(code))]
        }
    }
}

/// What to run for an exec.
struct ExecRequest: Sendable {
    var command: [String]
    var environment: [String: String]
    var cwd: String
    var uid: UInt32
    var gid: UInt32
}

extension RuntimeError {
    /// The API status of a runtime failure: missing things are 404, misuse 400, the rest 500.
    var apiError: APIError {
        switch self {
        case .notFound: APIError.notFound(description)
        case .notRunning, .alreadyRunning, .invalid: APIError.badRequest(description)
        case .unsupported: APIError(501, description)
        case .system(_, _, let code) where code == ENOENT || code == ENOTDIR: APIError.notFound(description)
        case .system(_, _, let code) where code == ELOOP || code == EXDEV || code == EISDIR: APIError.badRequest(description)
        default: APIError.internal(description)
        }
    }
}
