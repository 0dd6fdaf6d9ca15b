@testable import ClusterDB
import APITypes
import Dqlite
import Foundation
import Logging
import Testing

@Suite("ClusterDB on a real dqlite node")
struct ClusterDBTests {
    // MARK: migrations

    @Test func migrationsApplyOnceAcrossReopenAndNodeRestart() async throws {
        let t = try TestCluster()
        defer { t.shutdown() }
        let next = SchemaMigration.all.count + 1
        let extra = SchemaMigration(version: next, statements: ["CREATE TABLE extra (id INTEGER PRIMARY KEY)"])
        let migrations = SchemaMigration.all + [extra]

        let db = try await t.open(migrations: migrations)
        #expect(try await db.schemaVersion() == next)
        try await db.transaction { tx in try tx.exec("INSERT INTO config (key, value) VALUES ('marker', 'kept')") }
        await db.close()

        // Re-opening runs migrate again: a re-applied CREATE TABLE would fail, and schema would gain rows.
        let again = try await t.open(migrations: migrations)
        let versions = try await again.transaction { tx in try tx.query("SELECT version FROM schema ORDER BY version").rows }
        #expect(versions == (1...next).map { [DqliteValue.integer(Int64($0))] })
        await again.close()

        // Same after the node itself restarts from its data directory.
        try t.stopNode()
        try t.startNode()
        let restarted = try await t.open(migrations: migrations)
        let (count, marker) = try await restarted.transaction { tx in
            (try tx.query("SELECT count(*) FROM schema").rows, try tx.config("marker"))
        }
        #expect(count == [[.integer(Int64(next))]])
        #expect(marker == "kept")
        await restarted.close()
    }

    @Test func olderMemberRefusesANewerSchema() async throws {
        let t = try TestCluster()
        defer { t.shutdown() }
        let known = SchemaMigration.all.count
        let newer = try await t.open(migrations: SchemaMigration.all + [SchemaMigration(version: known + 1, statements: ["CREATE TABLE later (x)"])])
        await newer.close()
        await #expect(throws: ClusterDBError.schemaTooNew(database: known + 1, known: known)) {
            _ = try await t.open()
        }
    }

    /// A rolling upgrade: the upgraded member waits while another member still runs the old
    /// version, and migrates once that one reports the new version.
    @Test func upgradedMemberWaitsForTheOthersThenMigrates() async throws {
        let t = try TestCluster()
        defer { t.shutdown() }
        let logger = Logger(label: "test.versions")
        let known = SchemaMigration.all.count
        func pool() -> DqlitePool { DqlitePool(node: t.node, sessionStatements: ClusterDB.sessionStatements, logger: logger) }
        let (old, m1) = try await ClusterDB.openAsMember(name: "m1", address: "a:1", apiExtensions: 3, pool: pool(), logger: logger)
        let m2 = try await old.transaction { tx in
            let id = try tx.ensureMember(name: "m2", address: "a:2")
            try tx.updateMemberVersions(id: id, schemaVersion: Int64(known), apiExtensions: 3)
            return id
        }
        let recorded = try await old.transaction { tx in try tx.member(id: m1) }
        #expect(recorded?.schemaVersion == Int64(known) && recorded?.apiExtensions == 3)

        let newer = SchemaMigration.all + [SchemaMigration(version: known + 1, statements: ["CREATE TABLE later (x)"])]
        let upgraded = Task {
            try await ClusterDB.openAsMember(name: "m1", address: "a:1", apiExtensions: 4, pool: pool(), logger: logger,
                                             migrations: newer, pollInterval: .milliseconds(50))
        }
        try await Task.sleep(for: .milliseconds(500))
        #expect(try await old.schemaVersion() == known, "migrated while m2 still ran the old version")
        try await old.transaction { tx in try tx.updateMemberVersions(id: m2, schemaVersion: Int64(known + 1), apiExtensions: 4) }
        let (db, id) = try await upgraded.value
        #expect(id == m1)
        #expect(try await db.schemaVersion() == known + 1)
        // The old binary cannot use the database any more.
        await #expect(throws: ClusterDBError.schemaTooNew(database: known + 1, known: known)) {
            _ = try await ClusterDB.openAsMember(name: "m2", address: "a:2", apiExtensions: 3, pool: pool(), logger: logger)
        }
        await db.close()
        await old.close()
    }

    @Test func failingMigrationLeavesNoTrace() async throws {
        let t = try TestCluster()
        defer { t.shutdown() }
        let broken = SchemaMigration(version: SchemaMigration.all.count + 1, statements: ["CREATE TABLE half (x)", "THIS IS NOT SQL"])
        await #expect(throws: ClusterDBError.self) { _ = try await t.open(migrations: SchemaMigration.all + [broken]) }
        let db = try await t.open()
        let (version, half) = try await db.transaction { tx in
            (try tx.schemaVersion(), try tx.query("SELECT name FROM sqlite_master WHERE name = 'half'").rows)
        }
        #expect(version == SchemaMigration.all.count)
        #expect(half.isEmpty)
        await db.close()
    }

    // MARK: members

    @Test func ensureMemberIsIdempotentAndGuardsAddresses() async throws {
        let t = try TestCluster()
        defer { t.shutdown() }
        let db = try await t.open()
        let (a, a2, b) = try await db.transaction { tx in
            (try tx.ensureMember(name: "m1", address: "10.0.0.1:8443"),
             try tx.ensureMember(name: "m1", address: "10.0.0.1:8443"),
             try tx.ensureMember(name: "m2", address: "10.0.0.2:8443"))
        }
        #expect(a == a2)
        #expect(a != b)
        await #expect(throws: ClusterDBError.alreadyExists("a member with address 10.0.0.2:8443")) {
            try await db.transaction { tx in _ = try tx.ensureMember(name: "m3", address: "10.0.0.2:8443") }
        }
        let heartbeat = Date(timeIntervalSince1970: 1_800_000_000)
        let members = try await db.transaction { tx in
            try tx.updateMemberHeartbeat(id: a, at: heartbeat)
            try tx.updateMemberState(id: b, state: .evacuated)
            try tx.updateMemberConfig(id: b, config: ["scheduler.instance": "manual"], failureDomain: "rack2")
            return try tx.members()
        }
        #expect(members.map(\.name) == ["m1", "m2"])
        #expect(members[0].heartbeat == heartbeat)
        #expect(members[1].heartbeat == nil)
        #expect(members[1].state == .evacuated)
        #expect(members[1].failureDomain == "rack2")
        #expect(members[1].config == ["scheduler.instance": "manual"])
        // Heartbeats never undo an evacuation: down and back, the member stays EVACUATED.
        let states = try await db.transaction { tx -> [MemberStatus] in
            #expect(try tx.updateMemberLiveness(id: b, online: false) == false)
            #expect(try tx.updateMemberLiveness(id: b, online: true) == false)
            #expect(try tx.updateMemberLiveness(id: a, online: false) == true)
            return try tx.members().map(\.state)
        }
        #expect(states == [.offline, .evacuated])
        await #expect(throws: ClusterDBError.notFound("member 999")) {
            try await db.transaction { tx in _ = try tx.updateMemberLiveness(id: 999, online: true) }
        }
        await db.close()
    }

    // MARK: instances

    @Test func instanceLifecycle() async throws {
        let t = try TestCluster()
        defer { t.shutdown() }
        let db = try await t.open()
        let created = Date(timeIntervalSince1970: 1_790_000_000.5)
        let (memberID, row) = try await db.transaction { tx in
            let m = try tx.ensureMember(name: "node1", address: "127.0.0.1:8443")
            let row = try tx.insertInstance(NewInstance(name: "c1", memberID: m, imageFingerprint: fingerprintA, architecture: "x86_64",
                                                        config: ["limits.cpu": "2", "security.privileged": "false"],
                                                        idmapBase: 1_000_000, createdAt: created, requestID: "req-1"))
            return (m, row)
        }
        #expect(row.name == "c1")
        #expect(row.project == "default")
        #expect(row.location == "node1")
        #expect(row.memberID == memberID)
        #expect(row.config == ["limits.cpu": "2", "security.privileged": "false"])
        #expect(row.powerState == .stopped)
        #expect(row.idmapBase == 1_000_000)
        #expect(abs(row.createdAt.timeIntervalSince(created)) < 1e-6)
        #expect(row.lastUsedAt == nil)
        #expect(row.requestID == "req-1")

        let used = Date(timeIntervalSince1970: 1_790_000_100)
        let updated = try await db.transaction { tx in
            _ = try tx.insertInstance(NewInstance(name: "c0", memberID: memberID, imageFingerprint: fingerprintB, architecture: "x86_64"))
            try tx.updateInstanceConfig(name: "c1", config: ["limits.cpu": "4"])
            try tx.updateInstancePowerState(name: "c1", .running)
            try tx.touchInstance(name: "c1", lastUsedAt: used)
            return try tx.instance(name: "c1")
        }
        #expect(updated?.config == ["limits.cpu": "4"])
        let byRequest = try await db.transaction { tx in (try tx.instance(requestID: "req-1"), try tx.instance(requestID: "req-2")) }
        #expect(byRequest.0?.name == "c1")
        #expect(byRequest.1 == nil)
        #expect(updated?.powerState == .running)
        #expect(updated?.lastUsedAt.map { abs($0.timeIntervalSince(used)) < 1e-6 } == true)

        let (all, onMember, onOther, count) = try await db.transaction { tx in
            (try tx.instances(), try tx.instances(memberID: memberID), try tx.instances(memberID: memberID + 100),
             try tx.instanceCount(usingImage: fingerprintA))
        }
        #expect(all.map(\.name) == ["c0", "c1"])
        #expect(onMember.count == 2)
        #expect(onOther.isEmpty)
        #expect(count == 1)

        let (deleted, deletedAgain, gone) = try await db.transaction { tx in
            (try tx.deleteInstance(name: "c1"), try tx.deleteInstance(name: "c1"), try tx.instance(name: "c1"))
        }
        #expect(deleted)
        #expect(!deletedAgain)
        #expect(gone == nil)
        await #expect(throws: ClusterDBError.notFound("instance c1")) {
            try await db.transaction { tx in try tx.updateInstancePowerState(name: "c1", .running) }
        }
        await #expect(throws: ClusterDBError.notFound("member 999")) {
            try await db.transaction { tx in
                _ = try tx.insertInstance(NewInstance(name: "orphan", memberID: 999, imageFingerprint: "", architecture: "x86_64"))
            }
        }
        await db.close()
    }

    @Test func duplicateNameFailsAndLeavesStateUnchanged() async throws {
        let t = try TestCluster()
        defer { t.shutdown() }
        let db = try await t.open()
        let memberID = try await db.transaction { tx in
            let m = try tx.ensureMember(name: "node1", address: "a:1")
            _ = try tx.insertInstance(NewInstance(name: "c1", memberID: m, imageFingerprint: fingerprintA, architecture: "x86_64",
                                                  config: ["k": "original"]))
            return m
        }
        await #expect(throws: ClusterDBError.alreadyExists("instance c1 in project default")) {
            try await db.transaction { tx in
                _ = try tx.insertInstance(NewInstance(name: "c2", memberID: memberID, imageFingerprint: "", architecture: "x86_64"))
                _ = try tx.insertInstance(NewInstance(name: "c1", memberID: memberID, imageFingerprint: "", architecture: "aarch64",
                                                      config: ["k": "intruder"]))
            }
        }
        let rows = try await db.transaction { tx in try tx.instances() }
        #expect(rows.map(\.name) == ["c1"], "c2 must be rolled back with the failed transaction")
        #expect(rows.first?.config == ["k": "original"])
        #expect(rows.first?.architecture == "x86_64")
        // The same name in another project is a different instance.
        let other = try await db.transaction { tx in
            try tx.insertInstance(NewInstance(project: "other", name: "c1", memberID: memberID, imageFingerprint: "", architecture: "x86_64"))
        }
        #expect(other.project == "other")
        await db.close()
    }

    @Test func renameKeepsTheRowAndRefusesATakenName() async throws {
        let t = try TestCluster()
        defer { t.shutdown() }
        let db = try await t.open()
        let before = try await db.transaction { tx in
            let m = try tx.ensureMember(name: "node1", address: "a:1")
            _ = try tx.insertInstance(NewInstance(name: "c2", memberID: m, imageFingerprint: "", architecture: "x86_64"))
            return try tx.insertInstance(NewInstance(name: "c1", memberID: m, imageFingerprint: fingerprintA, architecture: "x86_64",
                                                     config: ["k": "v"], idmapBase: 65_536))
        }
        await #expect(throws: ClusterDBError.alreadyExists("instance c2 in project default")) {
            try await db.transaction { tx in try tx.renameInstance(name: "c1", to: "c2") }
        }
        await #expect(throws: ClusterDBError.notFound("instance nope")) {
            try await db.transaction { tx in try tx.renameInstance(name: "nope", to: "c3") }
        }
        let (renamed, old) = try await db.transaction { tx in
            try tx.renameInstance(name: "c1", to: "c3")
            return (try tx.instance(name: "c3"), try tx.instance(name: "c1"))
        }
        #expect(old == nil)
        var expected = before
        expected.name = "c3"
        #expect(renamed == expected, "only the name changes: id, config, idmap block and member stay")
        await db.close()
    }

    @Test func anyThrownErrorRollsBack() async throws {
        let t = try TestCluster()
        defer { t.shutdown() }
        let db = try await t.open()
        await #expect(throws: Boom()) {
            try await db.transaction { tx in
                try tx.setConfig("core.https_address", "127.0.0.1:9999")
                _ = try tx.ensureMember(name: "ghost", address: "g:1")
                throw Boom()
            }
        }
        let (config, members) = try await db.transaction { tx in (try tx.allConfig(), try tx.members()) }
        #expect(config.isEmpty)
        #expect(members.isEmpty)
        // The connection that rolled back is healthy and commits normally.
        let value = try await db.transaction { tx in
            try tx.setConfig("core.https_address", "127.0.0.1:8443")
            return try tx.config("core.https_address")
        }
        #expect(value == "127.0.0.1:8443")
        await db.close()
    }

    // MARK: idmap allocation

    @Test func idmapAllocationReusesHolesAndReportsExhaustion() async throws {
        let t = try TestCluster()
        defer { t.shutdown() }
        let db = try await t.open()
        let start: Int64 = 1_000_000, block: Int64 = 65536, size = 3 * block
        let bases = try await db.transaction { tx in
            let m = try tx.ensureMember(name: "m", address: "a")
            var bases: [Int64] = []
            for name in ["a", "b", "c"] {
                let base = try tx.allocateIdmapBase(rangeStart: start, rangeSize: size)
                _ = try tx.insertInstance(NewInstance(name: name, memberID: m, imageFingerprint: "", architecture: "x86_64", idmapBase: base))
                bases.append(base)
            }
            _ = try tx.insertInstance(NewInstance(name: "privileged", memberID: m, imageFingerprint: "", architecture: "x86_64", idmapBase: nil))
            return bases
        }
        #expect(bases == [start, start + block, start + 2 * block])
        await #expect(throws: ClusterDBError.self) {
            try await db.transaction { tx in _ = try tx.allocateIdmapBase(rangeStart: start, rangeSize: size) }
        }
        let reused = try await db.transaction { tx in
            try tx.deleteInstance(name: "b")
            return try tx.allocateIdmapBase(rangeStart: start, rangeSize: size)
        }
        #expect(reused == start + block)
        await db.close()
    }

    @Test func concurrentAllocationsNeverOverlap() async throws {
        let t = try TestCluster()
        defer { t.shutdown() }
        let db = try await t.open(maxConnections: 4)
        let memberID = try await db.transaction { tx in try tx.ensureMember(name: "m", address: "a") }
        let start: Int64 = 1_000_000, block: Int64 = 65536
        let tasks = 6, perTask = 5
        let bases = try await withThrowingTaskGroup(of: [Int64].self) { group in
            for task in 0..<tasks {
                group.addTask {
                    var mine: [Int64] = []
                    for i in 0..<perTask {
                        // Allocate and insert in one transaction: the read and the write must be atomic.
                        let row = try await db.transaction { tx in
                            let base = try tx.allocateIdmapBase(rangeStart: start, rangeSize: 1000 * block)
                            return try tx.insertInstance(NewInstance(name: "t\(task)-\(i)", memberID: memberID, imageFingerprint: "",
                                                                     architecture: "x86_64", idmapBase: base))
                        }
                        mine.append(row.idmapBase ?? -1)
                    }
                    return mine
                }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        #expect(bases.count == tasks * perTask)
        #expect(Set(bases).count == bases.count, "two instances got the same uid/gid block")
        #expect(bases.allSatisfy { $0 >= start && ($0 - start) % block == 0 })
        // Lowest-free allocation with no deletes fills the range densely.
        #expect(bases.sorted() == (0..<Int64(tasks * perTask)).map { start + $0 * block })
        await db.close()
    }

    @Test func readModifyWriteUnderContentionLosesNoUpdate() async throws {
        let t = try TestCluster()
        defer { t.shutdown() }
        let db = try await t.open(maxConnections: 4)
        try await db.transaction { tx in try tx.setConfig("counter", "0") }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<5 {
                group.addTask {
                    for _ in 0..<10 {
                        try await db.transaction { tx in
                            let value = Int(try tx.config("counter") ?? "0") ?? 0
                            try tx.setConfig("counter", String(value + 1))
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(try await db.transaction { tx in try tx.config("counter") } == "50")
        await db.close()
    }

    // MARK: images

    @Test func imagesPrefixesAliasesAndMembers() async throws {
        let t = try TestCluster()
        defer { t.shutdown() }
        let db = try await t.open()
        let (a, member) = try await db.transaction { tx in
            let a = try tx.insertImage(NewImage(fingerprint: fingerprintA, filename: "a.tar.xz", size: 1234, architecture: "x86_64",
                                                properties: ["os": "busybox"]))
            _ = try tx.insertImage(NewImage(fingerprint: fingerprintB, size: 1, architecture: "x86_64"))
            _ = try tx.insertImage(NewImage(fingerprint: fingerprintC, size: 2, architecture: "aarch64"))
            try tx.addAlias(name: "bb", imageID: a.id, description: "busybox")
            let m = try tx.ensureMember(name: "m1", address: "x:1")
            try tx.addImageMember(imageID: a.id, memberID: m)
            try tx.addImageMember(imageID: a.id, memberID: m)
            return (a, m)
        }
        try await db.transaction { tx throws -> Void in
            #expect(try tx.image(fingerprintPrefix: "abc1")?.id == a.id)
            #expect(try tx.image(fingerprintPrefix: fingerprintA)?.properties == ["os": "busybox"])
            #expect(try tx.image(fingerprintPrefix: "def")?.fingerprint == fingerprintC)
            #expect(try tx.image(fingerprintPrefix: "0123") == nil)
            #expect(throws: ClusterDBError.ambiguous("image fingerprint prefix abc")) { try tx.image(fingerprintPrefix: "abc") }
            #expect(throws: ClusterDBError.self) { try tx.image(fingerprintPrefix: "ABC1") }
            #expect(try tx.imageByAlias("bb")?.fingerprint == fingerprintA)
            #expect(try tx.imageByAlias("nope") == nil)
            #expect(try tx.images().map(\.aliases) == [[ImageAliasRow(name: "bb", description: "busybox")], [], []])
            #expect(try tx.imageMembers(imageID: a.id).map(\.id) == [member])
        }
        await #expect(throws: ClusterDBError.alreadyExists("image alias bb")) {
            try await db.transaction { tx in try tx.addAlias(name: "bb", imageID: a.id) }
        }
        await #expect(throws: ClusterDBError.alreadyExists("image \(fingerprintA)")) {
            try await db.transaction { tx in _ = try tx.insertImage(NewImage(fingerprint: fingerprintA, size: 1, architecture: "x86_64")) }
        }
        await #expect(throws: ClusterDBError.self) {
            try await db.transaction { tx in _ = try tx.insertImage(NewImage(fingerprint: "abc", size: 1, architecture: "x86_64")) }
        }
        // Deleting the image takes its aliases and member records with it (foreign keys are on).
        let (deleted, aliases, members) = try await db.transaction { tx in
            (try tx.deleteImage(fingerprint: fingerprintA),
             try tx.query("SELECT count(*) FROM image_aliases").rows,
             try tx.query("SELECT count(*) FROM images_members").rows)
        }
        #expect(deleted)
        #expect(aliases == [[.integer(0)]])
        #expect(members == [[.integer(0)]])
        #expect(try await db.transaction { tx in try tx.image(fingerprintPrefix: "abc") }?.fingerprint == fingerprintB)
        await db.close()
    }

    // MARK: config

    @Test func clusterConfigGetSetDelete() async throws {
        let t = try TestCluster()
        defer { t.shutdown() }
        let db = try await t.open()
        let all = try await db.transaction { tx in
            try tx.setConfig("a", "1")
            try tx.setConfig("b", "2")
            try tx.setConfig("a", "3")
            try tx.setConfig("b", nil)
            return try tx.allConfig()
        }
        #expect(all == ["a": "3"])
        #expect(try await db.transaction { tx in try tx.config("b") } == nil)
        await db.close()
    }

    // MARK: figures

    @Test func measuredSequentialInsertTransactions() async throws {
        let t = try TestCluster()
        defer { t.shutdown() }
        let db = try await t.open(maxConnections: 1)
        let memberID = try await db.transaction { tx in try tx.ensureMember(name: "m", address: "a") }
        let n = 300
        let clock = ContinuousClock()
        let elapsed = try await clock.measure {
            for i in 0..<n {
                _ = try await db.transaction { tx in
                    try tx.insertInstance(NewInstance(name: "bench\(i)", memberID: memberID, imageFingerprint: "", architecture: "x86_64"))
                }
            }
        }
        #expect(try await db.transaction { tx in try tx.instances().count } == n)
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        print("clusterdb figure: \(n) sequential insertInstance transactions (BEGIN, INSERT, SELECT, COMMIT) on one member: \(Int(Double(n) / seconds)) tx/s, \(String(format: "%.2f", seconds * 1000 / Double(n))) ms/tx")
        await db.close()
    }
}
