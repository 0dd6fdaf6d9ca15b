import InstanceConfig

/// Serializes state changes per instance on this member (start/stop/delete/config/exec must
/// not interleave on one instance), while different instances proceed in parallel. Keyed by
/// (project, name): the same name in two projects is two instances.
actor InstanceLocks {
    private var held: Set<InstanceRef> = []
    private var waiting: [InstanceRef: [CheckedContinuation<Void, Never>]] = [:]

    /// How many callers wait for a lock: lets a test see a caller queue without a clock.
    var queued: Int { waiting.values.reduce(0) { $0 + $1.count } }

    func withLock<T: Sendable>(_ instance: InstanceRef, _ body: @Sendable () async throws -> T) async throws -> T {
        await acquire(instance)
        do {
            let result = try await body()
            release(instance)
            return result
        } catch {
            release(instance)
            throw error
        }
    }

    /// Holds the locks of several instances (a rename: the old and the new name), always taken
    /// in the order of `InstanceRef`'s `<`, so two callers wanting the same pair never deadlock.
    func withLocks<T: Sendable>(_ instances: Set<InstanceRef>, _ body: @Sendable () async throws -> T) async throws -> T {
        try await withLocks(instances.sorted()[...], body)
    }

    private func withLocks<T: Sendable>(_ ordered: ArraySlice<InstanceRef>, _ body: @Sendable () async throws -> T) async throws -> T {
        guard let first = ordered.first else { return try await body() }
        return try await withLock(first) { try await self.withLocks(ordered.dropFirst(), body) }
    }

    private func acquire(_ instance: InstanceRef) async {
        if !held.contains(instance) {
            held.insert(instance)
            return
        }
        await withCheckedContinuation { waiting[instance, default: []].append($0) }
    }

    private func release(_ instance: InstanceRef) {
        if var queue = waiting[instance], !queue.isEmpty {
            let next = queue.removeFirst()
            waiting[instance] = queue.isEmpty ? nil : queue
            next.resume()  // ownership passes to the next waiter
        } else {
            held.remove(instance)
        }
    }
}
