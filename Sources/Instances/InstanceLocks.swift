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
