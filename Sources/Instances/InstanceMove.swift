import APITypes
import ClusterDB
import Dqlite
import Foundation
import InstanceConfig
import Logging
import Migration
import Operations
import Runtime

/// How a move went: what was done and what it cost.
public struct MoveReport: Sendable, Hashable, Codable {
    /// "live" (checkpoint, transfer, restore), "stateless" (stopped, copied, started there) or
    /// "cold" (a stopped instance copied).
    public var method: String
    public var from: String
    public var to: String
    /// How long the instance did not run (live and stateless moves).
    public var downtimeMilliseconds: Double?
    public var totalMilliseconds: Double
    /// A live move's memory mode ("stop-and-copy", ...); nil for stateless and cold moves.
    public var mode: String?

    public init(method: String, from: String, to: String, downtimeMilliseconds: Double?, totalMilliseconds: Double, mode: String? = nil) {
        self.method = method
        self.from = from
        self.to = to
        self.downtimeMilliseconds = downtimeMilliseconds
        self.totalMilliseconds = totalMilliseconds
        self.mode = mode
    }
}

/// The member-to-member calls of a move, from the source to the target (`MemberClient`
/// conforms). A call that throws has an unknown outcome; an answer is definite.
public protocol MoveTransport: Sendable {
    func prepareMove(_ request: MovePrepareRequest, on member: String) async throws -> MovePrepared
    /// One part of a tree stream; parts of one stream go in order, the last one marked.
    func uploadMovePart(token: String, stream: MoveStream, round: Int, part: Int, last: Bool, bytes: [UInt8],
                        on member: String) async throws
    /// A byte stream to the target's CRIU for this move's memory (a page server, or post-copy's
    /// lazy-pages daemon), carried over the members' link like dqlite's.
    func openPageStream(token: String, on member: String) async throws -> any PeerStream
    func handOverMove(_ request: MoveHandOverRequest, on member: String) async throws -> MoveHandOverReply
    /// Best effort: the target drops what it holds of the move.
    func discardMove(token: String, on member: String) async
}

extension InstanceLifecycle {
    /// Moves an instance of this member to member `target`, as an operation (LXD's
    /// `POST /1.0/instances/NAME?target=MEMBER` with `migration: true`). `mode`: the memory mode
    /// a live move must use ("stop-and-copy", "post-copy", "pre-copy"), nil to let the member
    /// choose; refused with the reason before anything is claimed or frozen.
    public func move(_ name: String, to target: String, live: Bool?, mode: String? = nil) async throws -> APIOperation {
        let requested = try Self.parseMigrationMode(mode)
        let row = try await context.row(name)
        let plan = try await planMove(row, to: target, live: live, mode: requested)
        return await context.operations.start(description: "Migrating instance", resources: ["instances": [row.ref.apiPath]]) { [self] op in
            await op.setMetadata("mode", plan.mode.map { .string($0.rawValue) } ?? .null)
            let report = try await self.runMove(plan, progress: { key, value in await op.setMetadata(key, value) })
            await op.setMetadata("downtime_ms", report.downtimeMilliseconds.map { .double($0) } ?? .null)
            await op.setMetadata("total_ms", .double(report.totalMilliseconds))
            await op.setMetadata("method", .string(report.method))
            return nil
        }
    }

    /// Moves `instance` (on this member) to member `target` and returns when it is done, for
    /// callers that run their own operation (cluster evacuation). `live`: nil = live when
    /// running, false = stateless.
    public func moveNow(_ instance: InstanceRef, to target: String, live: Bool?) async throws -> MoveReport {
        guard let row = try await context.db.transaction({ tx in try tx.instance(name: instance.name, project: instance.project) }) else {
            throw InstancesError.notFound("Instance \(instance) not found")
        }
        return try await runMove(try await planMove(row, to: target, live: live, mode: nil), progress: { _, _ in })
    }

    /// A mode named in a request: one of `MigrationMode`'s names, or nil.
    static func parseMigrationMode(_ text: String?) throws -> MigrationMode? {
        guard let text else { return nil }
        guard let mode = MigrationMode(rawValue: text) else {
            let shown = text.count > 40 ? String(text.prefix(40)) + "…" : text
            let names = MigrationMode.allCases.map(\.rawValue).joined(separator: ", ")
            throw InstancesError.invalid("Invalid migration mode \"\(shown)\": use one of \(names), or leave it out")
        }
        return mode
    }

    struct MovePlan: Sendable {
        var row: InstanceRow
        var target: MemberRow
        var method: MoveMachine.Method
        /// How a live move carries memory (`MoveModeRule`); nil for stateless and cold moves.
        var mode: MigrationMode?
        var transport: any MoveTransport
    }

    /// Checks what can be checked before anything changes: the target, the method, CRIU and the
    /// memory mode on both ends (the target's as it published it).
    private func planMove(_ row: InstanceRow, to target: String, live: Bool?, mode requested: MigrationMode?) async throws -> MovePlan {
        guard let transport = context.moveTransport else {
            throw InstancesError.invalid("Moving needs a cluster: member \(context.member.name) is not clustered")
        }
        guard row.location == context.member.name else {
            throw InstancesError.invalid("Instance \(row.name) is on member \(row.location), not \(context.member.name): send the move there")
        }
        guard target != context.member.name else {
            throw InstancesError.invalid("Instance \(row.name) is already on member \(target)")
        }
        guard let member = try await context.db.transaction({ tx in try tx.member(name: target) }) else {
            throw InstancesError.notFound("Cluster member \"\(target)\" not found: see lxdctl cluster list")
        }
        switch member.state {
        case .offline: throw InstancesError.unavailable("Member \(target) is offline: move to an online member")
        case .evacuated: throw InstancesError.invalid("Member \(target) is evacuated: restore it first or pick another member")
        default: break
        }
        let running = context.host.state(instance: row.ref)?.running == true
        if !running && context.hasSavedState(row.ref) {
            throw InstancesError.invalid("Instance \(row.name) holds a saved state (stateful stop): start it, then move it")
        }
        let method: MoveMachine.Method = !running ? .cold : (live == false ? .stateless : .live)
        let source: MigrationCapabilities = method == .live ? await migrationCapabilities() : .withoutCRIU("not probed: not a live move")
        // Modes this build cannot run yet (pre-copy) are refused here too, by
        // MoveModeRule.notInThisBuild: nothing of a move that cannot succeed is claimed or frozen.
        let mode: MigrationMode?
        switch MoveModeRule.decide(method: method, requested: requested, source: source, target: MemberMigrationView.capabilities(of: member),
                                   sourceName: context.member.name, targetName: target) {
        case .noMemory: mode = nil
        case .use(let chosen): mode = chosen
        case .refuse(let why): throw InstancesError.invalid("Cannot move \(row.name) to \(target): \(why)")
        }
        return MovePlan(row: row, target: member, method: method, mode: mode, transport: transport)
    }

    private func runMove(_ plan: MovePlan, progress: @escaping @Sendable (String, JSONValue) async -> Void) async throws -> MoveReport {
        let ref = plan.row.ref
        return try await context.locks.withLock(ref) {
            // The instance may have started or stopped while the operation waited for the lock.
            let running = context.host.state(instance: ref)?.running == true
            if running != (plan.method != .cold) {
                throw InstancesError.invalid("Instance \(plan.row.name) \(running ? "started" : "stopped") while its move waited: move it again")
            }
            var shell = MoveShell(context: context, lifecycle: self, plan: plan, progress: progress)
            let outcome = await shell.run()
            return try shell.report(outcome)
        }
    }
}

/// Performs a `MoveMachine`'s directives on the source member.
struct MoveShell {
    let context: InstanceContext
    let lifecycle: InstanceLifecycle
    let plan: MovePlan
    let progress: @Sendable (String, JSONValue) async -> Void
    let token = MoveShell.newToken()
    var machine: MoveMachine
    /// The upper directory as the last round saw it.
    var manifest: TreeManifest?
    var bytesSent: Int64 = 0
    let started = ContinuousClock.now
    var downtimeStart: ContinuousClock.Instant?
    var downtimeEnd: ContinuousClock.Instant?
    var phases: [(String, Duration)] = []
    /// Post-copy: the `criu dump --lazy-pages` that wrote its images and now serves the frozen
    /// tree's memory to the target's lazy-pages daemon.
    var lazyDump: LazyPagesSession?

    typealias MovePlan = InstanceLifecycle.MovePlan
    var ref: InstanceRef { plan.row.ref }
    var target: String { plan.target.name }

    init(context: InstanceContext, lifecycle: InstanceLifecycle, plan: MovePlan, progress: @escaping @Sendable (String, JSONValue) async -> Void) {
        self.context = context
        self.lifecycle = lifecycle
        self.plan = plan
        self.progress = progress
        self.machine = MoveMachine(method: plan.method)
    }

    static func newToken() -> String { RandomHex.make(bytes: 16) }

    /// Where the source dumps the checkpoint images it sends.
    var imagesDirectory: String { context.host.directory(of: ref) + "/move-out" }

    mutating func run() async -> MoveMachine.Outcome {
        context.logger.info("move starting", metadata: ["instance": "\(ref)", "target": "\(target)", "method": "\(plan.method.rawValue)",
                                                       "mode": "\(plan.mode?.rawValue ?? "-")"])
        var pending = machine.handle(.started)
        while !pending.isEmpty {
            let directive = pending.removeFirst()
            if case .report(let outcome) = directive { return outcome }
            let began = ContinuousClock.now
            let event = await perform(directive)
            phases.append(("\(directive)", ContinuousClock.now - began))
            if let event { pending += machine.handle(event) }
        }
        return .undecided("the move stopped without an outcome (state \(machine.state))")
    }

    private mutating func perform(_ directive: MoveMachine.Directive) async -> MoveMachine.Event? {
        do {
            switch directive {
            case .claim:
                await progress("phase", .string("claiming"))
                let (me, to, name, project, token) = (context.member.id, plan.target.id, ref.name, ref.project, token)
                let claimed = try await context.db.transaction { tx in
                    try tx.beginInstanceMove(name: name, project: project, from: me, to: to, token: token)
                }
                guard claimed else { return .failed("another move of \(ref) is in progress, or it left member \(context.member.name)") }
                try writeOutgoingMarker()
                return .claimed
            case .prepareTarget:
                await progress("phase", .string("preparing \(target)"))
                let prepared = try await plan.transport.prepareMove(
                    MovePrepareRequest(token: token, project: ref.project, name: ref.name, source: context.member.name, method: plan.method.rawValue,
                                       mode: plan.mode?.rawValue),
                    on: target)
                if plan.method == .live, let why = try await liveBlocker(targetCRIU: prepared.criuVersion) { return .failed(why) }
                return .prepared
            case .syncRound(let round):
                await progress("phase", .string("copying the root filesystem (round \(round))"))
                let sent = try await sendUpper(round: round)
                return .roundSynced(bytes: sent)
            case .stopSource:
                await progress("phase", .string("stopping"))
                downtimeStart = .now
                try await context.host.stop(instance: ref, force: false, timeout: .seconds(30))
                return .sourceStopped
            case .freezeSource:
                await progress("phase", .string("checkpointing"))
                guard let checkpointer = context.checkpointer else { return .failed("CRIU went missing on \(context.member.name)") }
                try? FileManager.default.removeItem(atPath: imagesDirectory)
                try FileManager.default.createDirectory(atPath: imagesDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
                downtimeStart = .now
                if plan.mode == .postCopy {
                    try await checkpointLazily(checkpointer)
                } else {
                    try await checkpointToTarget(checkpointer)
                }
                return .sourceFrozen
            case .sendFinal(let images):
                await progress("phase", .string("sending the final changes"))
                _ = try await sendUpper(round: machine.rounds.count + 1)
                if images {
                    _ = try await sendTree(root: imagesDirectory, previous: nil, stream: .state, round: 1).bytes
                }
                return .finalSent
            case .handOver:
                await progress("phase", .string(plan.method == .live ? "restoring on \(target)" : "handing over to \(target)"))
                do {
                    let reply = try await plan.transport.handOverMove(
                        MoveHandOverRequest(token: token, project: ref.project, name: ref.name, method: plan.method.rawValue, mode: plan.mode?.rawValue), on: target)
                    downtimeEnd = .now
                    if reply.committed {
                        if let message = reply.message {
                            context.logger.warning("moved, with a problem on the target", metadata: ["instance": "\(ref)", "target": "\(target)", "message": "\(message)"])
                        }
                        return .handedOver
                    }
                    return .handOverRefused("member \(target) did not take the instance: \(reply.message ?? "no reason given")")
                } catch {
                    return .handOverUnknown("member \(target) did not answer the hand-over: \(error)")
                }
            case .abortInDatabase:
                return await abortInDatabase()
            case .resumeSource(let continueFrozen, let startAgain):
                await progress("phase", .string("resuming on \(context.member.name)"))
                if let lazy = lazyDump {
                    // CRIU gives the tasks back when its transfer ends; they stay frozen until resumed below.
                    await lazy.end(killing: false)
                    lazyDump = nil
                }
                try? FileManager.default.removeItem(atPath: imagesDirectory)
                do {
                    if continueFrozen, context.host.state(instance: ref)?.running == true {
                        try context.host.resumeStopped(instance: ref)
                    }
                    if startAgain, context.host.state(instance: ref)?.running != true {
                        try await lifecycle.startLocked(plan.row)
                    }
                    removeOutgoingMarker()
                    return .resumed
                } catch {
                    return .resumeFailed("\(error)")
                }
            case .discardTarget:
                await plan.transport.discardMove(token: token, on: target)
                return nil
            case .finishSource:
                await progress("phase", .string("cleaning up on \(context.member.name)"))
                do {
                    if let lazy = lazyDump {
                        await progress("phase", .string("sending the memory to \(target)"))
                        if let failure = await lazy.finish() {
                            context.logger.critical("post-copy: the memory transfer failed after the target took over; the instance's memory on the target is incomplete",
                                                    metadata: ["instance": "\(ref)", "target": "\(target)", "error": "\(failure)"])
                        }
                        lazyDump = nil
                        // Frozen, so the tasks CRIU may have given back never run again here.
                        try context.host.killFrozen(instance: ref)
                    }
                    // The target owns the instance: end the stopped tree, remove this copy.
                    try await lifecycle.discardLocalCopy(ref)
                    return .finished
                } catch {
                    return .finishFailed("\(error)")
                }
            case .report:
                return nil
            }
        } catch {
            return .failed("\(error)")
        }
    }

    /// Dumps the instance with its memory going straight to the target's page server over the
    /// members' link (nothing of it touches the disk here); the rest of the images stay in
    /// `imagesDirectory` for the final stream. The tasks are left stopped.
    private func checkpointToTarget(_ checkpointer: Checkpointer) async throws {
        let stream = try await plan.transport.openPageStream(token: token, on: target)
        let began = ContinuousClock.now
        try await SocketPair.pumped(over: stream) { socket in
            // Containers have no network devices but lo yet: nothing to lock (a lock would stay
            // in place after --leave-stopped, and a resumed source would have to undo it).
            _ = try await checkpointer.checkpoint(instance: ref, source: context.host, into: imagesDirectory,
                                                  options: .init(networkLock: .skip, leaveStopped: true, memory: .pageServer(socket: socket)))
        }
        // CRIU waited for the page server's acknowledgement: every page is on the target.
        context.logger.debug("memory sent to the target's page server", metadata: ["instance": "\(ref)", "took": "\(ContinuousClock.now - began)"])
    }

    /// Post-copy: dumps everything but the memory, which stays in the frozen tree and is served
    /// to the target's lazy-pages daemon over the members' link once the target restores. Returns
    /// when the images are written; the dump keeps serving (`lazyDump`). The container's cgroup
    /// is frozen too: if the transfer fails after the target took over, CRIU gives the tasks
    /// back, and they must not run here a second time.
    private mutating func checkpointLazily(_ checkpointer: Checkpointer) async throws {
        let stream = try await plan.transport.openPageStream(token: token, on: target)
        let (ref, host, directory) = (ref, context.host, imagesDirectory)
        let lazy = try await LazyPagesSession.start("checkpoint for post-copy", stream: stream, logger: context.logger) { socket, status in
            _ = try await checkpointer.checkpoint(instance: ref, source: host, into: directory,
                                                  options: .init(networkLock: .skip, leaveStopped: true,
                                                                 memory: .lazy(socket: socket, status: status)))
        }
        lazyDump = lazy
        try await context.host.freeze(instance: ref)
    }

    /// Why a live move cannot use CRIU on both ends; nil when it can.
    private func liveBlocker(targetCRIU: String?) async throws -> String? {
        guard let targetCRIU else {
            return "member \(target) has no usable CRIU (run scripts/install-criu there), or move with --stateless"
        }
        guard let here = try await context.checkpointer?.features() else { return "CRIU went missing on \(context.member.name)" }
        guard here.checkPassed else { return "criu check fails on \(context.member.name): run scripts/install-criu there, or move with --stateless" }
        guard here.version.description == targetCRIU else {
            return "CRIU differs: \(here.version) on \(context.member.name), \(targetCRIU) on \(target); install the same release on both"
        }
        return nil
    }

    private mutating func sendUpper(round: Int) async throws -> Int64 {
        let (current, bytes) = try await sendTree(root: context.host.upperDirectory(of: ref), previous: manifest, stream: .rootfs, round: round)
        manifest = current
        return bytes
    }

    /// Sends what changed under `root` since `previous` (everything without one) as one stream.
    private mutating func sendTree(root: String, previous: TreeManifest?, stream: MoveStream, round: Int) async throws -> (manifest: TreeManifest, bytes: Int64) {
        let current = try await Blocking.run { try TreeManifest.scan(root: root) }
        let delta = TreeDelta.between(previous: previous, current: current)
        let (transport, token, target, progress) = (plan.transport, token, target, progress)
        let before = bytesSent
        let began = ContinuousClock.now
        let sent = try await ChunkPump.run(partSize: Self.partSize, produce: { emit in
            _ = try TreeStreamEncoder(root: root, manifest: current, delta: delta).encode(to: emit)
        }, send: { part, index, last in
            try await transport.uploadMovePart(token: token, stream: stream, round: round, part: index, last: last, bytes: part, on: target)
            let total = before + Int64(index) * Int64(Self.partSize) + Int64(part.count)
            let seconds = max((ContinuousClock.now - began).seconds, 0.001)
            await progress("bytes_sent", .int(Int(total)))
            await progress("rate_bytes_per_second", .int(Int(Double(total - before) / seconds)))
        })
        bytesSent += sent
        return (current, sent)
    }

    /// Upload parts: big enough that per-request costs vanish, small enough to bound memory.
    static let partSize = 4 << 20

    private func abortInDatabase() async -> MoveMachine.Event {
        let (name, project, token, me, target) = (ref.name, ref.project, token, context.member.id, plan.target.id)
        do {
            return try await context.db.transaction { tx -> MoveMachine.Event in
                if try tx.abortInstanceMove(name: name, project: project, token: token) { return .aborted }
                let row = try tx.instance(name: name, project: project)
                if row?.memberID == target { return .alreadyCommitted }
                if row?.memberID == me, try tx.instanceMove(name: name, project: project)?.token != token { return .aborted }
                return .abortUnavailable("the instance's row is neither here nor on the target")
            }
        } catch {
            try? await Task.sleep(for: .seconds(1))
            return .abortUnavailable("\(error)")
        }
    }

    // MARK: markers

    /// A file in the container's directory while a move from here is undecided: an agent that
    /// restarts settles the move (`InstanceLifecycle.settleMoves`).
    static let outgoingMarker = "move-outgoing.json"

    private func writeOutgoingMarker() throws {
        let marker = MoveMarker(token: token, project: ref.project, name: ref.name, peer: target, method: plan.method.rawValue)
        try marker.write(to: context.host.directory(of: ref) + "/" + Self.outgoingMarker)
    }

    private func removeOutgoingMarker() {
        unlink(context.host.directory(of: ref) + "/" + Self.outgoingMarker)
    }

    func report(_ outcome: MoveMachine.Outcome) throws -> MoveReport {
        let total = (ContinuousClock.now - started).milliseconds
        let downtime: Double? = downtimeStart.flatMap { s in downtimeEnd.map { ($0 - s).milliseconds } }
        let timings = phases.map { "\($0.0)=\(String(format: "%.1f", $0.1.milliseconds))ms" }.joined(separator: " ")
        switch outcome {
        case .moved, .movedWithLeftovers:
            if case .movedWithLeftovers(let why) = outcome {
                context.logger.error("moved, but the source's copy remains; remove it by hand", metadata: ["instance": "\(ref)", "error": "\(why)"])
            }
            context.logger.info("move done", metadata: [
                "instance": "\(ref)", "target": "\(target)", "method": "\(plan.method.rawValue)", "rounds": "\(machine.rounds)",
                "bytes": "\(bytesSent)", "downtime_ms": "\(downtime.map { String(format: "%.1f", $0) } ?? "-")",
                "total_ms": "\(String(format: "%.1f", total))", "phases": "\(timings)",
            ])
            return MoveReport(method: plan.method.rawValue, from: context.member.name, to: target, downtimeMilliseconds: downtime,
                              totalMilliseconds: total, mode: plan.mode?.rawValue)
        case .calledOff(let why):
            context.logger.warning("move called off", metadata: ["instance": "\(ref)", "target": "\(target)", "reason": "\(why)", "phases": "\(timings)"])
            let state = plan.method == .cold ? "stopped" : "running"
            throw InstancesError.internal("Moving \(ref.name) to \(target) failed: \(why). It is still on \(context.member.name), \(state)")
        case .resumeFailed(let why, let resumeError):
            context.logger.error("move called off and the source did not resume", metadata: ["instance": "\(ref)", "reason": "\(why)", "error": "\(resumeError)"])
            throw InstancesError.internal("Moving \(ref.name) to \(target) failed: \(why). It is still on \(context.member.name), but resuming it failed (\(resumeError)): stop it with --force and start it")
        case .undecided(let why):
            context.logger.critical("move undecided", metadata: ["instance": "\(ref)", "target": "\(target)", "reason": "\(why)"])
            throw InstancesError.unavailable("Moving \(ref.name) to \(target) is undecided: \(why). It stays frozen on \(context.member.name) until the database answers; restart the agent on \(context.member.name) then to settle it")
        }
    }
}

/// What a move's marker file holds (outgoing on the source, incoming on the target).
struct MoveMarker: Codable, Sendable, Equatable {
    var token: String
    var project: String
    var name: String
    /// The other end's member name.
    var peer: String
    var method: String
    /// The instance's host uid/gid block (nil: privileged): the files a move brings must be owned
    /// inside it.
    var idmapBase: Int64? = nil
    /// A live move's memory mode ("post-copy"; nil: stop-and-copy).
    var memory: String? = nil

    var postCopy: Bool { memory == MigrationMode.postCopy.rawValue }
    /// A copy's (`copyMethod`): the source's block, shifted into `idmapBase` (InstanceCopy.swift).
    var sourceIdmapBase: Int64? = nil

    var ref: InstanceRef { InstanceRef(project: project, name: name) }

    func write(to path: String) throws {
        try JSONEncoder().encode(self).write(to: URL(fileURLWithPath: path), options: .atomic)
    }

    static func read(_ path: String) -> MoveMarker? {
        guard let data = FileManager.default.contents(atPath: path), data.count < 4096 else { return nil }
        return try? JSONDecoder().decode(MoveMarker.self, from: data)
    }
}

extension Duration {
    var milliseconds: Double { Double(components.seconds) * 1000 + Double(components.attoseconds) / 1e15 }
    var seconds: Double { milliseconds / 1000 }
}
