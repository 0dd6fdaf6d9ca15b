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
            return
        } catch ClusterDBError.outcomeUnknown(let what) {
            // The commit may have applied: the row decides which name the files must have.
            let now: InstanceRow?
            do {
                now = try await context.db.transaction { tx in try tx.instance(name: new.name, project: new.project) }
            } catch {
                throw InstancesError.internal("The database did not say whether renaming \(old) to \(new.name) applied (\(what)) nor answered after it (\(error)): the files stay under \(new.hostName) on member \(context.member.name). Once the database answers, if the instance is still listed as \(old.name), move containers/\(new.hostName) back to containers/\(old.hostName)")
            }
            if now?.id == r.id { return }
            failure = ClusterDBError.outcomeUnknown(what)
        } catch {
            failure = error
        }
        do {
            try await Blocking.run { try self.context.host.renameContainer(from: new, to: old) }
        } catch {
            context.logger.error("rename: the database refused the new name and the files could not be moved back", metadata: [
                "instance": "\(old)", "new": "\(new)", "database": "\(failure)", "files": "\(error)"])
            throw InstancesError.internal("Renaming \(old) to \(new.name) failed in the database (\(failure)) and moving its files back failed too (\(error)): its files are under the name \(new.name) on member \(context.member.name); rename that directory back to \(old.hostName) under containers/")
        }
        if case ClusterDBError.alreadyExists = failure {
            throw InstancesError.conflict("Instance \"\(new.name)\" already exists (created while the rename ran): choose another name")
        }
        throw InstancesError.internal("Renaming \(old) to \(new.name) failed in the database: \(failure). Nothing changed; retry")
    }
}
