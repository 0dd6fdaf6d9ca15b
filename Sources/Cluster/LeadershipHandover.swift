import ClusterDB
import Logging
import ServiceLifecycle
import Synchronization

/// Waits for the agent's graceful shutdown, then hands database leadership over.
public struct LeadershipHandover: Service {
    let handover: @Sendable () async -> Void
    let then: @Sendable () -> Void

    public init(_ handover: @escaping @Sendable () async -> Void, then: @escaping @Sendable () -> Void) {
        self.handover = handover
        self.then = then
    }

    public func run() async throws {
        defer { then() }
        try? await gracefulShutdown()
        // Bounded: without a quorum there is no leader to ask, and stopping must not wait for one.
        let handover = self.handover
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let once = ResumeOnce(continuation)
            Task { await handover(); once.resume() }
            Task { try? await Task.sleep(for: .seconds(2)); once.resume() }
        }
    }
}

final class ResumeOnce: Sendable {
    private let continuation: Mutex<CheckedContinuation<Void, Never>?>
    init(_ c: CheckedContinuation<Void, Never>) { continuation = Mutex(c) }
    func resume() { continuation.withLock { c in c?.resume(); c = nil } }
}

extension ClusterController {
    /// dqlite 1.11 does not hand leadership over when a node stops (NOTES-dqlite.md): a leader
    /// that stops on purpose transfers it first, so writes go on without an election timeout.
    public func handOverLeadership() async {
        guard isClustered else { return }
        do {
            let configuration = try await db.databaseConfiguration()
            guard configuration.leader == local.dqliteID,
                  let target = configuration.servers.first(where: { $0.role == .voter && $0.id != local.dqliteID }) else { return }
            try await db.transferDatabaseLeadership(to: target.id)
            logger.info("database leadership handed over", metadata: ["to": "\(target.address)"])
        } catch {
            logger.warning("could not hand database leadership over before stopping", metadata: ["error": "\(error)"])
        }
    }
}
