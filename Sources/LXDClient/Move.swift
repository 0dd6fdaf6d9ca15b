import APITypes

extension LXDClient {
    /// Renames a stopped instance (`POST /1.0/instances/NAME {"name": NEW}`, as `lxc rename`
    /// sends it); waits for the operation.
    public func renameInstance(_ name: String, to newName: String) async throws {
        try await perform(.POST, APIPath.instance(name), json: InstancePost(name: newName, migration: false))
    }

    /// Moves an instance to cluster member `target` (`POST /1.0/instances/NAME?target=MEMBER`
    /// with `{"name": NAME, "migration": true, "live": …}`, the shape of `lxc move NAME --target
    /// MEMBER`): `live` false stops a running instance and starts it there. Waits for the
    /// operation, handing it to `progress` about once a second while it runs, and returns it
    /// in its final state (its metadata holds the figures of the move). `mode` names the memory
    /// mode of a live move (`migration_mode`: "stop-and-copy", "post-copy", "pre-copy"); nil lets
    /// the server choose.
    @discardableResult
    public func moveInstance(_ name: String, to target: String, live: Bool, mode: String? = nil,
                             progress: (@Sendable (APITypes.Operation) -> Void)? = nil) async throws -> APITypes.Operation {
        let op = try await start(.POST, APIPath.instance(name), query: [QueryItem("target", target)],
                                 json: InstancePost(name: name, migration: true, live: live, migrationMode: mode))
        progress?(op)
        return try await wait(operation: op.id, slice: 1, progress: progress)
    }

    /// Copies instance `name` to a new instance `newName` (`POST /1.0/instances[?target=MEMBER]`
    /// with LXD's local-copy source `{"type": "copy", "source": NAME, "live": …}`); waits for
    /// the operation, handing it to `progress` about once a second, and returns it.
    @discardableResult
    public func copyInstance(_ name: String, to newName: String, target: String?, live: Bool,
                             progress: (@Sendable (APITypes.Operation) -> Void)? = nil) async throws -> APITypes.Operation {
        let post = InstancesPost(name: newName, source: .init(type: "copy", source: name, live: live))
        let op = try await start(.POST, APIPath.instances, query: target.map { [QueryItem("target", $0)] } ?? [], json: post)
        progress?(op)
        return try await wait(operation: op.id, slice: 1, progress: progress)
    }
}
