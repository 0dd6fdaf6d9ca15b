import APITypes
import Glibc
import ClusterDB
import InstanceConfig
@testable import Instances
import Runtime
import Synchronization
import Testing

/// Create, start, stop, delete and update over a fake host and a real database: each test says
/// what the use case must refuse, and that a refusal or failure leaves nothing behind.
@Suite struct LifecycleUseCaseTests {
    @Test func createMakesAStoppedContainerWithARowAndAnIdmapBlock() async throws {
        try await withHarness { h in
            try await h.launch("c1")
            let row = try #require(try await h.row("c1"))
            #expect(row.location == "m1")
            #expect(row.powerState == .stopped)
            #expect(row.config["volatile.base_image"] == Harness.fingerprint)
            #expect(row.config["image.os"] == "Busybox")
            let base = try #require(row.idmapBase)
            #expect(base >= h.idmaps.start && base < h.idmaps.start + h.idmaps.size)
            #expect(h.host.callLog == ["create c1"])
            #expect(h.host.containers.withLock { $0["c1"]?.spec.idmap?.hostBase } == UInt32(base))
        }
    }

    @Test func createWithATakenNameIsRefusedAndChangesNothing() async throws {
        try await withHarness { h in
            try await h.launch("c1", config: ["limits.memory": "64MiB"])
            let before = try await h.rows()
            let calls = h.host.callLog
            #expect(await kind { _ = try await h.lifecycle.create(Harness.post("c1")) } == .conflict)
            let after = try await h.rows()
            #expect(after.map(\.name) == before.map(\.name))
            #expect(after.first?.config == before.first?.config)
            #expect(h.host.callLog == calls)
        }
    }

    @Test func batchWithOneTakenNameCreatesNoneOfIt() async throws {
        try await withHarness { h in
            try await h.launch("web-2")
            #expect(await kind {
                _ = try await h.lifecycle.create(Harness.post("web"), options: CreateOptions(count: 3))
            } == .conflict)
            #expect(try await h.rows().map(\.name) == ["web-2"])
            #expect(h.host.names == ["web-2"])
        }
    }

    @Test func batchNamesArePrefixedAndZeroPadded() throws {
        let names = try InstanceLifecycle.names(Harness.post(""), CreateOptions(count: 12, namePrefix: "n"))
        #expect(names.first == "n01" && names.last == "n12" && names.count == 12)
        #expect(throws: InstancesError.self) { _ = try InstanceLifecycle.names(Harness.post("x"), CreateOptions(count: 0)) }
        #expect(throws: InstancesError.self) { _ = try InstanceLifecycle.names(Harness.post("x"), CreateOptions(namePrefix: "p")) }
        #expect(throws: InstancesError.self) { _ = try InstanceLifecycle.names(Harness.post(""), CreateOptions(count: 2)) }
    }

    @Test func placementRefusalLeavesNoRowAndTouchesNoHost() async throws {
        try await withHarness { h in
            try await h.db.transaction { tx in
                let m2 = try tx.ensureMember(name: "m2", address: "127.0.0.1:8444")
                for id in [h.member.id, m2] { try tx.setReportedCapacity(memberID: id, ReportedCapacity(cpu: 2, memory: 8 << 30)) }
            }
            // 64 cpus fit nowhere, even with the default overcommit of 4.
            #expect(await kind { _ = try await h.lifecycle.create(Harness.post("big", config: ["limits.cpu": "64"])) } == .conflict)
            let rows = try await h.rows()
            #expect(rows.isEmpty)
            #expect(h.host.callLog.isEmpty)
        }
    }

    @Test func unknownTargetMemberIsNotFoundAndCreatesNothing() async throws {
        try await withHarness { h in
            #expect(await kind { _ = try await h.lifecycle.create(Harness.post("c1"), options: CreateOptions(target: "nowhere")) } == .notFound)
            let rows = try await h.rows()
            #expect(rows.isEmpty)
        }
    }

    @Test func failedStartLeavesNoRowAndNoContainer() async throws {
        try await withHarness { h in
            h.host.failStart.withLock { $0 = ["c1"] }
            let op = try await h.finish(try await h.lifecycle.create(Harness.post("c1", start: true)))
            #expect(op.statusCode == StatusCode.failure.rawValue)
            #expect(op.err.contains("c1"))
            #expect(try await h.row("c1") == nil)
            #expect(h.host.names.isEmpty)
            #expect(h.host.callLog.last == "delete c1")
        }
    }

    @Test func batchWithOneFailedStartUndoesOnlyThatOne() async throws {
        try await withHarness { h in
            h.host.failStart.withLock { $0 = ["b-2"] }
            let op = try await h.finish(try await h.lifecycle.create(Harness.post("b", start: true), options: CreateOptions(count: 3)))
            #expect(op.statusCode == StatusCode.failure.rawValue)
            let rows = try await h.rows()
            #expect(rows.map(\.name) == ["b-1", "b-3"])
            #expect(rows.allSatisfy { $0.powerState == .running })
            #expect(h.host.names == ["b-1", "b-3"])
            #expect(h.host.state(instance: InstanceRef(name: "b-1"))?.running == true)
        }
    }

    @Test func createRefusesUnknownConfigKeysAndOtherSources() async throws {
        try await withHarness { h in
            #expect(await kind { _ = try await h.lifecycle.create(Harness.post("c1", config: ["limits.colour": "blue"])) } == .invalid)
            #expect(await kind { _ = try await h.lifecycle.create(Harness.post("c1", config: ["limits.memory": "lots"])) } == .invalid)
            var copy = Harness.post("c1")
            copy.source = .init(type: "copy")
            #expect(await kind { _ = try await h.lifecycle.create(copy) } == .invalid)
            #expect(await kind { _ = try await h.lifecycle.create(InstancesPost(name: "c1", source: .init(alias: "missing"))) } == .notFound)
            #expect(await kind { _ = try await h.lifecycle.create(Harness.post("bad name!")) } == .invalid)
            // Not built yet: refused, never ignored.
            var ephemeral = Harness.post("c1")
            ephemeral.ephemeral = true
            #expect(await kind { _ = try await h.lifecycle.create(ephemeral) } == .invalid)
            var profiled = Harness.post("c1")
            profiled.profiles = ["default", "web"]
            #expect(await kind { _ = try await h.lifecycle.create(profiled) } == .notFound)
            let rows = try await h.rows()
            #expect(rows.isEmpty)
            #expect(h.host.callLog.isEmpty)
        }
    }

    @Test func deletingARunningInstanceIsRefusedAndKeepsIt() async throws {
        try await withHarness { h in
            try await h.launch("c1", start: true)
            #expect(await kind { _ = try await h.lifecycle.delete("c1") } == .invalid)
            #expect(try await h.row("c1") != nil)
            #expect(h.host.state(instance: InstanceRef(name: "c1"))?.running == true)
        }
    }

    @Test func deleteRemovesRowAndContainerAndKeepsTheImagesLayer() async throws {
        try await withHarness { h in
            try await h.launch("c1")
            let op = try await h.finish(try await h.lifecycle.delete("c1"))
            #expect(op.statusCode == StatusCode.success.rawValue)
            #expect(try await h.row("c1") == nil)
            #expect(h.host.names.isEmpty)
            // The image is still known, so its layer stays for the next launch.
            #expect(h.layers.removed.withLock { $0 }.isEmpty)
        }
    }

    @Test func startOfARunningInstanceIsRefused() async throws {
        try await withHarness { h in
            try await h.launch("c1", start: true)
            #expect(await kind { _ = try await h.lifecycle.changeState("c1", InstanceStatePut(action: "start")) } == .invalid)
        }
    }

    @Test func stopAndRestartOfAStoppedInstanceAreRefused() async throws {
        try await withHarness { h in
            try await h.launch("c1")
            #expect(await kind { _ = try await h.lifecycle.changeState("c1", InstanceStatePut(action: "stop")) } == .invalid)
            #expect(await kind { _ = try await h.lifecycle.changeState("c1", InstanceStatePut(action: "restart")) } == .invalid)
            #expect(await kind { _ = try await h.lifecycle.changeState("c1", InstanceStatePut(action: "freeze")) } == .invalid)
            #expect(h.host.callLog == ["create c1"])
        }
    }

    @Test func startStopRecordThePowerState() async throws {
        try await withHarness { h in
            try await h.launch("c1")
            #expect(try await h.changeState("c1", "start").statusCode == StatusCode.success.rawValue)
            #expect(try await h.row("c1")?.powerState == .running)
            #expect(try await h.lifecycle.get("c1", withState: true).state?.statusCode == StatusCode.running.rawValue)
            #expect(try await h.changeState("c1", "stop").statusCode == StatusCode.success.rawValue)
            #expect(try await h.row("c1")?.powerState == .stopped)
            #expect(h.host.state(instance: InstanceRef(name: "c1"))?.running == false)
        }
    }

    @Test func aRebootFromInsideStartsTheInstanceAgain() async throws {
        try await withHarness { h in
            #expect(h.host.exitObserver.withLock { $0 } != nil, "the service must listen to the host's init exits")
            try await h.launch("c1")
            _ = try await h.changeState("c1", "start")
            await h.lifecycle.initEnded(h.host.endInit("c1", signal: SIGHUP))
            #expect(h.host.callLog == ["create c1", "start c1", "init ended c1", "start c1"])
            #expect(h.host.state(instance: InstanceRef(name: "c1"))?.running == true)
            #expect(try await h.row("c1")?.powerState == .running)
        }
    }

    @Test(arguments: [SIGINT, SIGKILL, nil])
    func aShutdownOrCrashFromInsideIsRecordedAsStopped(signal: Int32?) async throws {
        try await withHarness { h in
            try await h.launch("c1")
            _ = try await h.changeState("c1", "start")
            await h.lifecycle.initEnded(h.host.endInit("c1", signal: signal))
            #expect(h.host.callLog == ["create c1", "start c1", "init ended c1"])
            #expect(try await h.row("c1")?.powerState == .stopped)
        }
    }

    @Test func anExitThatWasAskedForChangesNothing() async throws {
        try await withHarness { h in
            try await h.launch("c1")
            _ = try await h.changeState("c1", "start")
            _ = h.host.endInit("c1", signal: SIGHUP)
            await h.lifecycle.initEnded(InitExit(instance: InstanceRef(name: "c1"), status: ExitStatus(raw: SIGHUP), requested: true))
            #expect(h.host.callLog == ["create c1", "start c1", "init ended c1"])
            #expect(try await h.row("c1")?.powerState == .running)
        }
    }

    @Test(arguments: [(-2, false), (-1, true), (0, true), (86_400, true), (86_401, false)])
    func stateChangeTimeoutMustBeSecondsUpToADay(timeout: Int, accepted: Bool) async throws {
        try await withHarness { h in
            try await h.launch("c1")
            var started: APIOperation?
            let refusal = await kind { started = try await h.lifecycle.changeState("c1", InstanceStatePut(action: "start", timeout: timeout)) }
            #expect(refusal == (accepted ? nil : .invalid))
            if let started { _ = try await h.finish(started) }
        }
    }

    @Test func statefulStopWithoutCRIUIsRefused() async throws {
        try await withHarness { h in
            try await h.launch("c1", start: true)
            #expect(await kind { _ = try await h.lifecycle.changeState("c1", InstanceStatePut(action: "stop", stateful: true)) } == .invalid)
            #expect(h.host.state(instance: InstanceRef(name: "c1"))?.running == true)
        }
    }

    @Test func updateRefusesABadLimitAndKeepsTheConfig() async throws {
        try await withHarness { h in
            try await h.launch("c1", config: ["limits.memory": "64MiB"])
            let before = try #require(try await h.row("c1")).config
            #expect(await kind { try await h.lifecycle.update("c1", InstancePut(config: ["limits.memory": "-5"]), replace: false) } == .invalid)
            #expect(await kind { try await h.lifecycle.update("c1", InstancePut(config: ["no.such.key": "1"]), replace: false) } == .invalid)
            // Server keys cannot be changed by a user.
            #expect(await kind { try await h.lifecycle.update("c1", InstancePut(config: ["volatile.idmap.base": "0"]), replace: false) } == .invalid)
            #expect(try await h.row("c1")?.config == before)
        }
    }

    @Test func updateOfARunningInstanceAppliesNewLimitsOnTheHost() async throws {
        try await withHarness { h in
            try await h.launch("c1", start: true)
            try await h.lifecycle.update("c1", InstancePut(config: ["limits.memory": "128MiB"]), replace: false)
            #expect(h.host.limitUpdates.withLock { $0["c1"] } == Limits(memoryBytes: 128 << 20))
            #expect(try await h.row("c1")?.config["limits.memory"] == "128MiB")
            // PUT replaces the user's keys and keeps the server's.
            try await h.lifecycle.update("c1", InstancePut(config: [:]), replace: true)
            let config = try #require(try await h.row("c1")).config
            #expect(config["limits.memory"] == nil)
            #expect(config["volatile.base_image"] == Harness.fingerprint)
        }
    }

    @Test func bootStartsWhatWasRunningUnlessAutostartIsOff() async throws {
        try await withHarness { h in
            try await h.launch("keep", start: true)
            try await h.launch("off", config: ["boot.autostart": "false"], start: true)
            try await h.launch("idle")
            // The host restarted: nothing runs, the database still says what did.
            h.host.containers.withLock { all in for name in all.keys { all[name]?.running = false } }
            await h.lifecycle.startOnBoot()
            #expect(h.host.state(instance: InstanceRef(name: "keep"))?.running == true)
            #expect(h.host.state(instance: InstanceRef(name: "off"))?.running == false)
            #expect(h.host.state(instance: InstanceRef(name: "idle"))?.running == false)
        }
    }
}
