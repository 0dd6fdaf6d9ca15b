import APITypes
import ClusterDB
import Foundation
import InstanceConfig
import Logging
import Operations
import Runtime

/// An instance's life on this member: create (InstanceCreate.swift), start, stop, restart,
/// delete, config updates, reads, and autostart after the agent starts.
public struct InstanceLifecycle: Sendable {
    let context: InstanceContext

    // MARK: reads

    public func list(withState: Bool) async throws -> [Instance] {
        let rows = try await context.db.transaction { tx in try tx.instances() }
        return rows.map { context.apiInstance($0, withState: withState) }
    }

    public func get(_ name: String, withState: Bool) async throws -> Instance {
        context.apiInstance(try await context.row(name), withState: withState)
    }

    /// The member an instance lives on; nil when there is no such instance.
    public func location(of name: String) async throws -> String? {
        try await context.db.transaction { tx in try tx.instance(name: name) }?.location
    }

    /// This member's name, as instances' `location` shows it.
    public var memberName: String { context.member.name }

    public func state(_ name: String) async throws -> InstanceState {
        let r = try await context.row(name)
        return context.apiState(r)
    }

    // MARK: create

    /// Creates one instance where the scheduler (or `?target=`) puts it; see ``create(_:options:)``.
    public func create(_ post: InstancesPost) async throws -> APIOperation {
        try await create(post, options: CreateOptions())
    }

    // MARK: state changes

    public func changeState(_ name: String, _ put: InstanceStatePut) async throws -> APIOperation {
        let r = try await context.row(name)
        let ref = r.ref
        let force = put.force ?? false
        let stateful = put.stateful ?? false
        // LXD's -1 (the client's default) means no timeout given; anything else must be a sane number of seconds.
        if let t = put.timeout, t != -1, !(0...86_400).contains(t) {
            throw InstancesError.invalid("Invalid timeout \(t): use seconds from 0 to 86400, or -1 for the default (30 s)")
        }
        let timeout = Duration.seconds(put.timeout.flatMap { $0 >= 0 ? $0 : nil } ?? 30)
        if stateful {
            guard put.action == "stop" else { throw InstancesError.invalid("stateful applies to stop only: start restores a saved state by itself") }
            guard context.checkpointer != nil else {
                throw InstancesError.invalid("Stateful stop needs CRIU >= 4.2 on member \(context.member.name): run scripts/install-criu")
            }
        }
        switch put.action {
        case "start":
            if context.host.state(instance: ref)?.running == true { throw InstancesError.invalid("Instance \(name) is already running") }
            if try await isPendingCopy(ref) { throw InstancesError.conflict("Instance \(name) is still being copied: start it once the copy is done") }
        case "stop":
            if context.host.state(instance: ref)?.running != true { throw InstancesError.invalid("Instance \(name) is not running") }
        case "restart":
            if context.host.state(instance: ref)?.running != true { throw InstancesError.invalid("Instance \(name) is not running: use start") }
        default:
            throw InstancesError.invalid("Unsupported action \"\(put.action)\": use start, stop or restart")
        }
        return await context.operations.start(
            description: "\(put.action.prefix(1).uppercased())\(put.action.dropFirst())ing instance",
            resources: ["instances": [ref.apiPath]]
        ) { [self] _ in
            try await context.locks.withLock(ref) {
                switch put.action {
                case "start":
                    try await self.startLocked(r)
                case "stop" where stateful:
                    try await self.checkpointLocked(ref)
                case "stop":
                    try await self.stopLocked(ref, force: force, timeout: timeout)
                default:
                    try await self.stopLocked(ref, force: force, timeout: timeout)
                    try await self.startLocked(try await self.context.row(name))
                }
            }
            self.context.announceStateChange(ref, action: put.action, stateful: stateful)
            return nil
        }
    }

    func startLocked(_ r: InstanceRow) async throws {
        if context.host.state(instance: r.ref)?.running == true { return }
        let restored = context.hasSavedState(r.ref)
        if restored {
            guard let checkpointer = context.checkpointer else {
                throw InstancesError.invalid("Instance \(r.name) has a saved state but CRIU is missing on member \(context.member.name): run scripts/install-criu")
            }
            do {
                _ = try await checkpointer.restore(instance: r.ref, destination: context.host, from: context.stateDirectory(r.ref))
            } catch {
                throw InstancesError.internal("Restoring the saved state of \(r.name) failed: \(error). The state is kept; start again to retry")
            }
            try? FileManager.default.removeItem(atPath: context.stateDirectory(r.ref))
        } else {
            let spec = try context.spec(for: r, forStart: true)
            _ = try await context.host.start(spec)
        }
        // A restore carries the files of the dump: pending templates wait for a fresh start.
        let templatesApplied = !restored && r.config[InstanceTemplates.pendingKey] != nil
        try await context.db.transaction { tx in
            try tx.updateInstancePowerState(name: r.name, project: r.project, .running)
            try tx.touchInstance(name: r.name, project: r.project, lastUsedAt: Date())
            if templatesApplied { try tx.removeInstanceConfigKey(InstanceTemplates.pendingKey, names: [r.name], project: r.project) }
        }
    }

    /// Stateful stop: CRIU dumps the process tree into the instance's state directory and the
    /// container stops; the next start restores it (memory, pids, open files).
    private func checkpointLocked(_ name: InstanceRef) async throws {
        guard let checkpointer = context.checkpointer else { throw InstancesError.invalid("Stateful stop needs CRIU") }
        let dir = context.stateDirectory(name)
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        do {
            _ = try await checkpointer.checkpoint(instance: name, source: context.host, into: dir)
        } catch {
            try? FileManager.default.removeItem(atPath: dir)
            throw InstancesError.internal("Stateful stop of \(name) failed: \(error). The instance keeps running")
        }
        try await context.db.transaction { tx in try tx.updateInstancePowerState(name: name.name, project: name.project, .stopped) }
    }

    private func stopLocked(_ name: InstanceRef, force: Bool, timeout: Duration) async throws {
        try await context.host.stop(instance: name, force: force, timeout: timeout)
        try await context.db.transaction { tx in try tx.updateInstancePowerState(name: name.name, project: name.project, .stopped) }
    }

    // MARK: exits from inside

    /// A container's init ended without a stop from this member. A reboot from inside starts
    /// it again, as LXD does; a shutdown, crash or kill leaves it stopped and recorded as
    /// stopped, so the next agent start does not start it again. Under the instance's lock: a
    /// stateful stop (CRIU ends init itself) records stopped first, and then nothing is left to do.
    func initEnded(_ exit: InitExit) async {
        guard !exit.requested else { return }
        let ref = exit.instance
        do {
            try await context.locks.withLock(ref) {
                guard context.host.state(instance: ref)?.running != true,
                      let row = try await context.db.transaction({ tx in try tx.instance(name: ref.name, project: ref.project) }),
                      row.powerState == .running, row.memberID == context.member.id else { return }
                if exit.isReboot {
                    context.logger.info("instance rebooted from inside; starting it again", metadata: ["instance": "\(ref)"])
                    try await self.startLocked(row)
                    context.announce(.instanceRestarted, ref, context: ["reason": .string("reboot")])
                } else {
                    context.logger.info("instance stopped from inside", metadata: ["instance": "\(ref)", "status": "\(exit.status)"])
                    try await context.db.transaction { tx in try tx.updateInstancePowerState(name: ref.name, project: ref.project, .stopped) }
                    context.announce(.instanceStopped, ref, context: ["reason": .string("\(exit.status)")])
                }
            }
        } catch {
            context.logger.error("handling the end of an instance's init failed", metadata: ["instance": "\(ref)", "error": "\(error)"])
        }
    }

    // MARK: boot

    /// After the agent starts (host reboot or agent restart): settles unfinished renames, then
    /// starts this member's instances that are not running but should be, as LXD does:
    /// `boot.autostart=true`, or the key unset and the instance was running when last seen.
    /// Failures are logged, one instance at a time.
    public func startOnBoot() async {
        await settleUnfinishedRenames()   // so an instance starts with its files under its name
        let rows: [InstanceRow]
        do {
            rows = try await context.db.transaction { tx in try tx.instances(memberID: context.member.id) }
        } catch {
            context.logger.error("cannot list instances to autostart", metadata: ["error": "\(error)"])
            return
        }
        for r in rows where context.host.state(instance: r.ref)?.running != true {
            let autostart = r.config["boot.autostart"].map(InstanceConfigSchema.isTrue) ?? (r.powerState == .running)
            guard autostart else { continue }
            do {
                try await context.locks.withLock(r.ref) { try await self.startLocked(r) }
                context.logger.info("instance autostarted", metadata: ["instance": "\(r.ref)"])
                context.announce(.instanceStarted, r.ref, context: ["autostart": .bool(true)])
            } catch {
                context.logger.error("autostart failed", metadata: ["instance": "\(r.name)", "error": "\(error)"])
            }
        }
    }

    // MARK: delete

    public func delete(_ name: String) async throws -> APIOperation {
        let r = try await context.row(name)
        let ref = r.ref
        if context.host.state(instance: ref)?.running == true {
            throw InstancesError.invalid("Instance \(name) is running: stop it first (or delete --force)")
        }
        return await context.operations.start(description: "Deleting instance", resources: ["instances": [ref.apiPath]]) { [self] _ in
            try await context.locks.withLock(ref) {
                if self.context.host.state(instance: ref)?.running == true {
                    throw InstancesError.invalid("Instance \(name) is running: stop it first (or delete --force)")
                }
                try await Blocking.run { try self.context.host.delete(instance: ref) }
                let stillUsed: Bool = try await self.context.db.transaction { tx in
                    _ = try tx.deleteInstance(name: ref.name, project: ref.project)
                    let imageKnown = try tx.image(fingerprintPrefix: r.imageFingerprint) != nil
                    let users = try tx.instanceCount(usingImage: r.imageFingerprint)
                    return imageKnown || users > 0
                }
                // A layer outlives its image while instances use it; the last one removes it.
                if !stillUsed { _ = try? await Blocking.run { try self.context.layers.removeLayer(fingerprint: r.imageFingerprint) } }
            }
            self.context.announce(.instanceDeleted, ref)
            return nil
        }
    }

    // MARK: config

    public func update(_ name: String, _ put: InstancePut, replace: Bool) async throws {
        if let devices = put.devices, !devices.isEmpty {
            throw InstancesError.invalid("Devices are not supported yet: remove \(devices.keys.sorted().joined(separator: ", "))")
        }
        let ref = InstanceRef(name: name)   // the API addresses instances of the default project
        try await context.locks.withLock(ref) {
            let r = try await self.context.row(name)
            let running = self.context.host.state(instance: ref)?.running == true
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
                throw InstancesError.invalid("Invalid config: \(error)")
            }
            if running {
                let limits = ResourceLimits(config: next)
                if limits != ResourceLimits(config: r.config) {
                    try self.context.host.updateLimits(instance: ref, limits: InstanceContext.runtimeLimits(limits))
                }
            }
            let finalConfig = next
            try await self.context.db.transaction { tx in
                try tx.updateInstanceConfig(name: ref.name, project: ref.project, config: finalConfig)
                // The scheduler's allocation sums read these columns.
                try tx.setInstanceFootprint(name: ref.name, project: ref.project, InstanceFootprint(instanceConfig: finalConfig))
            }
        }
        context.announce(.instanceUpdated, ref)
    }
}
