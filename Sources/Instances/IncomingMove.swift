import APITypes
import ClusterDB
import Dqlite
import Foundation
import InstanceConfig
import Logging
import Migration
import Runtime

/// The moves this member is the target of, while they run: which container each fills, and the
/// tree stream being applied. A move nobody touches for `idleLimit` is settled from the
/// database (kept if committed, else its copy is removed), so a source that died never leaves a
/// half-made or a second running copy behind.
actor IncomingMoves {
    struct Entry {
        let marker: MoveMarker
        var upload: Upload?
        var busy = false
        var handingOver = false
        var lastActivity = ContinuousClock.now
        var pages: Pages?
    }

    /// The memory of a live move: received by CRIU's page server while the source dumps
    /// (stop-and-copy), or post-copy's stream parked until the hand-over starts the lazy-pages
    /// daemon on it.
    enum Pages {
        case receiving
        case received
        case failed(String)
        case parked(ParkedPages)

        var isReceiving: Bool { if case .receiving = self { true } else { false } }
        /// The page server wrote images into the state directory (the state stream adds to them).
        var wroteImages: Bool { if case .parked = self { false } else { true } }
    }

    /// Post-copy's stream from the source's dump; `done` ends the websocket's handler.
    struct ParkedPages: Sendable {
        let stream: any PeerStream
        let done: AsyncStream<Void>.Continuation

        func release() async {
            await stream.close()
            done.finish()
        }
    }

    /// The applier of one stream; used by one part at a time (`Entry.busy`), each on a blocking
    /// queue, hence unchecked: never touched concurrently.
    final class Upload: @unchecked Sendable {
        let stream: MoveStream
        let round: Int
        var nextPart = 0
        let applier: TreeStreamApplier
        init(stream: MoveStream, round: Int, applier: TreeStreamApplier) {
            self.stream = stream
            self.round = round
            self.applier = applier
        }
    }

    /// Longer than a source waits for one part (20 s) before it calls the move off.
    static let idleLimit: Duration = .seconds(45)
    private var entries: [String: Entry] = [:]

    func add(_ marker: MoveMarker) { entries[marker.token] = Entry(marker: marker) }
    func remove(_ token: String) {
        if case .parked(let parked)? = entries[token]?.pages { Task { await parked.release() } }
        entries[token] = nil
    }
    func marker(_ token: String) -> MoveMarker? { entries[token]?.marker }

    /// Claims the move for one part: the upload to feed (a new one at part 0).
    func beginPart(token: String, stream: MoveStream, round: Int, part: Int, makeApplier: () throws -> TreeStreamApplier) throws -> Upload {
        guard var e = entries[token] else { throw InstancesError.notFound("No move \(token) is expected on this member") }
        guard !e.busy, !e.handingOver else { throw InstancesError.conflict("Move \(token) is already receiving a part") }
        let upload: Upload
        if part == 0 {
            upload = Upload(stream: stream, round: round, applier: try makeApplier())
        } else {
            guard let current = e.upload, current.stream == stream, current.round == round, current.nextPart == part else {
                throw InstancesError.invalid("Move \(token): part \(part) of \(stream.rawValue) round \(round) is out of order")
            }
            upload = current
        }
        e.upload = upload
        e.busy = true
        e.lastActivity = .now
        entries[token] = e
        return upload
    }

    func endPart(token: String, finished: Bool, failed: Bool) {
        guard var e = entries[token] else { return }
        e.busy = false
        e.lastActivity = .now
        if failed || finished { e.upload = nil } else { e.upload?.nextPart += 1 }
        entries[token] = e
    }

    /// Claims the move for its hand-over; refused while a part is being applied or a stream is
    /// unfinished.
    func beginHandOver(_ token: String) throws -> MoveMarker {
        guard var e = entries[token] else { throw InstancesError.notFound("No move \(token) is expected on this member") }
        guard !e.busy, !e.handingOver, e.upload == nil else {
            throw InstancesError.conflict("Move \(token) is still receiving data")
        }
        e.handingOver = true
        entries[token] = e
        return e.marker
    }

    /// Claims the move's memory transfer (one per move): `.receiving` for the page server of a
    /// stop-and-copy move, `.parked` for post-copy's stream.
    func claimPages(_ token: String, _ pages: Pages) throws {
        guard var e = entries[token] else { throw InstancesError.notFound("No move \(token) is expected on this member") }
        guard e.pages == nil, !e.handingOver else { throw InstancesError.conflict("Move \(token) already has its memory stream") }
        e.pages = pages
        e.lastActivity = .now
        entries[token] = e
    }

    func endPages(_ token: String, error: String?) {
        entries[token]?.pages = error.map { .failed($0) } ?? .received
        entries[token]?.lastActivity = .now
    }

    /// The parked post-copy stream, handed to the hand-over (once).
    func takeParked(_ token: String) -> ParkedPages? {
        guard case .parked(let parked)? = entries[token]?.pages else { return nil }
        entries[token]?.pages = .received
        return parked
    }

    func pages(_ token: String) -> Pages? { entries[token]?.pages }

    func endHandOver(_ token: String) {
        entries[token]?.handingOver = false
        entries[token]?.lastActivity = .now
    }

    /// Moves nobody touched for `idleLimit` and that are not busy.
    func idle(now: ContinuousClock.Instant) -> [MoveMarker] {
        entries.values.filter { !$0.busy && !$0.handingOver && $0.pages?.isReceiving != true && now - $0.lastActivity > Self.idleLimit }.map(\.marker)
    }
}

extension InstanceLifecycle {
    static let incomingMarker = "move-incoming.json"

    private var incoming: IncomingMoves { context.incomingMoves }

    /// Target side, step 1: the source claimed a move of an instance to this member; get its
    /// image layer and an empty container ready.
    public func acceptMove(_ request: MovePrepareRequest) async throws -> MovePrepared {
        guard MoveToken.isValid(request.token) else { throw InstancesError.invalid("Invalid move token") }
        if request.method == MoveMarker.copyMethod { return try await acceptCopy(request) }
        guard let method = MoveMachine.Method(rawValue: request.method) else { throw InstancesError.invalid("Invalid move method \(request.method)") }
        let postCopy: Bool
        switch request.mode.map(MigrationMode.init(rawValue:)) {
        case nil, .stopAndCopy??: postCopy = false
        case .postCopy?? where method == .live: postCopy = true
        default: throw InstancesError.invalid("Invalid migration mode for a \(method.rawValue) move")
        }
        let (name, project, me) = (request.name, request.project, context.member.id)
        let (row, move) = try await context.db.transaction { tx in
            (try tx.instance(name: name, project: project), try tx.instanceMove(name: name, project: project))
        }
        guard let row, let move, move.token == request.token, move.targetID == me, row.location == request.source else {
            throw InstancesError.conflict("The database holds no move of \(project)/\(name) from \(request.source) to \(context.member.name) with this token")
        }
        let ref = row.ref
        let marker = MoveMarker(token: request.token, project: project, name: name, peer: request.source, method: method.rawValue,
                                idmapBase: row.idmapBase, memory: postCopy ? MigrationMode.postCopy.rawValue : nil)
        try await makeIncomingContainer(row, marker: marker, occupiedBy: "a container \(ref.hostName) that the database places on \(row.location)")
        context.logger.info("move accepted", metadata: ["instance": "\(ref)", "source": "\(request.source)", "method": "\(method.rawValue)"])
        var version: String?
        if let checkpointer = context.checkpointer, let features = try? await checkpointer.features(), features.checkPassed {
            version = features.version.description
        }
        return MovePrepared(criuVersion: version)
    }

    /// Makes the empty container a move or copy fills (image layer fetched if missing) and marks
    /// it with `marker`, under the instance's lock; what an earlier, uncommitted one left there
    /// is removed first. `occupiedBy` names what is there when it is not such a leftover.
    func makeIncomingContainer(_ row: InstanceRow, marker: MoveMarker, occupiedBy: String) async throws {
        let ref = row.ref
        try await context.locks.withLock(ref) {
            let dir = context.host.directory(of: ref)
            if context.host.state(instance: ref) != nil {
                guard MoveMarker.read(dir + "/" + Self.incomingMarker) != nil else {
                    throw InstancesError.conflict("Member \(context.member.name) already holds \(occupiedBy): check \(dir) and remove it")
                }
                // What an earlier move or copy to here left behind.
                try await discardLocalCopy(ref)
            }
            try await context.ensureLayer(row.imageFingerprint)
            let spec = try context.spec(for: row)
            let host = context.host
            try await Blocking.run { try host.create(spec) }
            do {
                try marker.write(to: dir + "/" + Self.incomingMarker)
            } catch {
                try? await Blocking.run { try host.delete(instance: ref) }
                throw error
            }
            await incoming.add(marker)
        }
    }

    /// Target side, step 2: one part of a tree stream (the root filesystem's changes, or the
    /// checkpoint images), applied as it comes. Hostile until checked: the applier refuses any
    /// path outside the container's directory.
    public func receiveMovePart(token: String, stream: MoveStream, round: Int, part: Int, last: Bool, bytes: [UInt8]) async throws {
        guard MoveToken.isValid(token) else { throw InstancesError.invalid("Invalid move token") }
        guard (1...1000).contains(round), (0...1_000_000).contains(part) else { throw InstancesError.invalid("Invalid round or part number") }
        guard let marker = await incoming.marker(token) else { throw InstancesError.notFound("No move \(token) is expected on this member") }
        if marker.method == MoveMarker.copyMethod, stream != .rootfs { throw InstancesError.invalid("A copy carries only its root filesystem") }
        let root = stream == .rootfs ? context.host.upperDirectory(of: marker.ref) : context.host.savedStateDirectory(of: marker.ref)
        // The page server wrote the memory's images there already.
        let keep = await incoming.pages(token)?.wroteImages == true
        let upload = try await incoming.beginPart(token: token, stream: stream, round: round, part: part) {
            if stream == .state, part == 0, !keep {
                try? FileManager.default.removeItem(atPath: root)
                try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            }
            return try TreeStreamApplier(root: root, limits: Self.moveLimits(stream, marker: marker))
        }
        do {
            try await Blocking.run {
                try bytes.withUnsafeBytes { try upload.applier.consume($0) }
                if last { _ = try upload.applier.finish() }
            }
            await incoming.endPart(token: token, finished: last, failed: false)
        } catch {
            await incoming.endPart(token: token, finished: false, failed: true)
            throw InstancesError.invalid("Move of \(marker.ref): \(stream.rawValue) round \(round) part \(part) refused: \(error)")
        }
    }

    /// Target side, during the freeze of a live move: CRIU's page server writes the memory the
    /// source's dump sends over `stream` into the instance's state directory. Returns when the
    /// dump is done (or failed); the hand-over checks how it went.
    public func receivePages(token: String, stream: any PeerStream) async {
        guard MoveToken.isValid(token), let marker = await incoming.marker(token),
              marker.method == MoveMachine.Method.live.rawValue, let checkpointer = context.checkpointer else {
            await stream.close()
            return
        }
        // Post-copy's stream waits, parked, for the hand-over to start the lazy-pages daemon on it.
        let parked: AsyncStream<Void>?
        do {
            if marker.postCopy {
                let (done, signal) = AsyncStream<Void>.makeStream()
                try await incoming.claimPages(token, .parked(IncomingMoves.ParkedPages(stream: stream, done: signal)))
                parked = done
            } else {
                try await incoming.claimPages(token, .receiving)
                parked = nil
            }
        } catch {
            context.logger.warning("page transfer refused", metadata: ["instance": "\(marker.ref)", "error": "\(error)"])
            await stream.close()
            return
        }
        if let parked {
            for await _ in parked {}
            return
        }
        let dir = context.stateDirectory(marker.ref)
        var failure: String?
        do {
            // A failure here ends the pump too, which closes the stream.
            let took = try await SocketPair.pumped(over: stream) { socket in
                try? FileManager.default.removeItem(atPath: dir)
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
                return try await checkpointer.driver.receivePages(into: dir, socket: socket)
            }
            context.logger.debug("memory of a moving instance received", metadata: ["instance": "\(marker.ref)", "took": "\(took)"])
        } catch {
            failure = "\(error)"
        }
        if let failure {
            context.logger.error("receiving the memory of a moving instance failed", metadata: ["instance": "\(marker.ref)", "error": "\(failure)"])
        }
        await incoming.endPages(token, error: failure)
    }

    /// Waits (bounded) for the page transfer of a live move to end: the source's dump returns
    /// as soon as the page server acknowledged, a moment before the page server exits here.
    private func pagesOutcome(_ token: String) async -> IncomingMoves.Pages? {
        let deadline = ContinuousClock.now + .seconds(30)
        while true {
            let state = await incoming.pages(token)
            guard state?.isReceiving == true, ContinuousClock.now < deadline else { return state }
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Starts `criu lazy-pages` on the parked stream, serving the restored tree's page faults
    /// from the source; returns once it accepts a restore.
    private func startLazyPages(_ parked: IncomingMoves.ParkedPages, directory: String,
                                checkpointer: Checkpointer) async throws -> LazyPagesSession {
        try await LazyPagesSession.start("criu lazy-pages", stream: parked.stream, logger: context.logger,
                                         release: { await parked.release() }) { socket, status in
            _ = try await checkpointer.driver.serveLazyPages(imagesDirectory: directory, socket: socket, status: status)
        }
    }

    /// What a moved tree may hold: the root filesystem's files belong to the instance's mapped
    /// ids (a privileged instance's to anyone), the checkpoint images to root; no device nodes
    /// but overlay whiteouts.
    static func moveLimits(_ stream: MoveStream, idmapBase: Int64?) -> TreeApplyLimits {
        var limits = TreeApplyLimits(devices: .whiteoutsOnly)
        switch stream {
        case .state:
            limits.ownerRange = 0...0
        case .rootfs:
            if let base = idmapBase, let low = UInt32(exactly: base), let high = UInt32(exactly: base + 65_535) {
                limits.ownerRange = low...high
            }
        }
        return limits
    }

    /// Target side, step 3: take the instance over. Live: restore it, then commit; stateless:
    /// commit, then start it; cold: commit. The commit requires the move's token, so a source
    /// that called the move off meanwhile wins and this copy is removed. Never throws after
    /// the commit: the answer then says committed, with what went wrong after.
    public func completeMove(_ request: MoveHandOverRequest) async throws -> MoveHandOverReply {
        guard MoveToken.isValid(request.token) else { throw InstancesError.invalid("Invalid move token") }
        let marker = try await incoming.beginHandOver(request.token)
        guard marker.name == request.name, marker.project == request.project else {
            await incoming.endHandOver(request.token)
            throw InstancesError.invalid("Move \(request.token) is of \(marker.ref), not \(request.project)/\(request.name)")
        }
        let ref = marker.ref
        defer { Task { await incoming.endHandOver(request.token) } }
        if marker.method == MoveMarker.copyMethod { return try await completeCopy(marker) }
        return try await context.locks.withLock(ref) { () async throws -> MoveHandOverReply in
            let began = ContinuousClock.now
            var lazyPages: LazyPagesSession?
            if marker.method == MoveMachine.Method.live.rawValue {
                guard let checkpointer = context.checkpointer else {
                    try await discardLocalCopy(ref)
                    return MoveHandOverReply(committed: false, message: "CRIU is missing on \(context.member.name)")
                }
                if marker.postCopy {
                    guard let parked = await incoming.takeParked(request.token) else {
                        try await discardLocalCopy(ref)
                        return MoveHandOverReply(committed: false, message: "the memory stream of the post-copy move did not arrive on \(context.member.name)")
                    }
                    do {
                        lazyPages = try await startLazyPages(parked, directory: context.stateDirectory(ref), checkpointer: checkpointer)
                    } catch {
                        try await discardLocalCopy(ref)
                        return MoveHandOverReply(committed: false, message: "\(error) on \(context.member.name)")
                    }
                } else {
                    switch await pagesOutcome(request.token) {
                    case .received?: break
                    case .failed(let why)?:
                        try await discardLocalCopy(ref)
                        return MoveHandOverReply(committed: false, message: "receiving the memory failed on \(context.member.name): \(why)")
                    default:
                        try await discardLocalCopy(ref)
                        return MoveHandOverReply(committed: false, message: "the memory did not arrive on \(context.member.name)")
                    }
                }
                do {
                    _ = try await checkpointer.restore(instance: ref, destination: context.host, from: context.stateDirectory(ref),
                                                       lazyPages: lazyPages != nil)
                } catch {
                    context.logger.error("restore of a moved instance failed", metadata: ["instance": "\(ref)", "error": "\(error)"])
                    await lazyPages?.end(killing: true)
                    try await discardLocalCopy(ref)
                    return MoveHandOverReply(committed: false, message: "restore failed on \(context.member.name): \(error)")
                }
            }
            let restored = ContinuousClock.now - began
            let committed: Bool
            do { committed = try await commit(marker) } catch {
                await lazyPages?.end(killing: true)
                throw error
            }
            guard committed else {
                context.logger.warning("move called off by its source before the commit; removing the copy", metadata: ["instance": "\(ref)"])
                await lazyPages?.end(killing: true)
                try await discardLocalCopy(ref)
                return MoveHandOverReply(committed: false, message: "the move was called off by \(marker.peer)")
            }
            // Committed: this member owns the instance from here on.
            unlink(context.host.directory(of: ref) + "/" + Self.incomingMarker)
            await incoming.remove(request.token)
            if let lazyPages {
                // The images go once the daemon has every page.
                let (logger, directory, began) = (context.logger, context.stateDirectory(ref), ContinuousClock.now)
                Task {
                    if let failure = await lazyPages.finish() {
                        logger.critical("post-copy: the memory transfer from the source failed; the instance's memory is incomplete",
                                        metadata: ["instance": "\(ref)", "source": "\(marker.peer)", "error": "\(failure)"])
                    } else {
                        logger.info("post-copy: every page arrived", metadata: ["instance": "\(ref)", "took": "\(ContinuousClock.now - began)"])
                    }
                    try? FileManager.default.removeItem(atPath: directory)
                }
            } else {
                try? FileManager.default.removeItem(atPath: context.stateDirectory(ref))
            }
            var problem: String?
            if marker.method == MoveMachine.Method.stateless.rawValue {
                do {
                    if let row = try await context.db.transaction({ tx in try tx.instance(name: ref.name, project: ref.project) }) {
                        try await startLocked(row)
                    }
                } catch {
                    problem = "moved to \(context.member.name) but it failed to start there: \(error)"
                }
            }
            context.announce(.instanceUpdated, ref, context: ["location": .string(context.member.name)])
            context.logger.info("move committed", metadata: ["instance": "\(ref)", "source": "\(marker.peer)", "method": "\(marker.method)"])
            return MoveHandOverReply(committed: true, message: problem, restoreMilliseconds: restored.milliseconds)
        }
    }

    /// Target side: the source called the move off; drop the copy unless it was committed.
    public func discardMove(token: String) async {
        guard MoveToken.isValid(token), let marker = await incoming.marker(token) else { return }
        do {
            try await context.locks.withLock(marker.ref) { try await settleIncoming(marker) }
        } catch {
            context.logger.error("discarding a called-off move failed", metadata: ["instance": "\(marker.ref)", "error": "\(error)"])
        }
    }

    private func commit(_ marker: MoveMarker) async throws -> Bool {
        let (token, me) = (marker.token, context.member.id)
        return try await context.db.transaction { tx in
            try tx.commitInstanceMove(name: marker.name, project: marker.project, token: token, to: me)
        }
    }

    /// Settles an incoming move whose source went quiet, after an agent restart, or when the
    /// source asks: kept if the database says this member owns the instance, else removed.
    func settleIncoming(_ marker: MoveMarker) async throws {
        if marker.method == MoveMarker.copyMethod { return try await settleIncomingCopy(marker) }
        let (name, project, me) = (marker.name, marker.project, context.member.id)
        let (row, move) = try await context.db.transaction { tx in
            (try tx.instance(name: name, project: project), try tx.instanceMove(name: name, project: project))
        }
        await incoming.remove(marker.token)
        if let row, row.memberID == me, move?.token != marker.token {
            unlink(context.host.directory(of: marker.ref) + "/" + Self.incomingMarker)
            context.logger.info("incoming move found committed", metadata: ["instance": "\(marker.ref)"])
            return
        }
        if let move, move.token == marker.token {
            // Still pending: call it off first, so the source cannot commit to a removed copy.
            let aborted = try await context.db.transaction { tx in try tx.abortInstanceMove(name: name, project: project, token: marker.token) }
            if !aborted { return try await settleIncoming(marker) }
        }
        context.logger.notice("removing the copy of a move that did not commit", metadata: ["instance": "\(marker.ref)", "source": "\(marker.peer)"])
        try await discardLocalCopy(marker.ref)
    }

    /// Removes this member's copy of an instance it does not own (running or not).
    func discardLocalCopy(_ ref: InstanceRef) async throws {
        if context.host.state(instance: ref)?.running == true {
            try await context.host.stop(instance: ref, force: true, timeout: .seconds(10))
        }
        let host = context.host
        try await Blocking.run { try host.delete(instance: ref) }
    }

    /// Settles the incoming moves nobody touched for a while (the source died or lost us).
    func settleIdleMoves() async {
        for marker in await incoming.idle(now: .now) {
            do {
                try await context.locks.withLock(marker.ref) { try await settleIncoming(marker) }
            } catch {
                context.logger.error("settling an idle incoming move failed", metadata: ["instance": "\(marker.ref)", "error": "\(error)"])
            }
        }
    }

    /// Runs until cancelled: settles incoming moves left idle (checked every 5 s).
    public func watchIncomingMoves() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(5))
            await settleIdleMoves()
        }
    }

    /// After the agent starts, before autostart: moves that were running when it stopped.
    /// Outgoing (this member was the source): called off unless committed; a frozen tree is
    /// continued, a committed one's copy removed. Incoming: kept if committed, else removed.
    public func settleMoves() async {
        let containers = context.dataDir + "/containers"
        guard let dirs = try? FileManager.default.contentsOfDirectory(atPath: containers) else { return }
        for dir in dirs.sorted() {
            if let marker = MoveMarker.read("\(containers)/\(dir)/\(Self.incomingMarker)") {
                do { try await context.locks.withLock(marker.ref) { try await settleIncoming(marker) } } catch {
                    context.logger.error("settling an incoming move failed", metadata: ["instance": "\(marker.ref)", "error": "\(error)"])
                }
            }
            await settleCopySources(in: "\(containers)/\(dir)")
            if let marker = MoveMarker.read("\(containers)/\(dir)/\(MoveShell.outgoingMarker)") {
                do { try await context.locks.withLock(marker.ref) { try await settleOutgoing(marker) } } catch {
                    context.logger.error("settling an outgoing move failed", metadata: ["instance": "\(marker.ref)", "error": "\(error)"])
                }
            }
        }
    }

    private func settleOutgoing(_ marker: MoveMarker) async throws {
        let (name, project, me, token) = (marker.name, marker.project, context.member.id, marker.token)
        let ownedHere: Bool = try await context.db.transaction { tx in
            _ = try tx.abortInstanceMove(name: name, project: project, token: token)
            return try tx.instance(name: name, project: project)?.memberID == me
        }
        let ref = marker.ref
        if ownedHere {
            // The target would drop its copy by itself after a while; tell it now.
            await context.moveTransport?.discardMove(token: token, on: marker.peer)
            if context.host.state(instance: ref)?.running == true { try context.host.resumeStopped(instance: ref) }
            try? FileManager.default.removeItem(atPath: context.host.directory(of: ref) + "/move-out")
            unlink(context.host.directory(of: ref) + "/" + MoveShell.outgoingMarker)
            context.logger.notice("a move interrupted by an agent restart was called off; the instance stays here", metadata: ["instance": "\(ref)", "target": "\(marker.peer)"])
        } else {
            try await discardLocalCopy(ref)
            context.logger.notice("a move interrupted by an agent restart had committed; removed this member's copy", metadata: ["instance": "\(ref)", "target": "\(marker.peer)"])
        }
    }
}
