import ServiceLifecycle

/// One of the agent's background loops as a member of its ServiceGroup: it starts with the group
/// and is cancelled when the graceful shutdown reaches it. The agent lists these jobs first, so
/// they stop last, after the listeners and the leadership handover (as when they were bare tasks
/// cancelled after the group ended).
struct BackgroundJob: Service, CustomStringConvertible {
    let description: String
    let body: @Sendable () async -> Void

    init(_ name: String, _ body: @escaping @Sendable () async -> Void) {
        description = name
        self.body = body
    }

    func run() async throws {
        await cancelWhenGracefulShutdown(body)
    }

    /// Its group entry: a job that ends on its own (autostart) must not stop the agent.
    var configuration: ServiceGroupConfiguration.ServiceConfiguration {
        .init(service: self, successTerminationBehavior: .ignore)
    }
}
