import APITypes
import ClusterDB
import Foundation
import Images
import InstanceConfig
import Logging
import Migration
import Operations
import Runtime

/// A copy request (`POST /1.0/instances` with `source.type` "copy", as `lxc copy` sends it),
/// checked before anything is read or written. Pure.
struct CopyRequest: Equatable {
    /// The instance to copy (same project).
    var source: String
    /// The new instance's name.
    var name: String
    /// Copy a running source from a freeze (true); false or absent refuses a running source
    /// (LXD's `live` is omitted when false: `lxc copy --stateless` sends none).
    var live: Bool

    init(source: String, name: String, live: Bool) {
        (self.source, self.name, self.live) = (source, name, live)
    }

    init(_ post: InstancesPost, options: CreateOptions) throws {
        if options.count != nil || options.namePrefix != nil {
            throw InstancesError.invalid("A copy makes one instance: drop count and name_prefix")
        }
        do { try InstanceName.validate(post.name) } catch { throw InstancesError.invalid(error.description) }
        guard let source = post.source.source, !source.isEmpty else {
            throw InstancesError.invalid("A copy needs source.source: the name of the instance to copy")
        }
        do { try InstanceName.validate(source) } catch { throw InstancesError.invalid("Source: \(error.description)") }
        guard source != post.name else { throw InstancesError.conflict("Instance \"\(source)\" already exists: give the copy another name") }
        if let type = post.type, !type.isEmpty, type != "container" {
            throw InstancesError.invalid("Unsupported instance type \"\(type)\": only containers are supported")
        }
        if let devices = post.devices, !devices.isEmpty {
            throw InstancesError.invalid("Devices are not supported yet: remove \(devices.keys.sorted().joined(separator: ", "))")
        }
        if post.start == true {
            throw InstancesError.invalid("A copy is created stopped: start it once the copy is done")
        }
        self.source = source
        self.name = post.name
        self.live = post.source.live ?? false
    }

    /// The copy's config: the source's, with the request's keys over it; `volatile.*` of either
    /// is dropped (what `lxc copy` sends is the source's whole config, volatile keys included:
    /// they describe the source, and the copy gets its own). Server keys (`image.*`) may be
    /// passed back unchanged; the privilege must stay the source's (the copy's files are
    /// owned in the source's kind of id map).
    static func config(source: [String: String], requested: [String: String]?) throws -> [String: String] {
        let kept = source.filter { !$0.key.hasPrefix("volatile.") }
        let asked = (requested ?? [:]).filter { !$0.key.hasPrefix("volatile.") }
        do {
            try InstanceConfigSchema.validate(user: asked, previous: kept)
        } catch {
            throw InstancesError.invalid("Invalid config: \(error.description)")
        }
        let merged = kept.merging(asked) { _, new in new }
        if InstanceConfigSchema.isTrue(merged["security.privileged"]) != InstanceConfigSchema.isTrue(source["security.privileged"]) {
            throw InstancesError.invalid("A copy keeps its source's security.privileged: copy it first, then change the key on the stopped copy")
        }
        return merged
    }
}

extension InstanceLifecycle {
    /// Copies an instance of this member to a new instance (LXD's local copy). The copy is
    /// placed on `options.target` when given, else on the source's member, under the same rules
    /// as a launch (capacity, EVACUATED and OFFLINE members, placement groups); it gets a uid/gid
    /// block of its own and is created stopped. Its row is inserted with a pending token and
    /// committed once its files are in place; a failure removes the row and the files.
    func copy(_ post: InstancesPost, options: CreateOptions) async throws -> APIOperation {
        let request = try CopyRequest(post, options: options)
        if let policy = options.policy { _ = try PlacementPlanner.parsePolicy(policy) }
        let source = try await context.row(request.source)
        guard source.location == context.member.name else {
            throw InstancesError.invalid("Instance \(source.name) is on member \(source.location), not \(context.member.name): send the copy there")
        }
        var config = try CopyRequest.config(source: source.config, requested: post.config)
        let running = context.host.state(instance: source.ref)?.running == true
        if running { try checkFreezable(source, live: request.live) }

        config["volatile.base_image"] = source.imageFingerprint
        // As LXD: the image's `copy` templates render at the copy's first start.
        config[InstanceTemplates.pendingKey] = ImageTemplate.Trigger.copy.rawValue
        let footprint = InstanceFootprint(instanceConfig: config)
        let placementGroup = config[Transaction.placementGroupKey].flatMap { $0.isEmpty ? nil : $0 }
        let seed = UInt64.random(in: 0...UInt64.max)
        let requestID = UUID().uuidString
        let token = MoveShell.newToken()
        let (name, project, me, idmaps) = (request.name, source.project, context.member, context.idmaps)
        let target = options.target ?? source.location
        let baseConfig = config
        // Written before the row exists: an agent that dies from here on settles this copy at
        // its restart (`settleCopySource`).
        var marker = CopySourceMarker(token: token, project: project, source: source.name, copy: name, target: nil)
        let sourceDirectory = context.host.directory(of: source.ref)
        do { try marker.write(in: sourceDirectory) } catch {
            throw InstancesError.internal("Cannot write the copy's marker in \(sourceDirectory) on member \(context.member.name): \(error)")
        }

        let planned: [PlannedInstance]
        do {
            planned = try await reconcilingUnknownOutcome(requestID: requestID) { tx in
                let taken = try tx.existingInstanceNames([name], project: project)
                if !taken.isEmpty {
                    throw InstancesError.conflict("Instance \"\(name)\" already exists")
                }
                let plan: [PlannedInstance]
                if placementGroup == nil, target == me.name, try tx.members().count <= 1 {
                    plan = [PlannedInstance(name: name, memberID: me.id, memberName: me.name)]
                } else {
                    plan = try PlacementPlanner.place([name], footprint: footprint, target: target, policy: options.policy,
                                                      placementGroup: placementGroup, seed: seed, in: tx)
                }
                var base: Int64?
                if source.idmapBase != nil {
                    guard let free = IdmapAllocator.lowestFree(used: try tx.idmapBasesInUse(), rangeStart: idmaps.start,
                                                               rangeSize: idmaps.size, block: IDMapRange.block) else {
                        throw ClusterDBError.exhausted("uid/gid range \(idmaps.start)+\(idmaps.size) has no free block")
                    }
                    base = free
                }
                var cfg = baseConfig
                if let base { cfg["volatile.idmap.base"] = "\(base)" }
                try tx.insertInstances([(NewInstance(project: project, name: name, memberID: plan[0].memberID,
                                                     imageFingerprint: source.imageFingerprint, architecture: source.architecture,
                                                     config: cfg, powerState: .stopped, idmapBase: base, requestID: requestID),
                                         footprint)])
                // Pending until the files are in place: nothing moves, starts from or claims it.
                guard try tx.beginInstanceMove(name: name, project: project, from: plan[0].memberID, to: plan[0].memberID, token: token) else {
                    throw InstancesError.internal("The new row of \(name) could not be marked as a pending copy")
                }
                return plan
            }
        } catch let e as ClusterDBError {
            CopySourceMarker.remove(token: token, in: sourceDirectory)
            if case .alreadyExists = e { throw InstancesError.conflict("Instance \"\(name)\" already exists (or a concurrent request took the name): retry") }
            throw e
        } catch {
            CopySourceMarker.remove(token: token, in: sourceDirectory)
            throw error
        }
        if let placed = planned.first {
            marker.target = placed.memberName
            try? marker.write(in: sourceDirectory)
        }
        guard let placed = planned.first,
              let row = try await context.db.transaction({ tx in try tx.instance(name: name, project: project) }) else {
            throw InstancesError.internal("The row of the copy \(name) vanished before its files were copied")
        }
        context.logger.info("copy placed", metadata: ["source": "\(source.ref)", "copy": "\(row.ref)", "member": "\(placed.memberName)"])

        let plan = CopyPlan(source: source, copy: row, targetName: placed.memberName, targetID: placed.memberID,
                            live: request.live, token: token)
        return await context.operations.start(description: "Copying instance",
                                              resources: ["instances": [row.ref.apiPath, source.ref.apiPath]]) { [self] op in
            let report = try await CopyShell(context: self.context, plan: plan, progress: { key, value in await op.setMetadata(key, value) }).run()
            await op.setMetadata("total_ms", .double(report.totalMilliseconds))
            if let frozen = report.downtimeMilliseconds { await op.setMetadata("frozen_ms", .double(frozen)) }
            await op.setMetadata("location", .string(plan.targetName))
            return nil
        }
    }

    /// Whether the instance is a copy whose files are still being made (its row pending).
    func isPendingCopy(_ ref: InstanceRef) async throws -> Bool {
        let move = try await context.db.transaction { tx in try tx.instanceMove(name: ref.name, project: ref.project) }
        return move.map { $0.sourceID == $0.targetID } ?? false
    }

    /// Refuses a running source that cannot be copied consistently.
    private func checkFreezable(_ source: InstanceRow, live: Bool) throws {
        guard live else {
            throw InstancesError.invalid("Instance \(source.name) is running: a copy without a freeze (--stateless) could hold half-written files. Stop it first, or copy it without --stateless (it is frozen while its last changes are copied)")
        }
        if let problem = context.host.freezeProblem(instance: source.ref) {
            throw InstancesError.invalid("Instance \(source.name) is running and cannot be frozen for a consistent copy (\(problem)): stop it first")
        }
    }
}

struct CopyPlan: Sendable {
    var source: InstanceRow
    var copy: InstanceRow
    var targetName: String
    var targetID: Int64
    var live: Bool
    var token: String
}

/// Runs one copy on the source's member: the files in one round (stopped source) or two (a
/// running one: the first while it runs, the changes since while it is frozen), to this
/// member's new container or streamed to the target's, then the commit. Every failure removes
/// the row and the copy's files.
struct CopyShell {
    let context: InstanceContext
    let plan: CopyPlan
    let progress: @Sendable (String, JSONValue) async -> Void
    let started = ContinuousClock.now

    var local: Bool { plan.targetName == context.member.name }
    var sourceRef: InstanceRef { plan.source.ref }
    var copyRef: InstanceRef { plan.copy.ref }

    init(context: InstanceContext, plan: CopyPlan, progress: @escaping @Sendable (String, JSONValue) async -> Void) {
        self.context = context
        self.plan = plan
        self.progress = progress
    }

    func run() async throws -> MoveReport {
        context.logger.info("copy starting", metadata: ["source": "\(sourceRef)", "copy": "\(copyRef)", "target": "\(plan.targetName)"])
        let figures: (bytes: Int64, frozen: Duration?)
        let sourceDirectory = context.host.directory(of: sourceRef)
        do {
            figures = try await context.locks.withLock(sourceRef) { try await self.copyUnderLock() }
        } catch {
            await undo()
            // Kept when the source could not be thawed: the agent's restart tries again.
            if !(error is CopyShell.ThawFailed) { CopySourceMarker.remove(token: plan.token, in: sourceDirectory) }
            context.logger.warning("copy failed; removed", metadata: ["source": "\(sourceRef)", "copy": "\(copyRef)", "error": "\(error)"])
            let kind = (error as? any KindedError)?.kind ?? .internal
            throw InstancesError(kind, "Copying \(plan.source.name) to \(plan.copy.name) on \(plan.targetName) failed, nothing was created: \(Self.message(error))")
        }
        CopySourceMarker.remove(token: plan.token, in: sourceDirectory)
        context.announceCreated(copyRef, started: false)
        let total = (ContinuousClock.now - started).milliseconds
        context.logger.info("copy done", metadata: [
            "source": "\(sourceRef)", "copy": "\(copyRef)", "target": "\(plan.targetName)", "bytes": "\(figures.bytes)",
            "frozen_ms": "\(figures.frozen.map { String(format: "%.1f", $0.milliseconds) } ?? "-")", "total_ms": "\(String(format: "%.1f", total))",
        ])
        return MoveReport(method: "copy", from: context.member.name, to: plan.targetName, downtimeMilliseconds: figures.frozen?.milliseconds,
                          totalMilliseconds: total)
    }

    static func message(_ error: any Error) -> String {
        if let e = error as? InstancesError { return e.message }
        return "\(error)"
    }

    /// Bytes sent, and how long the source was frozen (a running one).
    private func copyUnderLock() async throws -> (bytes: Int64, frozen: Duration?) {
        // The source may have started or stopped while the operation waited for the lock.
        let running = context.host.state(instance: sourceRef)?.running == true
        if running {
            guard plan.live else { throw InstancesError.invalid("Instance \(plan.source.name) started while its copy waited: stop it, or copy it without --stateless") }
            if let problem = context.host.freezeProblem(instance: sourceRef) {
                throw InstancesError.invalid("Instance \(plan.source.name) started and cannot be frozen (\(problem)): stop it first")
            }
        }
        let sink: any CopySink
        if local {
            sink = try await LocalCopySink.make(context: context, plan: plan)
        } else {
            sink = try await RemoteCopySink.make(context: context, plan: plan, progress: progress)
        }
        let upper = context.host.upperDirectory(of: sourceRef)
        await progress("phase", .string("copying the root filesystem"))
        var manifest = try await sink.send(root: upper, previous: nil, round: 1)
        var bytes = manifest.bytes
        var frozenFor: Duration?
        if running {
            await progress("phase", .string("freezing \(plan.source.name) for the last changes"))
            try await context.host.freeze(instance: sourceRef)
            let frozenAt = ContinuousClock.now
            // Thawed whatever the last round did (nothing between the freeze and here can throw).
            var sendError: (any Error)?
            do { manifest = try await sink.send(root: upper, previous: manifest.manifest, round: 2) } catch { sendError = error }
            do {
                try context.host.thaw(instance: sourceRef)
            } catch {
                context.logger.critical("thawing a copy's source failed", metadata: ["instance": "\(sourceRef)", "error": "\(error)"])
                throw ThawFailed(message: "\(plan.source.name) could not be thawed (\(error)): restart the agent on \(context.member.name), which thaws it")
            }
            if let sendError { throw sendError }
            bytes += manifest.bytes
            frozenFor = ContinuousClock.now - frozenAt
        }
        await progress("phase", .string("committing \(plan.copy.name)"))
        try await sink.commit()
        return (bytes, frozenFor)
    }

    struct ThawFailed: Error, CustomStringConvertible {
        let message: String
        var description: String { message }
    }

    /// The row goes first (a target still working can then no longer commit), then the files.
    private func undo() async {
        let (name, project, token) = (copyRef.name, copyRef.project, plan.token)
        do {
            _ = try await context.db.transaction { tx in try tx.discardPendingCopy(name: name, project: project, token: token) }
        } catch {
            context.logger.error("removing a failed copy's row failed; the member holding it removes it when its agent restarts",
                                 metadata: ["copy": "\(copyRef)", "error": "\(error)"])
        }
        if local {
            let (context, ref) = (context, copyRef)
            do {
                try await context.locks.withLock(ref) {
                    let host = context.host
                    try await Blocking.run { try host.delete(instance: ref) }
                }
            } catch {
                context.logger.error("removing a failed copy's files failed", metadata: ["copy": "\(copyRef)", "error": "\(error)"])
            }
        } else {
            await context.moveTransport?.discardMove(token: plan.token, on: plan.targetName)
        }
    }
}

/// Where a copy's files go: this member's new container, or the target's over the link.
protocol CopySink: Sendable {
    /// Sends what changed under `root` since `previous` (everything without one).
    func send(root: String, previous: TreeManifest?, round: Int) async throws -> (manifest: TreeManifest, bytes: Int64)
    /// Makes the copy's row final (the point after which it exists).
    func commit() async throws
}

/// A copy on this member: the same tree stream as a move, encoded and applied in process,
/// owners shifted into the copy's block.
struct LocalCopySink: CopySink {
    let context: InstanceContext
    let plan: CopyPlan
    let limits: TreeApplyLimits

    static func make(context: InstanceContext, plan: CopyPlan) async throws -> LocalCopySink {
        let limits = try InstanceLifecycle.copyLimits(sourceBase: plan.source.idmapBase, copyBase: plan.copy.idmapBase)
        let ref = plan.copy.ref
        try await context.locks.withLock(ref) {
            if context.host.state(instance: ref) != nil {
                throw InstancesError.conflict("Member \(context.member.name) already holds a container \(ref.hostName): check \(context.host.directory(of: ref)) and remove it")
            }
            let spec = try context.spec(for: plan.copy)
            let host = context.host
            try await Blocking.run { try host.create(spec) }
            // An agent that dies mid-copy finds this at its restart and removes the copy.
            let marker = MoveMarker(token: plan.token, project: ref.project, name: ref.name, peer: context.member.name,
                                    method: MoveMarker.copyMethod, idmapBase: plan.copy.idmapBase, sourceIdmapBase: plan.source.idmapBase)
            do {
                try marker.write(to: host.directory(of: ref) + "/" + InstanceLifecycle.incomingMarker)
            } catch {
                try? await Blocking.run { try host.delete(instance: ref) }
                throw error
            }
        }
        return LocalCopySink(context: context, plan: plan, limits: limits)
    }

    func send(root: String, previous: TreeManifest?, round: Int) async throws -> (manifest: TreeManifest, bytes: Int64) {
        let (destination, limits) = (context.host.upperDirectory(of: plan.copy.ref), limits)
        return try await Blocking.run {
            try InstanceLifecycle.copyTree(from: root, previous: previous, into: destination, limits: limits)
        }
    }

    func commit() async throws {
        let ref = plan.copy.ref
        let (token, me) = (plan.token, plan.targetID)
        let committed = try await context.db.transaction { tx in
            try tx.commitInstanceMove(name: ref.name, project: ref.project, token: token, to: me)
        }
        guard committed else { throw InstancesError.conflict("The row of \(ref.name) was removed while its files were copied") }
        unlink(context.host.directory(of: ref) + "/" + InstanceLifecycle.incomingMarker)
    }
}

/// A copy on another member: a move's prepare, tree stream and hand-over, with method "copy".
struct RemoteCopySink: CopySink {
    let context: InstanceContext
    let plan: CopyPlan
    let transport: any MoveTransport
    let progress: @Sendable (String, JSONValue) async -> Void

    static func make(context: InstanceContext, plan: CopyPlan, progress: @escaping @Sendable (String, JSONValue) async -> Void) async throws -> RemoteCopySink {
        guard let transport = context.moveTransport else {
            throw InstancesError.invalid("Copying to another member needs a cluster: member \(context.member.name) is not clustered")
        }
        await progress("phase", .string("preparing \(plan.targetName)"))
        _ = try await transport.prepareMove(
            MovePrepareRequest(token: plan.token, project: plan.copy.project, name: plan.copy.name, source: context.member.name,
                               method: MoveMarker.copyMethod, copyOf: plan.source.name),
            on: plan.targetName)
        return RemoteCopySink(context: context, plan: plan, transport: transport, progress: progress)
    }

    func send(root: String, previous: TreeManifest?, round: Int) async throws -> (manifest: TreeManifest, bytes: Int64) {
        let current = try await Blocking.run { try TreeManifest.scan(root: root) }
        let delta = TreeDelta.between(previous: previous, current: current)
        let (transport, token, target, progress) = (transport, plan.token, plan.targetName, progress)
        let began = ContinuousClock.now
        let sent = try await ChunkPump.run(partSize: MoveShell.partSize, produce: { emit in
            _ = try TreeStreamEncoder(root: root, manifest: current, delta: delta).encode(to: emit)
        }, send: { part, index, last in
            try await transport.uploadMovePart(token: token, stream: .rootfs, round: round, part: index, last: last, bytes: part, on: target)
            let total = Int64(index) * Int64(MoveShell.partSize) + Int64(part.count)
            await progress("bytes_sent", .int(Int(total)))
            await progress("rate_bytes_per_second", .int(Int(Double(total) / max((ContinuousClock.now - began).seconds, 0.001))))
        })
        return (current, sent)
    }

    func commit() async throws {
        let request = MoveHandOverRequest(token: plan.token, project: plan.copy.project, name: plan.copy.name, method: MoveMarker.copyMethod)
        let reply: MoveHandOverReply
        do {
            reply = try await transport.handOverMove(request, on: plan.targetName)
        } catch {
            // The answer may be lost after the target committed: the database says.
            let (name, project, target) = (plan.copy.name, plan.copy.project, plan.targetID)
            let committed = try? await context.db.transaction { tx in
                try tx.instance(name: name, project: project)?.memberID == target && tx.instanceMove(name: name, project: project) == nil
            }
            if committed == true { return }
            throw error
        }
        guard reply.committed else {
            throw InstancesError.internal("member \(plan.targetName) did not take the copy: \(reply.message ?? "no reason given")")
        }
    }
}

extension InstanceLifecycle {
    /// What a copy's tree may hold: owners in the source's block, shifted into the copy's
    /// (a privileged instance's files, with no block, are taken as they are); devices only as
    /// whiteouts.
    static func copyLimits(sourceBase: Int64?, copyBase: Int64?) throws -> TreeApplyLimits {
        var limits = moveLimits(.rootfs, idmapBase: copyBase)
        switch (sourceBase, copyBase) {
        case (nil, nil):
            break
        case let (from?, to?):
            guard let shift = OwnerShift(from: from, to: to, count: IDMapRange.block) else {
                throw InstancesError.invalid("Id blocks \(from) and \(to) are out of range")
            }
            limits.ownerShift = shift
        default:
            throw InstancesError.invalid("A copy keeps its source's security.privileged")
        }
        return limits
    }

    /// Copies the tree under `source` (what changed since `previous`) into `destination` with
    /// the tree stream, in process. Returns the source's manifest and the stream's size.
    static func copyTree(from source: String, previous: TreeManifest?, into destination: String,
                         limits: TreeApplyLimits) throws -> (manifest: TreeManifest, bytes: Int64) {
        let current = try TreeManifest.scan(root: source)
        let delta = TreeDelta.between(previous: previous, current: current)
        let applier = try TreeStreamApplier(root: destination, limits: limits)
        let report = try TreeStreamEncoder(root: source, manifest: current, delta: delta).encode { bytes in try applier.consume(bytes) }
        _ = try applier.finish()
        return (current, Int64(report.bytes))
    }
}

extension MoveMarker {
    /// The `method` of a copy's prepare, hand-over and markers.
    static let copyMethod = "copy"

    /// A copy's owner shift: from the source's block into the copy's (nil: privileged, or a move).
    var ownerShift: OwnerShift? {
        guard method == Self.copyMethod, let from = sourceIdmapBase, let to = idmapBase else { return nil }
        return OwnerShift(from: from, to: to, count: IDMapRange.block)
    }
}

/// The target's side of a copy from another member: the calls and watchdog of a move
/// (IncomingMove.swift), with a pending copy's row instead of a move of an existing one.
extension InstanceLifecycle {
    /// A move's limits; a copy's root filesystem has its owners shifted into the copy's block.
    static func moveLimits(_ stream: MoveStream, marker: MoveMarker) -> TreeApplyLimits {
        var limits = moveLimits(stream, idmapBase: marker.idmapBase)
        if stream == .rootfs { limits.ownerShift = marker.ownerShift }
        return limits
    }

    /// Target side, step 1 of a copy: the database must hold the new row here, pending with this
    /// token, and its source on the calling member; then an empty container is made for it.
    func acceptCopy(_ request: MovePrepareRequest) async throws -> MovePrepared {
        guard let copyOf = request.copyOf, (try? InstanceName.validate(copyOf)) != nil, (try? InstanceName.validate(request.name)) != nil else {
            throw InstancesError.invalid("A copy's prepare needs valid copy_of and name")
        }
        let (name, project, me, token) = (request.name, request.project, context.member.id, request.token)
        let (row, move, source) = try await context.db.transaction { tx in
            (try tx.instance(name: name, project: project), try tx.instanceMove(name: name, project: project),
             try tx.instance(name: copyOf, project: project))
        }
        guard let row, let move, let source, move.token == token, move.targetID == me, row.memberID == me,
              source.location == request.source, source.imageFingerprint == row.imageFingerprint else {
            throw InstancesError.conflict("The database holds no pending copy of \(project)/\(copyOf) from \(request.source) to \(project)/\(name) on \(context.member.name) with this token")
        }
        _ = try Self.copyLimits(sourceBase: source.idmapBase, copyBase: row.idmapBase)
        let ref = row.ref
        let marker = MoveMarker(token: token, project: project, name: name, peer: request.source, method: MoveMarker.copyMethod,
                                idmapBase: row.idmapBase, sourceIdmapBase: source.idmapBase)
        try await makeIncomingContainer(row, marker: marker, occupiedBy: "a container \(ref.hostName)")
        context.logger.info("copy accepted", metadata: ["copy": "\(ref)", "source": "\(request.source)/\(copyOf)"])
        return MovePrepared(criuVersion: nil)
    }

    /// Target side, last step of a copy: commit the row (its token); a copy whose row was
    /// removed meanwhile (its source gave up) is removed here too.
    func completeCopy(_ marker: MoveMarker) async throws -> MoveHandOverReply {
        let ref = marker.ref
        return try await context.locks.withLock(ref) { () async throws -> MoveHandOverReply in
            let (token, me) = (marker.token, context.member.id)
            let committed = try await context.db.transaction { tx in
                try tx.commitInstanceMove(name: marker.name, project: marker.project, token: token, to: me)
            }
            guard committed else {
                await context.incomingMoves.remove(token)
                try await discardLocalCopy(ref)
                return MoveHandOverReply(committed: false, message: "the copy was called off by \(marker.peer)")
            }
            unlink(context.host.directory(of: ref) + "/" + Self.incomingMarker)
            await context.incomingMoves.remove(token)
            context.announceCreated(ref, started: false)
            context.logger.info("copy committed", metadata: ["copy": "\(ref)", "source": "\(marker.peer)"])
            return MoveHandOverReply(committed: true)
        }
    }

    /// A copy that did not finish (its source went quiet or called it off, or this agent
    /// restarted): kept if its row was committed here, else its pending row and files go.
    func settleIncomingCopy(_ marker: MoveMarker) async throws {
        let (name, project, token, me) = (marker.name, marker.project, marker.token, context.member.id)
        let committed: Bool = try await context.db.transaction { tx -> Bool in
            if try tx.discardPendingCopy(name: name, project: project, token: token) { return false }
            return try tx.instance(name: name, project: project)?.memberID == me && tx.instanceMove(name: name, project: project) == nil
        }
        await context.incomingMoves.remove(token)
        if committed {
            unlink(context.host.directory(of: marker.ref) + "/" + Self.incomingMarker)
            context.logger.info("incoming copy found committed", metadata: ["copy": "\(marker.ref)"])
            return
        }
        context.logger.notice("removing a copy that did not finish", metadata: ["copy": "\(marker.ref)", "source": "\(marker.peer)"])
        try await discardLocalCopy(marker.ref)
    }

    /// At agent start, for each copy this member was the source of when the agent stopped
    /// (`copy-source-TOKEN.json` in the source's directory): the source is thawed (it may have
    /// been frozen), the copy's row removed if still pending, its target told to drop its files.
    /// A copy that committed is kept.
    func settleCopySources(in directory: String) async {
        for marker in CopySourceMarker.all(in: directory) {
            let ref = InstanceRef(project: marker.project, name: marker.source)
            do {
                try context.host.thaw(instance: ref)
                let (name, project, token) = (marker.copy, marker.project, marker.token)
                let removed = try await context.db.transaction { tx in try tx.discardPendingCopy(name: name, project: project, token: token) }
                if let target = marker.target {
                    if target == context.member.name {
                        let copy = InstanceRef(project: marker.project, name: marker.copy)
                        if removed { try await context.locks.withLock(copy) { try await discardLocalCopy(copy) } }
                    } else {
                        await context.moveTransport?.discardMove(token: marker.token, on: target)
                    }
                }
                CopySourceMarker.remove(token: marker.token, in: directory)
                context.logger.notice("settled a copy interrupted by an agent restart", metadata: [
                    "source": "\(ref)", "copy": "\(marker.copy)", "removed": "\(removed)"])
            } catch {
                context.logger.error("settling an interrupted copy failed", metadata: ["source": "\(ref)", "copy": "\(marker.copy)", "error": "\(error)"])
            }
        }
    }
}

/// On the source's member for the whole of a copy: `copy-source-TOKEN.json` in the source's
/// directory, written before the copy's row exists and removed once the copy ended (see
/// `settleCopySources`).
struct CopySourceMarker: Codable, Sendable, Equatable {
    var token: String
    var project: String
    var source: String
    var copy: String
    /// The copy's member, once placed.
    var target: String?

    static let prefix = "copy-source-"

    static func path(token: String, in directory: String) -> String { "\(directory)/\(prefix)\(token).json" }

    func write(in directory: String) throws {
        try JSONEncoder().encode(self).write(to: URL(fileURLWithPath: Self.path(token: token, in: directory)), options: .atomic)
    }

    static func remove(token: String, in directory: String) { unlink(path(token: token, in: directory)) }

    /// The markers in a directory that read back whole, with a valid token.
    static func all(in directory: String) -> [CopySourceMarker] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.filter { $0.hasPrefix(prefix) && $0.hasSuffix(".json") }.sorted().compactMap { name in
            guard let data = FileManager.default.contents(atPath: directory + "/" + name), data.count < 4096,
                  let marker = try? JSONDecoder().decode(CopySourceMarker.self, from: data), MoveToken.isValid(marker.token),
                  name == prefix + marker.token + ".json" else { return nil }
            return marker
        }
    }
}
