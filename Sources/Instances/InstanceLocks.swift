/// Serializes state changes per instance name on this member (start/stop/delete/config/exec
/// must not interleave on one instance), while different instances proceed in parallel.
actor InstanceLocks {
    private var held: Set<String> = []
    private var waiting: [String: [CheckedContinuation<Void, Never>]] = [:]

    func withLock<T: Sendable>(_ name: String, _ body: @Sendable () async throws -> T) async throws -> T {
        await acquire(name)
        do {
            let result = try await body()
            release(name)
            return result
        } catch {
            release(name)
            throw error
        }
    }

    private func acquire(_ name: String) async {
        if !held.contains(name) {
            held.insert(name)
            return
        }
        await withCheckedContinuation { waiting[name, default: []].append($0) }
    }

    private func release(_ name: String) {
        if var queue = waiting[name], !queue.isEmpty {
            let next = queue.removeFirst()
            waiting[name] = queue.isEmpty ? nil : queue
            next.resume()  // ownership passes to the next waiter
        } else {
            held.remove(name)
        }
    }
}
