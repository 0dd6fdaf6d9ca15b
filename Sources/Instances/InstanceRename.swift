import APITypes
import ClusterDB
import InstanceConfig
import Runtime

extension InstanceLifecycle {
    /// Renames a stopped instance on this member (its owner), as LXD's `POST /1.0/instances/NAME
    /// {"name": NEW}`: the same name rules as a launch, a running instance or a taken name is
    /// refused. The files move first, then the database row in one transaction; a failed
    /// transaction moves the files back, so the instance is whole under one name or the other.
    public func rename(_ name: String, to newName: String) async throws -> APIOperation {
        do { try InstanceName.validate(newName) } catch { throw InstancesError.invalid(error.description) }
        guard newName != name else { throw InstancesError.invalid("Instance \(name) is already called \(newName): give another name") }
        let r = try await context.row(name)
        let old = r.ref
        let new = InstanceRef(project: old.project, name: newName)
        try refuseRename(old)
        if try await context.db.transaction({ tx in try tx.instance(name: new.name, project: new.project) }) != nil {
            throw InstancesError.conflict("Instance \"\(newName)\" already exists: choose another name")
        }
        return await context.operations.start(description: "Renaming instance", resources: ["instances": [old.apiPath, new.apiPath]]) { [self] _ in
            try await context.locks.withLocks([old, new]) {
                try self.refuseRename(old)   // started or stopped statefully while this waited
                try await self.renameLocked(r, to: new)
            }
            context.announce(.instanceRenamed, new, context: ["old_name": .string(old.name)])
            return nil
        }
    }

    /// What a rename cannot carry: a running container, and a stateful stop's dump (CRIU's images
    /// record the container's paths, which the rename changes).
    private func refuseRename(_ old: InstanceRef) throws {
        if context.host.state(instance: old)?.running == true {
            throw InstancesError.invalid("Instance \(old) is running: stop it first, then rename it")
        }
        if context.hasSavedState(old) {
            throw InstancesError.invalid("Instance \(old) holds a saved state (stateful stop) that records its current paths: start it and stop it without --stateful first, then rename it")
        }
    }

    private func renameLocked(_ r: InstanceRow, to new: InstanceRef) async throws {
        let old = r.ref
        do {
            try await Blocking.run { try self.context.host.renameContainer(from: old, to: new) }
        } catch let error as RuntimeError {
            if case .alreadyRunning = error { throw InstancesError.invalid("Instance \(old) is running: stop it first, then rename it") }
            throw InstancesError.invalid("Renaming the files of \(old) on member \(context.member.name) failed: \(error)")
        }
        let failure: any Error
        do {
            try await context.db.transaction { tx in try tx.renameInstance(name: old.name, project: old.project, to: new.name) }
            finishRename(of: new)
            return
        } catch ClusterDBError.outcomeUnknown(let what) {
            // The commit may have applied: the row decides which name the files must have.
            let now: InstanceRow?
            do {
                now = try await context.db.transaction { tx in try tx.instance(name: new.name, project: new.project) }
            } catch {
                throw InstancesError.internal("The database did not say whether renaming \(old) to \(new.name) applied (\(what)) nor answered after it (\(error)): the files stay under \(new.hostName) on member \(context.member.name), marked as a rename in flight; the next start of that member's agent gives them the name the database has")
            }
            if now?.id == r.id {
                finishRename(of: new)
                return
            }
            failure = ClusterDBError.outcomeUnknown(what)
        } catch {
            failure = error
        }
        do {
            try await Blocking.run { try self.context.host.renameContainer(from: new, to: old) }
        } catch {
            context.logger.error("rename: the database refused the new name and the files could not be moved back", metadata: [
                "instance": "\(old)", "new": "\(new)", "database": "\(failure)", "files": "\(error)"])
            throw InstancesError.internal("Renaming \(old) to \(new.name) failed in the database (\(failure)) and moving its files back failed too (\(error)): its files stay under \(new.hostName) on member \(context.member.name), and the next start of its agent moves them back")
        }
        finishRename(of: old)
        if case ClusterDBError.alreadyExists = failure {
            throw InstancesError.conflict("Instance \"\(new.name)\" already exists (created while the rename ran): choose another name")
        }
        throw InstancesError.internal("Renaming \(old) to \(new.name) failed in the database: \(failure). Nothing changed; retry")
    }

    /// Clears the host's rename marker once the row holds `instance`'s name; one left behind is
    /// settled at the next agent start, to the same result.
    private func finishRename(of instance: InstanceRef) {
        do {
            try context.host.finishRename(of: instance)
        } catch {
            context.logger.warning("rename done, but its marker stays until the next agent start", metadata: ["instance": "\(instance)", "error": "\(error)"])
        }
    }

    /// At agent start, before autostart: renames this member began and did not finish (the agent
    /// died between moving the files and clearing the marker). The database decides: the files
    /// take the name this member's row has, under the locks of both names.
    func settleUnfinishedRenames() async {
        for pending in context.host.unfinishedRenames() {
            do {
                try await context.locks.withLocks([pending.from, pending.to]) {
                    let (from, to) = try await self.context.db.transaction { tx in
                        (try tx.instance(name: pending.from.name, project: pending.from.project),
                         try tx.instance(name: pending.to.name, project: pending.to.project))
                    }
                    let here = self.context.member.id
                    let name: InstanceRef
                    switch (from?.memberID == here, to?.memberID == here) {
                    case (false, true): name = pending.to
                    case (true, false): name = pending.from
                    default:
                        self.context.logger.error("an unfinished rename cannot be settled: the database has neither or both names on this member; its files stay where they are", metadata: [
                            "from": "\(pending.from)", "to": "\(pending.to)", "files": "\(pending.at.hostName)"])
                        return
                    }
                    if name != pending.at {
                        try await Blocking.run { try self.context.host.renameContainer(from: pending.at, to: name) }
                    }
                    try self.context.host.finishRename(of: name)
                    self.context.logger.notice("settled a rename the agent did not finish", metadata: [
                        "from": "\(pending.from)", "to": "\(pending.to)", "kept": "\(name)"])
                }
            } catch {
                context.logger.error("settling an unfinished rename failed; retried at the next agent start", metadata: [
                    "from": "\(pending.from)", "to": "\(pending.to)", "error": "\(error)"])
            }
        }
    }
}
