import APITypes
import ClusterDB
import Dqlite
import Foundation
@testable import Instances
import InstanceConfig
import Logging
import Migration
import Synchronization
import Testing

/// A move's transport that records what reached it and refuses everything: a move refused at
/// planning must reach none of it.
final class RecordingTransport: MoveTransport {
    let calls = Mutex<[String]>([])
    struct Refused: Error {}

    func prepareMove(_ request: MovePrepareRequest, on member: String) async throws -> MovePrepared {
        calls.withLock { $0.append("prepare \(request.name) \(request.mode ?? "-")") }
        throw Refused()
    }
    func uploadMovePart(token: String, stream: MoveStream, round: Int, part: Int, last: Bool, bytes: [UInt8], on member: String) async throws {
        calls.withLock { $0.append("upload") }
        throw Refused()
    }
    func handOverMove(_ request: MoveHandOverRequest, on member: String) async throws -> MoveHandOverReply {
        calls.withLock { $0.append("hand over") }
        throw Refused()
    }
    func discardMove(token: String, on member: String) async { calls.withLock { $0.append("discard") } }
    func openPageStream(token: String, on member: String) async throws -> any PeerStream {
        calls.withLock { $0.append("pages") }
        throw Refused()
    }
}

/// Choosing a move's memory mode on the source, before anything is claimed or frozen, and the
/// members' published capabilities: over the harness's database and fake host (no CRIU here,
/// so every live move is refused for the source's lack of it).
@Suite struct MoveModeUseCaseTests {
    /// The harness's member with a move transport, and a second member m2 to move to. `c1`:
    /// launch it first (started or not; before m2 exists, which reports no capacity).
    func withMover(c1 started: Bool? = nil, _ body: (Harness, InstanceLifecycle, RecordingTransport) async throws -> Void) async throws {
        try await withHarness { h in
            if let started { try await h.launch("c1", start: started) }
            _ = try await h.db.transaction { tx in try tx.ensureMember(name: "m2", address: "127.0.0.2:8443") }
            let transport = RecordingTransport()
            let service = InstanceService(member: h.member, db: h.db, runtime: h.host, store: h.layers, operations: h.operations, idmaps: h.idmaps,
                                          checkpointer: nil, dataDir: h.dataDir, moveTransport: transport, logger: Logger(label: "test.move"))
            try await body(h, service.lifecycle, transport)
        }
    }

    func refusal(_ body: () async throws -> Void) async -> InstancesError? {
        do {
            try await body()
            return nil
        } catch let error as InstancesError {
            return error
        } catch {
            Issue.record("expected an InstancesError, got \(error)")
            return nil
        }
    }

    /// Nothing of a move happened: no claim in the database, nothing sent, the state as it was.
    func expectUntouched(_ h: Harness, _ transport: RecordingTransport, running: Bool, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        #expect(try await h.db.transaction { tx in try tx.instanceMove(name: "c1", project: "default") } == nil, sourceLocation: sourceLocation)
        #expect(transport.calls.withLock { $0 }.isEmpty, sourceLocation: sourceLocation)
        #expect(try await h.row("c1")?.location == "m1", sourceLocation: sourceLocation)
        #expect(h.host.state(instance: InstanceRef(project: "default", name: "c1"))?.running == running, sourceLocation: sourceLocation)
    }

    @Test func aModeForAColdMoveIsRefusedBeforeTheClaim() async throws {
        try await withMover(c1: false) { h, lifecycle, transport in
            let e = await refusal { _ = try await lifecycle.move("c1", to: "m2", live: nil, mode: "stop-and-copy") }
            #expect(e?.kind == .invalid)
            #expect(e?.message.contains("applies to a live move only: the instance is stopped") == true, "\(String(describing: e))")
            try await expectUntouched(h, transport, running: false)
        }
    }

    @Test func aModeForAStatelessMoveIsRefusedBeforeTheClaim() async throws {
        try await withMover(c1: true) { h, lifecycle, transport in
            let e = await refusal { _ = try await lifecycle.move("c1", to: "m2", live: false, mode: "stop-and-copy") }
            #expect(e?.kind == .invalid)
            #expect(e?.message.contains("applies to a live move only: a stateless move stops the instance") == true)
            try await expectUntouched(h, transport, running: true)
        }
    }

    @Test(arguments: [nil, "stop-and-copy", "post-copy", "pre-copy"])
    func aLiveMoveWithoutCRIUHereIsRefusedWhateverTheMode(mode: String?) async throws {
        try await withMover(c1: true) { h, lifecycle, transport in
            let e = await refusal { _ = try await lifecycle.move("c1", to: "m2", live: nil, mode: mode) }
            #expect(e?.kind == .invalid)
            #expect(e?.message.hasPrefix("Cannot move c1 to m2: a live move needs CRIU >= 4.2.0 on member m1") == true, "\(String(describing: e))")
            try await expectUntouched(h, transport, running: true)
        }
    }

    @Test(arguments: ["warp", "", "STOP-AND-COPY", String(repeating: "x", count: 5000)])
    func anUnknownModeIsRefusedAndNotEchoedAtLength(mode: String) async throws {
        try await withMover(c1: true) { h, lifecycle, transport in
            let e = await refusal { _ = try await lifecycle.move("c1", to: "m2", live: nil, mode: mode) }
            #expect(e?.kind == .invalid)
            #expect(e?.message.hasPrefix("Invalid migration mode") == true)
            #expect((e?.message.count ?? 0) < 200)
            try await expectUntouched(h, transport, running: true)
        }
    }

    @Test func aMemberPublishesItsCapabilitiesOnceAndAnUnchangedProbeWritesNothing() async throws {
        try await withMover { h, lifecycle, _ in
            let mine = await lifecycle.migrationCapabilities(missingReason: "criu not found (searched /usr/local/sbin/criu)")
            #expect(mine == .withoutCRIU("criu not found (searched /usr/local/sbin/criu)"))
            #expect(await lifecycle.migrationCapabilities() == .withoutCRIU("no criu found on member m1"))
            #expect(try await lifecycle.publishMigrationCapabilities(mine))
            #expect(!(try await lifecycle.publishMigrationCapabilities(mine)))
            // A restart that finds CRIU installed since writes the new probe.
            let probed = MigrationCapabilities.probed(MemberMigrationViewTests.here)
            #expect(try await lifecycle.publishMigrationCapabilities(probed))
            #expect(MemberMigrationView.capabilities(of: try #require(try await h.db.transaction { tx in try tx.member(name: "m1") })) == probed)
            #expect(try await lifecycle.publishMigrationCapabilities(mine))
            let rows = try await h.db.transaction { tx in try tx.members() }
            let m1 = try #require(rows.first { $0.name == "m1" })
            #expect(MemberMigrationView.capabilities(of: m1) == mine)
            #expect(MemberMigrationView.capabilities(of: try #require(rows.first { $0.name == "m2" })) == nil)

            let shown = MemberMigrationView.describe(m1, among: rows)
            #expect(shown.criuVersion == nil)
            for mode in MigrationMode.allCases {
                #expect(shown.modes[mode.rawValue] == MigrationModeAvailability(
                    available: false, reason: "no usable CRIU (criu not found (searched /usr/local/sbin/criu)): run scripts/install-criu"))
            }
            #expect(shown.liveMoves["m2"]?.possible == false)
            #expect(shown.liveMoves["m2"]?.reason?.contains("a live move needs CRIU") == true)
        }
    }
}

/// `MemberMigrationView.describe`: what `GET /1.0/cluster/members/NAME` shows, from rows.
@Suite struct MemberMigrationViewTests {
    static let here = CRIUFeatures(version: CRIUVersion(4, 2, 1), checkPassed: true, memDirtyTrack: false, userfaultfd: true, pipeMaxSize: 1 << 20)

    static func row(_ id: Int64, _ capabilities: MigrationCapabilities?, state: MemberStatus = .online) -> MemberRow {
        MemberRow(id: id, name: "m\(id)", address: "127.0.0.\(id):8443", schemaVersion: 9, apiExtensions: 8, heartbeat: nil, failureDomain: "default",
                  config: [:], state: state, migration: capabilities.map(MemberMigrationView.encode))
    }

    @Test func eachModeWithItsReasonAndEachOtherMemberWithWhyNot() {
        var older = Self.here
        older.version = CRIUVersion(4, 2, 0)
        let rows = [
            Self.row(1, .probed(Self.here)),
            Self.row(2, .probed(Self.here)),
            Self.row(3, .probed(Self.here), state: .offline),
            Self.row(4, nil),
            Self.row(5, .withoutCRIU("criu not found")),
            Self.row(6, .probed(older)),
            Self.row(7, .probed(Self.here), state: .evacuated),
        ]
        let m = MemberMigrationView.describe(rows[0], among: rows)
        #expect(m.criuVersion == "4.2.1")
        #expect(m.modes["stop-and-copy"] == MigrationModeAvailability(available: true))
        #expect(m.modes["pre-copy"] == MigrationModeAvailability(available: false, reason: "the kernel has no soft-dirty memory tracking (mem_dirty_track)"))
        #expect(m.modes["post-copy"]?.available == false && m.modes["post-copy"]?.reason?.hasPrefix("fs.pipe-max-size is 1048576") == true)
        #expect(m.liveMoves["m1"] == nil)
        #expect(m.liveMoves["m2"] == LiveMoveAvailability(possible: true, mode: "stop-and-copy"))
        #expect(m.liveMoves["m3"] == LiveMoveAvailability(possible: false, reason: "member m3 is offline"))
        // Unpublished: taken as a member of an older build (stop-and-copy, checked at the prepare).
        #expect(m.liveMoves["m4"] == LiveMoveAvailability(possible: true, mode: "stop-and-copy"))
        #expect(m.liveMoves["m5"] == LiveMoveAvailability(
            possible: false, reason: "member m5 has no usable CRIU (criu not found): run scripts/install-criu there, or move with --stateless"))
        #expect(m.liveMoves["m6"]?.reason?.hasPrefix("criu versions differ: source 4.2.1, target 4.2.0") == true)
        #expect(m.liveMoves["m7"] == LiveMoveAvailability(possible: false, reason: "member m7 is evacuated"))

        let unpublished = MemberMigrationView.describe(rows[3], among: rows)
        #expect(unpublished.criuVersion == nil)
        #expect(unpublished.modes.values.allSatisfy { !$0.available && $0.reason?.contains("has not published") == true })
        #expect(unpublished.liveMoves["m1"]?.reason == "member m4 has not published its migration capabilities")
    }

    @Test func unreadableJSONCountsAsUnpublished() {
        var row = Self.row(1, nil)
        row.migration = #"{"criu": 5}"#
        #expect(MemberMigrationView.capabilities(of: row) == nil)
        // Sorted keys: the same probe always writes the same text.
        let text = MemberMigrationView.encode(.probed(Self.here))
        #expect(text == MemberMigrationView.encode(.probed(Self.here)))
        #expect(text.hasPrefix(#"{"criu":{"#))
    }
}
