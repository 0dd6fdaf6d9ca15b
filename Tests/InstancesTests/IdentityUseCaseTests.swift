import APITypes
import InstanceConfig
@testable import Instances
import Runtime
import Synchronization
import Testing

/// An instance's identity is (project, name): the host, the locks and the operations get the
/// whole of it, and the API's shapes stay LXD's for the default project.
@Suite struct IdentityUseCaseTests {
    @Test func theHostGetsTheDefaultProjectIdentity() async throws {
        try await withHarness { h in
            try await h.launch("c1", start: true)
            _ = try await h.changeState("c1", "stop")
            #expect(h.host.instances.withLock { $0 } == [InstanceRef(project: "default", name: "c1")])
            #expect(h.host.containers.withLock { $0["c1"]?.spec.instance.hostName } == "default_c1")
        }
    }

    @Test func operationResourcesKeepLXDsShape() async throws {
        try await withHarness { h in
            let create = try await h.finish(try await h.lifecycle.create(Harness.post("c1", start: true)))
            #expect(create.resources == ["instances": ["/1.0/instances/c1"]])
            let stop = try await h.changeState("c1", "stop")
            #expect(stop.resources == ["instances": ["/1.0/instances/c1"]])
            let delete = try await h.finish(try await h.lifecycle.delete("c1"))
            #expect(delete.resources == ["instances": ["/1.0/instances/c1"]])
        }
    }

    /// The same name in two projects is two instances: holding one's lock does not hold the
    /// other's. Were the key the name alone, the second caller would queue behind the first.
    @Test func locksAreKeyedByProjectAndName() async throws {
        let locks = InstanceLocks()
        let (acquired, acquire) = AsyncStream<Void>.makeStream()
        let (released, release) = AsyncStream<Void>.makeStream()
        let first = Task {
            try await locks.withLock(InstanceRef(project: "a", name: "c1")) {
                _ = acquire.yield()
                for await _ in released { break }
            }
        }
        for await _ in acquired { break }
        let got = Flag()
        let second = Task { try await locks.withLock(InstanceRef(project: "b", name: "c1")) { got.raise() } }
        // Whichever comes first: the second caller got its lock, or it queued behind the first.
        var queuedBehind = false
        while true {
            if await locks.queued > 0 { queuedBehind = true; break }
            if got.raised { break }
            await Task.yield()
        }
        #expect(!queuedBehind, "a lock on (b, c1) waited for the one on (a, c1)")
        _ = release.yield()
        try await first.value
        // A caller queued under the wrong key would never be woken: leave it, the test has failed.
        guard !queuedBehind else { return }
        try await second.value
        #expect(got.raised)
    }
}

final class Flag: Sendable {
    private let value = Atomic<Bool>(false)
    var raised: Bool { value.load(ordering: .sequentiallyConsistent) }
    func raise() { value.store(true, ordering: .sequentiallyConsistent) }
}
