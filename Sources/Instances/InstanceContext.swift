import APITypes
import ClusterDB
import Foundation
import Images
import InstanceConfig
import Logging
import Migration
import Operations
import Runtime

/// What the instance services of one member share: the host and stores they act on, the
/// per-instance locks that keep their changes to one instance from interleaving, and the
/// operation registry whose hub carries their events. One value, built once, passed to each.
struct InstanceContext: Sendable {
    let member: MemberIdentity
    let db: ClusterDB
    let host: any ContainerHost
    let layers: any LayerStore
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
    /// Reaches the target of a move; nil (a single member) moves nothing.
    let moveTransport: (any MoveTransport)?
    /// The moves this member is the target of, while they run.
    let incomingMoves = IncomingMoves()
    let logger: Logger

    /// Brings the image layer `fingerprint` here from a member holding it, unless it is here.
    func ensureLayer(_ fingerprint: String) async throws {
        guard layers.layer(fingerprint: fingerprint) == nil else { return }
        guard let fetch = imageFetch else {
            throw InstancesError.unavailable("Image \(fingerprint.prefix(12)) is not present on member \(member.name): import it there")
        }
        guard let image = try await db.transaction({ tx in try tx.image(fingerprintPrefix: fingerprint) }) else {
            throw InstancesError.notFound("Image \(fingerprint.prefix(12)) was deleted: its layer cannot be brought to member \(member.name)")
        }
        _ = try await fetch.ensureLayer(image)
    }

    func row(_ name: String) async throws -> InstanceRow {
        guard let r = try await db.transaction({ tx in try tx.instance(name: name) }) else {
            throw InstancesError.notFound("Instance \"\(name)\" not found")
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
                throw InstancesError.invalid("Image source needs an alias or a fingerprint")
            }
            throw InstancesError.notFound("Image \"\(alias ?? fingerprint ?? "")\" not found: import it with lxdctl image import")
        }
        return image
    }

    /// The container's spec; for a start (`forStart`), with the image's templates rendered
    /// into `files` (InstanceTemplates): none for an image without templates.
    func spec(for r: InstanceRow, forStart: Bool = false) throws -> ContainerSpec {
        guard let layer = layers.layer(fingerprint: r.imageFingerprint) else {
            throw InstancesError.internal("Image layer \(r.imageFingerprint.prefix(12)) of instance \(r.name) is missing on member \(member.name)")
        }
        var env: [String: String] = [:]
        for (k, v) in r.config where k.hasPrefix("environment.") { env[String(k.dropFirst(12))] = v }
        let files = forStart ? try InstanceTemplates.files(for: r, layer: layer) { name in
            try layers.template(fingerprint: layer.fingerprint, name: name)
        } : []
        return ContainerSpec(
            instance: r.ref, layerRootfs: layer.rootfsPath,
            idmap: r.idmapBase.map { IDMap(hostBase: UInt32($0), size: UInt32(IDMapRange.block)) },
            limits: Self.runtimeLimits(ResourceLimits(config: r.config)),
            environment: env, files: files)
    }

    static func runtimeLimits(_ l: ResourceLimits) -> Limits {
        Limits(memoryBytes: l.memoryBytes, cpuCores: l.cpu?.cores, processes: l.processes)
    }

    func apiInstance(_ r: InstanceRow, withState: Bool) -> Instance {
        let st = host.state(instance: r.ref)
        let status: StatusCode = st?.running == true ? .running : .stopped
        var i = Instance(
            name: r.name, status: status, architecture: r.architecture, config: r.config, location: r.location,
            createdAt: Self.iso(r.createdAt), lastUsedAt: Self.iso(r.lastUsedAt ?? Date(timeIntervalSince1970: 0)))
        i.stateful = hasSavedState(r.ref)
        if withState { i.state = apiState(r, st) }
        return i
    }

    func apiState(_ r: InstanceRow, _ known: ContainerState?? = nil) -> InstanceState {
        let st = known ?? host.state(instance: r.ref)
        let running = st?.running == true
        return InstanceState(
            status: running ? .running : .stopped,
            pid: running ? Int64(st!.pid) : 0,
            processes: running ? Int64(st!.processes) : 0,
            memory: .init(usage: running ? st!.memoryUsage : 0, usagePeak: running ? st!.memoryPeak : 0, total: 0),
            cpu: .init(usage: running ? st!.cpuUsageNanoseconds : 0))
    }

    static func iso(_ date: Date) -> String { OperationRegistry.timestamp(date) }

    /// Where a stateful stop keeps the dumped process tree until the next start.
    func stateDirectory(_ instance: InstanceRef) -> String { host.savedStateDirectory(of: instance) }

    func hasSavedState(_ instance: InstanceRef) -> Bool {
        FileManager.default.fileExists(atPath: "\(stateDirectory(instance))/inventory.img")
    }
}

extension InstanceRow {
    /// The row's identity, from which every host-side name of the instance comes.
    var ref: InstanceRef { InstanceRef(project: project, name: name) }
}
