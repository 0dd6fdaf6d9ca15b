import APITypes

extension InstanceLifecycle {
    /// Renames a stopped instance on this member (its owner).
    public func rename(_ name: String, to newName: String) async throws -> APIOperation {
        throw InstancesError.unsupported("Renaming instances is not built yet")
    }
}
