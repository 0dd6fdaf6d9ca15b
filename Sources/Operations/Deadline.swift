/// Waiting for work in flight with a time limit: a hung member, link or stream must not hold
/// its caller up. Gateway (event streams from other members), Cluster (member calls) and the
/// agent (link draining) wait this way.
public enum Deadline {
    /// The task's result, or nil when `timeout` passes first (the task goes on unobserved: the
    /// caller decides whether to cancel it; a request in flight does not stop on cancellation,
    /// which is why this is not a task group that would wait for it) or the caller is cancelled.
    public static func first<T: Sendable>(_ task: Task<T, any Error>, within timeout: Duration) async -> Result<T, any Error>? {
        let (results, continuation) = AsyncStream<Result<T, any Error>?>.makeStream()
        let waiter = Task { continuation.yield(await task.result) }
        let timer = Task {
            try? await Task.sleep(for: timeout)
            continuation.yield(nil)
        }
        var iterator = results.makeAsyncIterator()
        let first = await iterator.next() ?? nil
        continuation.finish()
        timer.cancel()
        _ = waiter
        return first
    }
}
