import Dispatch

/// Runs blocking file work (hashing, unpacking, creating and removing root filesystems) off
/// Swift's cooperative pool. A queue per call, not `DispatchQueue.global()`: on Linux that root
/// queue also feeds the cooperative threads (one per core), so eight concurrent deletes there left
/// no thread to answer a forwarded state read within its deadline (see Dqlite's runBlocking).
enum Blocking {
    static func run<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { c in
            DispatchQueue(label: "instances-blocking").async { c.resume(with: Result { try work() }) }
        }
    }
}
