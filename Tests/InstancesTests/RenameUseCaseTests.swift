import APITypes
import ClusterDB
import Foundation
import InstanceConfig
@testable import Instances
import Operations
import Testing

/// Rename over a fake host and a real database: what it refuses, what it changes, and that a
/// failure in the database puts the files back under the old name.
@Suite struct RenameUseCaseTests {
    @Test func aStoppedInstanceTakesTheNewNameWithItsRowAndFilesAndIsAnnounced() async throws {
        try await withHarness { h in
            try await h.launch("c1", config: ["limits.memory": "64MiB"])
            let before = try #require(try await h.row("c1"))
            let events = h.operations.events.subscribe(types: [.lifecycle])
            let op = try await h.finish(try await h.lifecycle.rename("c1", to: "c2"))
            #expect(op.statusCode == StatusCode.success.rawValue, "\(op.err)")
            #expect(op.resources["instances"] == ["/1.0/instances/c1", "/1.0/instances/c2"])
            #expect(try await h.row("c1") == nil)
            var expected = before
            expected.name = "c2"
            #expect(try await h.row("c2") == expected, "only the name changes")
            #expect(h.host.names == ["c2"])
            #expect(h.host.callLog == ["create c1", "rename c1 c2", "finish rename c2"])
            #expect(h.host.unfinishedRenames().isEmpty)

            events.close()
            var seen: [Event] = []
            for await e in events.stream { seen.append(e) }
            let renamed = try #require(seen.first { $0.metadata["action"]?.stringValue == "instance-renamed" })
            #expect(renamed.metadata["source"]?.stringValue == "/1.0/instances/c2")
            #expect(renamed.metadata["context"]?["old_name"]?.stringValue == "c1")

            // It starts under its new name.
            #expect(try await h.changeState("c2", "start").statusCode == StatusCode.success.rawValue)
            #expect(h.host.startSpecs.withLock { $0.last?.instance } == InstanceRef(name: "c2"))
        }
    }

    @Test func aRunningInstanceIsRefusedAndKeepsItsName() async throws {
        try await withHarness { h in
            try await h.launch("c1", start: true)
            do {
                _ = try await h.lifecycle.rename("c1", to: "c2")
                Issue.record("a running instance was renamed")
            } catch let e as InstancesError {
                #expect(e.kind == .invalid)
                #expect(e.message.contains("stop it first"))
            }
            #expect(try await h.row("c1") != nil)
            #expect(h.host.names == ["c1"])
        }
    }

    @Test func aTakenNameIsAConflictAndChangesNothing() async throws {
        try await withHarness { h in
            try await h.launch("c1")
            try await h.launch("c2")
            let calls = h.host.callLog
            #expect(await kind { _ = try await h.lifecycle.rename("c1", to: "c2") } == .conflict)
            #expect(try await h.rows().map(\.name) == ["c1", "c2"])
            #expect(h.host.callLog == calls)
        }
    }

    @Test(arguments: ["", "1st", "a_b", "-x", "x-", "a b", "café", "../x", String(repeating: "a", count: 64), "c1"])
    func anInvalidOrUnchangedNameIsRefused(newName: String) async throws {
        try await withHarness { h in
            try await h.launch("c1")
            #expect(await kind { _ = try await h.lifecycle.rename("c1", to: newName) } == .invalid)
            #expect(try await h.rows().map(\.name) == ["c1"])
            #expect(h.host.callLog == ["create c1"])
        }
    }

    @Test func aMissingInstanceIsNotFound() async throws {
        try await withHarness { h in
            #expect(await kind { _ = try await h.lifecycle.rename("nope", to: "c2") } == .notFound)
        }
    }

    @Test func aSavedStateIsRefusedWithWhatToDo() async throws {
        try await withHarness { h in
            try await h.launch("c1")
            let root = NSTemporaryDirectory() + "rename-state-\(UUID().uuidString)"
            defer { try? FileManager.default.removeItem(atPath: root) }
            h.host.stateRoot.withLock { $0 = root }
            let state = h.host.savedStateDirectory(of: InstanceRef(name: "c1"))
            try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
            #expect(FileManager.default.createFile(atPath: state + "/inventory.img", contents: Data()))
            do {
                _ = try await h.lifecycle.rename("c1", to: "c2")
                Issue.record("an instance with a saved state was renamed")
            } catch let e as InstancesError {
                #expect(e.kind == .invalid)
                #expect(e.message.contains("stop it without --stateful"))
            }
            #expect(h.host.names == ["c1"])
        }
    }

    /// The name is taken in the database after the check and before the transaction (a launch
    /// elsewhere in the cluster): the transaction refuses it and the files go back.
    @Test func aNameTakenWhileTheRenameWaitedPutsTheFilesBack() async throws {
        try await withHarness { h in
            try await h.launch("c1")
            let locks = h.lifecycle.context.locks
            let op = try await locks.withLock(InstanceRef(name: "c1")) {
                let op = try await h.lifecycle.rename("c1", to: "c2")
                while await locks.queued == 0 { await Task.yield() }
                _ = try await h.db.transaction { tx in
                    try tx.insertInstance(NewInstance(name: "c2", memberID: h.member.id, imageFingerprint: Harness.fingerprint, architecture: "x86_64"))
                }
                return op
            }
            let done = try await h.finish(op)
            #expect(done.statusCode == StatusCode.failure.rawValue)
            #expect(done.err.contains("already exists"), "\(done.err)")
            #expect(h.host.callLog == ["create c1", "rename c1 c2", "rename c2 c1", "finish rename c1"])
            #expect(h.host.names == ["c1"])
            #expect(h.host.unfinishedRenames().isEmpty)
            #expect(try await h.row("c1") != nil)
        }
    }

    @Test func aHostThatCannotMoveTheFilesLeavesTheRow() async throws {
        try await withHarness { h in
            try await h.launch("c1")
            h.host.failRename.withLock { $0 = ["c1"] }
            let done = try await h.finish(try await h.lifecycle.rename("c1", to: "c2"))
            #expect(done.statusCode == StatusCode.failure.rawValue)
            #expect(done.err.contains("Renaming the files of c1"), "\(done.err)")
            #expect(try await h.rows().map(\.name) == ["c1"])
            #expect(h.host.names == ["c1"])
        }
    }

    /// The agent died after the commit and before the marker went: at the next start the files
    /// keep the new name the row has, and the marker goes.
    @Test func atBootARenameTheDatabaseHoldsIsFinished() async throws {
        try await withHarness { h in
            try await h.launch("c1")
            try h.host.renameContainer(from: InstanceRef(name: "c1"), to: InstanceRef(name: "c2"))
            try await h.db.transaction { tx in try tx.renameInstance(name: "c1", to: "c2") }
            await h.lifecycle.startOnBoot()
            #expect(h.host.names == ["c2"])
            #expect(h.host.unfinishedRenames().isEmpty)
            #expect(h.host.callLog == ["create c1", "rename c1 c2", "finish rename c2"])
        }
    }

    /// The agent died after moving the files and before the commit: at the next start the files
    /// go back to the name the row still has.
    @Test func atBootARenameTheDatabaseNeverSawIsUndone() async throws {
        try await withHarness { h in
            try await h.launch("c1")
            try h.host.renameContainer(from: InstanceRef(name: "c1"), to: InstanceRef(name: "c2"))
            await h.lifecycle.startOnBoot()
            #expect(h.host.names == ["c1"])
            #expect(h.host.unfinishedRenames().isEmpty)
            #expect(h.host.callLog == ["create c1", "rename c1 c2", "rename c2 c1", "finish rename c1"])
            #expect(try await h.rows().map(\.name) == ["c1"])
        }
    }
}
