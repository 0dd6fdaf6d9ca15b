import APITypes
import ClusterDB
import Foundation
import Images
import InstanceConfig
import Logging
import Operations
import Runtime

/// Asks another member to materialise instances whose rows are already placed there (the agent
/// implements it over the members' mutual-TLS links).
public protocol InstanceMaterialiser: Sendable {
    /// `POST /internal/instances/materialise` on `member`; returns the owner's operation.
    func materialise(_ post: InstancesMaterialisePost, on member: String) async throws -> APIOperation
    /// `GET /1.0/operations/ID` on `member`.
    func operation(_ id: String, on member: String) async throws -> APIOperation
}

/// How a launch is placed, besides the body LXD defines.
public struct CreateOptions: Sendable, Equatable {
    /// `?target=`: a member name, or `@group`.
    public var target: String?
    /// Batch launch (extension `instances_create_count`).
    public var count: Int?
    public var namePrefix: String?
    /// Scheduler policy for this launch (extension `instances_scheduler_policy`).
    public var policy: String?

    public init(target: String? = nil, count: Int? = nil, namePrefix: String? = nil, policy: String? = nil) {
        self.target = target
        self.count = count
        self.namePrefix = namePrefix
        self.policy = policy
    }

    /// Largest `count` one request may ask for.
    public static let maxCount = 5000
}

extension InstanceLifecycle {
    /// How many instances one owner creates at once. A start mostly waits (helper spawn, cgroup and
    /// mount syscalls serialised in the kernel), so 8 in flight nearly doubled the rate of 4 on two
    /// cores; 16 starved the database's raft heartbeats (leadership lost mid-commit).
    static let materialiseWidth = 8

    /// Validate → place and insert in one transaction → materialise on the owners. See DESIGN
    /// "How a launch travels". Nothing is created when validation or placement fails.
    public func create(_ post: InstancesPost, options: CreateOptions) async throws -> APIOperation {
        if post.source.type == "copy" { return try await copy(post, options: options) }
        let names = try Self.names(post, options)
        for name in names {
            do { try InstanceName.validate(name) } catch { throw InstancesError.invalid(error.description) }
        }
        if let type = post.type, type != "container" {
            throw InstancesError.invalid("Unsupported instance type \"\(type)\": only containers are supported")
        }
        guard post.source.type == "image" else {
            throw InstancesError.invalid("Unsupported source type \"\(post.source.type)\": use an image (alias or fingerprint) or copy an instance")
        }
        if let policy = options.policy { _ = try PlacementPlanner.parsePolicy(policy) }
        let userConfig = post.config ?? [:]
        do { try InstanceConfigSchema.validate(user: userConfig) } catch { throw InstancesError.invalid("Invalid config: \(error.description)") }
        if let devices = post.devices, !devices.isEmpty {
            throw InstancesError.invalid("Devices are not supported yet: remove \(devices.keys.sorted().joined(separator: ", "))")
        }
        // Refused rather than ignored until they exist: an instance that is not what was asked
        // for is worse than an error.
        if post.ephemeral == true {
            throw InstancesError.invalid("Ephemeral instances are not supported yet: launch it without --ephemeral and delete it when done")
        }
        if let unknown = post.profiles?.first(where: { $0 != "default" }) {
            throw InstancesError.notFound("Profile \"\(unknown)\" not found: only the implicit default profile exists (profiles are not supported yet)")
        }

        let image = try await context.resolveImage(alias: post.source.alias, fingerprint: post.source.fingerprint)
        let layer = context.layers.layer(fingerprint: image.fingerprint)
        let architecture = layer?.metadata.architecture ?? image.architecture
        let privileged = InstanceConfigSchema.isTrue(userConfig["security.privileged"])
        var config = userConfig
        config["volatile.base_image"] = image.fingerprint
        // As LXD: the image's `create` templates render at the first start, which removes the key.
        config[InstanceTemplates.pendingKey] = ImageTemplate.Trigger.create.rawValue
        for (k, v) in layer?.metadata.properties ?? image.properties { config["image.\(k)"] = v }
        let finalConfig = config
        let footprint = InstanceFootprint(instanceConfig: userConfig)
        let placementGroup = userConfig[Transaction.placementGroupKey].flatMap { $0.isEmpty ? nil : $0 }
        let seed = UInt64.random(in: 0...UInt64.max)
        // Stored on every row of this launch: tells whether a COMMIT with an unknown outcome applied.
        let requestID = UUID().uuidString

        // One transaction: name check, placement against the allocations it reads, id ranges and
        // the inserts. dqlite serialises writers, and a transaction that lost the race is re-run
        // whole, so concurrent launches through any members can never oversubscribe a member.
        let planned: [PlannedInstance]
        do {
            planned = try await reconcilingUnknownOutcome(requestID: requestID) { tx in
                let taken = try tx.existingInstanceNames(names)
                if !taken.isEmpty {
                    let shown = taken.prefix(5).joined(separator: ", ") + (taken.count > 5 ? " and \(taken.count - 5) more" : "")
                    throw InstancesError.conflict(names.count == 1 ? "Instance \"\(names[0])\" already exists"
                                            : "Instances already exist: \(shown); nothing was created")
                }
                let plan: [PlannedInstance]
                // A placement group's rule holds on a single member too (anti-affinity: one instance).
                if placementGroup == nil, options.target == nil || options.target == context.member.name, try tx.members().count <= 1 {
                    // A single member takes everything, as a standalone LXD does.
                    plan = names.map { PlannedInstance(name: $0, memberID: context.member.id, memberName: context.member.name) }
                } else {
                    plan = try PlacementPlanner.place(names, footprint: footprint, target: options.target, policy: options.policy,
                                                      placementGroup: placementGroup, seed: seed, in: tx)
                }
                var bases: [Int64?] = Array(repeating: nil, count: plan.count)
                if !privileged {
                    guard let free = IdmapAllocator.lowestFree(count: plan.count, used: try tx.idmapBasesInUse(), rangeStart: context.idmaps.start,
                                                                rangeSize: context.idmaps.size, block: IDMapRange.block) else {
                        throw ClusterDBError.exhausted("uid/gid range \(context.idmaps.start)+\(context.idmaps.size) has fewer than \(plan.count) free blocks")
                    }
                    bases = free
                }
                var rows: [(instance: NewInstance, footprint: InstanceFootprint)] = []
                rows.reserveCapacity(plan.count)
                for (index, placed) in plan.enumerated() {
                    var cfg = finalConfig
                    if let base = bases[index] { cfg["volatile.idmap.base"] = "\(base)" }
                    rows.append((NewInstance(name: placed.name, memberID: placed.memberID, imageFingerprint: image.fingerprint,
                                             architecture: architecture, config: cfg, powerState: .stopped, idmapBase: bases[index],
                                             requestID: requestID),
                                 footprint))
                }
                try tx.insertInstances(rows)
                return plan
            }
        } catch let e as ClusterDBError {
            if case .alreadyExists = e { throw InstancesError.conflict("Instance \"\(names[0])\" already exists (or a concurrent launch took a name): retry") }
            throw e
        }
        context.logger.info("instances placed", metadata: [
            "count": "\(planned.count)", "members": "\(Dictionary(grouping: planned, by: \.memberName).mapValues(\.count))",
        ])

        let start = post.start ?? false
        if planned.count == 1 {
            return try await materialise(InstancesMaterialisePost(names: names, start: start), on: planned[0].memberName)
        }
        return try await materialiseBatch(planned, start: start)
    }

    /// Runs the placing transaction; when its COMMIT outcome is unknown (leadership lost mid-commit),
    /// looks the launch's rows up by `requestID`: present → it applied; absent → runs it again.
    func reconcilingUnknownOutcome(
        requestID: String, _ body: @escaping @Sendable (Transaction) throws -> [PlannedInstance]
    ) async throws -> [PlannedInstance] {
        var attempt = 0
        while true {
            attempt += 1
            do {
                return try await context.db.transaction(body)
            } catch ClusterDBError.outcomeUnknown(let what) where attempt < 3 {
                let applied = try await context.db.transaction { tx in try tx.placedInstances(requestID: requestID) }
                context.logger.notice("launch commit outcome unknown; reconciled by request id",
                              metadata: ["request-id": "\(requestID)", "applied": "\(!applied.isEmpty)", "error": "\(what)"])
                if !applied.isEmpty {
                    return applied.map { PlannedInstance(name: $0.name, memberID: $0.memberID, memberName: $0.location) }
                }
            }
        }
    }

    /// Instance names of a launch: the one given, or `prefix` + zero-padded index for a batch.
    static func names(_ post: InstancesPost, _ options: CreateOptions) throws -> [String] {
        guard let count = options.count else {
            if options.namePrefix != nil { throw InstancesError.invalid("name_prefix needs count") }
            return [post.name]
        }
        guard count >= 1, count <= CreateOptions.maxCount else {
            throw InstancesError.invalid("count must be between 1 and \(CreateOptions.maxCount), got \(count)")
        }
        guard let prefix = options.namePrefix ?? (post.name.isEmpty ? nil : post.name + "-") else {
            throw InstancesError.invalid("A launch with count needs name_prefix (or name, used as name-)")
        }
        let width = String(count).count
        return (1...count).map { index in
            let digits = String(index)
            return prefix + String(repeating: "0", count: width - digits.count) + digits
        }
    }

    /// On the owner: creates (and maybe starts) instances whose rows were placed here. Answers at
    /// once with an operation; the work runs inside it, `materialiseWidth` instances at a time,
    /// reporting `progress` ({done, failed, total}) in its metadata.
    public func materialise(_ post: InstancesMaterialisePost) async throws -> APIOperation {
        guard !post.names.isEmpty else { throw InstancesError.invalid("No instance names given") }
        let names = post.names
        // Claimed before anything is created: the placing member deletes only rows nobody claimed.
        let rows: [InstanceRow]
        do {
            rows = try await context.db.transaction { tx in try tx.claimInstances(names, memberID: context.member.id) }
        } catch ClusterDBError.notFound(let what) {
            throw InstancesError.notFound("Member \(context.member.name) has no unclaimed \(what): nothing created")
        } catch ClusterDBError.alreadyExists(let what) {
            throw InstancesError.conflict("On member \(context.member.name), \(what): nothing more created")
        }
        let start = post.start
        let total = rows.count
        let description = total == 1 ? (start ? "Creating and starting instance" : "Creating instance")
            : (start ? "Creating and starting \(total) instances" : "Creating \(total) instances")
        return await context.operations.start(
            description: description, resources: ["instances": rows.map(\.ref.apiPath)],
            metadata: ["progress": Self.progress(done: 0, failed: 0, total: total)]
        ) { [self] operation in
            try await self.materialiseRows(rows, start: start, operation: operation)
            return ["progress": Self.progress(done: total, failed: 0, total: total)]
        }
    }

    static func progress(done: Int, failed: Int, total: Int) -> JSONValue {
        .object(["done": .int(done), "failed": .int(failed), "total": .int(total)])
    }

    /// The rows' containers, created (and started) here; a failed one is undone (host and row)
    /// and named in the error, the others stay.
    func materialiseRows(_ rows: [InstanceRow], start: Bool, operation: OperationContext) async throws {
        // Image layers first, once each: a missing one is fetched from a member that has it.
        for fingerprint in Set(rows.map(\.imageFingerprint)) where context.layers.layer(fingerprint: fingerprint) == nil {
            do {
                try await context.ensureLayer(fingerprint)
            } catch {
                let names = rows.filter { $0.imageFingerprint == fingerprint }.map(\.name)
                _ = try? await context.db.transaction { tx in try tx.deleteInstances(names) }
                throw InstancesError.internal("Failed to create \(names.count == 1 ? "instance \(names[0])" : "\(names.count) instances"): \(error)")
            }
        }

        var done = 0
        var failures: [(instance: InstanceRef, error: any Error)] = []
        var started: [InstanceRef] = []
        await withTaskGroup(of: (InstanceRef, (any Error)?).self) { group in
            var next = 0
            func launch() {
                let row = rows[next]
                next += 1
                group.addTask { [self] in
                    do {
                        try await self.context.locks.withLock(row.ref) {
                            let spec = try self.context.spec(for: row, forStart: start)
                            // start creates the root filesystem itself.
                            if start { _ = try await self.context.host.start(spec) } else { try await Blocking.run { try self.context.host.create(spec) } }
                        }
                        return (row.ref, nil)
                    } catch {
                        return (row.ref, error)
                    }
                }
            }
            while next < rows.count, next < Self.materialiseWidth { launch() }
            while let (instance, error) = await group.next() {
                if let error { failures.append((instance, error)) } else { started.append(instance) }
                done += 1
                if rows.count > 1 { await operation.setMetadata("progress", Self.progress(done: done, failed: failures.count, total: rows.count)) }
                if next < rows.count { launch() }
            }
        }
        // One batch is one project: the rows were claimed by name in it.
        if start, !started.isEmpty {
            let names = started.map(\.name), project = started[0].project
            let rendered = Set(rows.filter { $0.config[InstanceTemplates.pendingKey] != nil }.map(\.name))
            let applied = names.filter(rendered.contains)
            try await context.db.idempotentTransaction { tx in
                try tx.updateInstancesPowerState(names, project: project, .running)
                if !applied.isEmpty { try tx.removeInstanceConfigKey(InstanceTemplates.pendingKey, names: applied, project: project) }
            }
        }
        for instance in started { context.announceCreated(instance, started: start) }
        guard !failures.isEmpty else { return }
        // Never leave a half-existing instance: undo the host side, then the rows.
        for (instance, error) in failures {
            context.logger.warning("create failed, undoing", metadata: ["instance": "\(instance)", "error": "\(error)"])
            try? await context.host.stop(instance: instance, force: true, timeout: .seconds(5))
            try? await Blocking.run { try self.context.host.delete(instance: instance) }
        }
        let failed = failures.map(\.instance.name), failedProject = failures[0].instance.project
        try? await context.db.idempotentTransaction { tx in _ = try tx.deleteInstances(failed, project: failedProject) }
        if rows.count == 1 {
            throw InstancesError.internal("Failed to \(start ? "start" : "create") instance \(failed[0]): \(failures[0].error)")
        }
        let detail = failures.prefix(3).map { "\($0.instance): \($0.error)" }.joined(separator: "; ")
        throw InstancesError.internal("Failed to create \(failures.count) of \(rows.count) instances on member \(context.member.name) (removed): \(detail)")
    }

    /// The owner's operation (this member's own, or another's) for instances placed on `owner`;
    /// their rows go when the owner cannot be reached or refuses.
    func materialise(_ post: InstancesMaterialisePost, on owner: String) async throws -> APIOperation {
        do {
            if owner == context.member.name { return try await materialise(post) }
            guard let materialiser = context.materialiser else { throw InstancesError.unavailable("this member cannot reach other members") }
            return try await materialiser.materialise(post, on: owner)
        } catch {
            // The request may have reached the owner and only its answer been lost: rows the owner
            // claimed are being created there and stay; the rest go.
            let names = post.names
            let claimed = (try? await context.db.idempotentTransaction { tx in try tx.releaseUnclaimedInstances(names) })?.claimed
            let what = names.count == 1 ? "instance \(names[0])" : "\(names.count) instances"
            guard let claimed else {
                throw InstancesError.unavailable("Member \(owner) could not be asked to create \(what), and whether it took them is unknown (the database did not answer): check with lxdctl list. Error: \(error)")
            }
            if claimed.isEmpty {
                if owner == context.member.name { throw error }
                throw InstancesError.unavailable("Member \(owner) could not create \(what), so nothing was created there: \(error)")
            }
            context.logger.warning("owner took instances but its answer was lost", metadata: [
                "owner": "\(owner)", "claimed": "\(claimed.count)", "requested": "\(names.count)", "error": "\(error)"])
            let taken = claimed.count == 1 ? "instance \(claimed[0])" : "\(claimed.count) instances (\(claimed.prefix(3).joined(separator: ", "))…)"
            let gone = names.count - claimed.count
            throw InstancesError.unavailable("Member \(owner)'s answer was lost, but it took \(taken) and is creating \(claimed.count == 1 ? "it" : "them") (lxdctl list shows progress)\(gone > 0 ? "; the other \(gone) were removed" : ""): \(error)")
        }
    }

    /// A batch: one materialise call per owner (this member's share runs here), then one
    /// operation here that follows them all and sums their progress.
    func materialiseBatch(_ planned: [PlannedInstance], start: Bool) async throws -> APIOperation {
        let total = planned.count
        let byOwner = Dictionary(grouping: planned, by: \.memberName)
        // Every owner is asked before answering, so an unreachable one is reported now.
        let parts: [(owner: String, count: Int, result: Result<APIOperation, any Error>)] = await withTaskGroup(
            of: (String, Int, Result<APIOperation, any Error>).self
        ) { group in
            for (owner, share) in byOwner {
                let post = InstancesMaterialisePost(names: share.map(\.name), start: start)
                group.addTask { [self] in
                    do {
                        let op = try await self.materialise(post, on: owner)
                        return (owner, share.count, .success(op))
                    } catch {
                        return (owner, share.count, .failure(error))
                    }
                }
            }
            var all: [(owner: String, count: Int, result: Result<APIOperation, any Error>)] = []
            for await part in group { all.append((part.0, part.1, part.2)) }
            return all.sorted { $0.owner < $1.owner }
        }
        let refused = parts.compactMap { part -> String? in
            if case .failure(let error) = part.result { return "\(part.owner) (\(part.count)): \(error)" }
            return nil
        }
        let running = parts.compactMap { part -> (owner: String, count: Int, op: APIOperation)? in
            if case .success(let op) = part.result { return (part.owner, part.count, op) }
            return nil
        }
        if running.isEmpty { throw InstancesError.unavailable("No member could create the instances: \(refused.joined(separator: "; "))") }
        let refusedCount = parts.filter { if case .failure = $0.result { return true }; return false }.map(\.count).reduce(0, +)
        let perMember = JSONValue.object(Dictionary(uniqueKeysWithValues: running.map { ($0.owner, JSONValue.int($0.count)) }))

        return await context.operations.start(
            description: start ? "Creating and starting \(total) instances" : "Creating \(total) instances",
            resources: ["instances": planned.map { InstanceRef(name: $0.name).apiPath }],
            metadata: ["progress": Self.progress(done: refusedCount, failed: refusedCount, total: total), "members": perMember]
        ) { [self] operation in
            var errors = refused
            var pending = running
            var finished: [String: (done: Int, failed: Int)] = [:]
            var current: [String: (done: Int, failed: Int)] = [:]
            var misses: [String: Int] = [:]
            while !pending.isEmpty {
                try await Task.sleep(for: .milliseconds(200))
                var still: [(owner: String, count: Int, op: APIOperation)] = []
                for part in pending {
                    let op: APIOperation?
                    if part.owner == self.context.member.name {
                        op = await self.context.operations.get(part.op.id)
                    } else {
                        op = try? await self.context.materialiser?.operation(part.op.id, on: part.owner)
                    }
                    guard let op else {
                        // An owner that stops answering is given up after ~10 s.
                        misses[part.owner, default: 0] += 1
                        if misses[part.owner]! > 50 {
                            errors.append("\(part.owner): stopped answering about operation \(part.op.id)")
                            finished[part.owner] = (current[part.owner]?.done ?? 0, part.count - (current[part.owner]?.done ?? 0))
                        } else {
                            still.append(part)
                        }
                        continue
                    }
                    misses[part.owner] = 0
                    let figures = Self.figures(op, total: part.count)
                    current[part.owner] = figures
                    switch op.statusCode {
                    case StatusCode.success.rawValue:
                        finished[part.owner] = (part.count, 0)
                    case StatusCode.failure.rawValue, StatusCode.cancelled.rawValue:
                        finished[part.owner] = (part.count, max(figures.failed, 1))
                        errors.append("\(part.owner): \(op.err)")
                    default:
                        still.append(part)
                    }
                }
                pending = still
                var done = refusedCount
                var failed = refusedCount
                for part in running {
                    let figures = finished[part.owner] ?? current[part.owner] ?? (0, 0)
                    done += figures.done
                    failed += figures.failed
                }
                await operation.setMetadata("progress", Self.progress(done: done, failed: failed, total: total))
            }
            if !errors.isEmpty {
                throw InstancesError.internal("Batch of \(total) instances incomplete (failed instances were removed): \(errors.joined(separator: "; "))")
            }
            return ["progress": Self.progress(done: total, failed: 0, total: total), "members": perMember]
        }
    }

    /// (done, failed) from an owner's operation metadata.
    static func figures(_ op: APIOperation, total: Int) -> (done: Int, failed: Int) {
        guard case .object(let progress)? = op.metadata?["progress"] else { return (0, 0) }
        func int(_ key: String) -> Int {
            if case .int(let v)? = progress[key] { return v }
            return 0
        }
        return (int("done"), int("failed"))
    }
}
