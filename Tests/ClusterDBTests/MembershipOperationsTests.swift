import ClusterDB
import Dqlite
import Foundation
import Logging
import Testing

/// The typed operations membership uses (renames, emptiness checks, forced removal, raft's
/// configuration), on real dqlite nodes.
@Suite("ClusterDB membership operations")
struct MembershipOperationsTests {
    static let pemA = "-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----\n"

    @Test func renameMemberRenamesItsServerCertificateOnly() async throws {
        let t = try TestCluster()
        defer { t.shutdown() }
        let db = try await t.open()
        let (id, other) = try await db.transaction { tx in
            let id = try tx.ensureMember(name: "old", address: "10.0.0.1:8443")
            let other = try tx.ensureMember(name: "taken", address: "10.0.0.2:8443")
            try tx.addTrustedCertificate(TrustedCertificate(fingerprint: fingerprintA, name: "old", type: .server, certificate: Self.pemA))
            // A client certificate that happens to share the name is not the member's.
            try tx.addTrustedCertificate(TrustedCertificate(fingerprint: fingerprintB, name: "old", type: .client, certificate: Self.pemA))
            return (id, other)
        }
        let (member, certificates) = try await db.transaction { tx in
            try tx.renameMember(id: id, from: "old", to: "new")
            return (try tx.member(id: id), try tx.trustedCertificates())
        }
        #expect(member?.name == "new" && member?.address == "10.0.0.1:8443")
        #expect(certificates.first { $0.fingerprint == fingerprintA }?.name == "new")
        #expect(certificates.first { $0.fingerprint == fingerprintB }?.name == "old")

        await #expect(throws: ClusterDBError.alreadyExists("a member named taken")) {
            try await db.transaction { tx in try tx.renameMember(id: id, from: "new", to: "taken") }
        }
        await #expect(throws: ClusterDBError.notFound("member \(other + 100)")) {
            try await db.transaction { tx in try tx.renameMember(id: other + 100, from: "ghost", to: "ghost2") }
        }
        await db.close()
    }

    @Test func aMembersMigrationCapabilitiesAreWrittenOnlyWhenTheyChange() async throws {
        let t = try TestCluster()
        defer { t.shutdown() }
        let db = try await t.open()
        let id = try await db.transaction { tx in try tx.ensureMember(name: "m1", address: "10.0.0.1:8443") }
        // Unpublished until the agent writes it.
        #expect(try await db.transaction { tx in try tx.member(id: id) }?.migration == nil)
        let writes = try await db.transaction { tx in
            [try tx.updateMemberMigration(id: id, migration: #"{"criu_unavailable":"not found"}"#),
             try tx.updateMemberMigration(id: id, migration: #"{"criu_unavailable":"not found"}"#),
             try tx.updateMemberMigration(id: id, migration: #"{"criu":{}}"#)]
        }
        #expect(writes == [true, false, true])
        #expect(try await db.transaction { tx in try tx.member(id: id) }?.migration == #"{"criu":{}}"#)
        #expect(try await db.transaction { tx in try tx.members() }.first?.migration == #"{"criu":{}}"#)
        await #expect(throws: ClusterDBError.notFound("member \(id + 100)")) {
            try await db.transaction { tx in try tx.updateMemberMigration(id: id + 100, migration: "{}") }
        }
        await db.close()
    }

    @Test func holdsInstancesOrImagesSeesEitherKind() async throws {
        let t = try TestCluster()
        defer { t.shutdown() }
        let db = try await t.open()
        let memberID = try await db.transaction { tx in try tx.ensureMember(name: "m1", address: "10.0.0.1:8443") }
        #expect(try await db.transaction { tx in try tx.holdsInstancesOrImages() } == false)

        try await db.transaction { tx in _ = try tx.insertImage(NewImage(fingerprint: fingerprintA, size: 1, architecture: "x86_64")) }
        #expect(try await db.transaction { tx in try tx.holdsInstancesOrImages() } == true)

        try await db.transaction { tx in
            _ = try tx.deleteImage(fingerprint: fingerprintA)
            _ = try tx.insertInstance(NewInstance(name: "c1", memberID: memberID, imageFingerprint: "", architecture: "x86_64"))
        }
        #expect(try await db.transaction { tx in try tx.holdsInstancesOrImages() } == true)
        await db.close()
    }

    @Test func deleteInstancesOfAMemberLeavesTheOthersAndFreesTheMemberRow() async throws {
        let t = try TestCluster()
        defer { t.shutdown() }
        let db = try await t.open()
        let (gone, kept) = try await db.transaction { tx in
            (try tx.ensureMember(name: "gone", address: "10.0.0.1:8443"), try tx.ensureMember(name: "kept", address: "10.0.0.2:8443"))
        }
        try await db.transaction { tx in
            for name in ["a", "b"] {
                _ = try tx.insertInstance(NewInstance(name: name, memberID: gone, imageFingerprint: "", architecture: "x86_64"))
            }
            _ = try tx.insertInstance(NewInstance(name: "c", memberID: kept, imageFingerprint: "", architecture: "x86_64"))
        }
        let (dropped, again, left) = try await db.transaction { tx in
            (try tx.deleteInstances(memberID: gone), try tx.deleteInstances(memberID: gone), try tx.instances().map(\.name))
        }
        #expect(dropped == 2 && again == 0)
        #expect(left == ["c"])
        // Nothing references the member any more: its row can go.
        #expect(try await db.transaction { tx in try tx.deleteMember(id: gone) })
        await db.close()
    }

    @Test func databaseConfigurationShowsASingleNodeLeadingAndASpareComingAndGoing() async throws {
        let t = try TestCluster()
        defer { t.shutdown() }
        let db = try await t.open()
        let alone = try await db.databaseConfiguration()
        #expect(alone == DatabaseConfiguration(servers: [DqliteServerInfo(id: 1, address: t.address, role: .voter)], leader: 1))
        #expect(try await db.databaseLeader()?.address == t.address)

        // A spare needs no quorum of its own: raft records it even though nothing runs there.
        try await db.addDatabaseNode(id: 7, address: "127.0.0.1:29977")
        #expect(try await db.databaseConfiguration().role(of: 7) == .spare)
        try await db.removeDatabaseNode(id: 7)
        let after = try await db.databaseConfiguration()
        #expect(after.role(of: 7) == nil && after.servers.count == 1)
        await db.close()
    }

    @Test func assignDatabaseRoleAndTransferLeadershipMoveTheLeaderToANewVoter() async throws {
        let pid = getpid()
        let base = NSTemporaryDirectory() + "clusterdb-roles-\(pid)-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: base) }
        let addresses = ["127.0.0.1:32011", "127.0.0.1:32012"]
        let binds = ["@lxd-swift-test-cdb-roles-\(pid)-1", "@lxd-swift-test-cdb-roles-\(pid)-2"]
        let dialer = AbstractSocketDialer(bindAddresses: [addresses[0]: binds[0], addresses[1]: binds[1]])
        let nodes = try (0..<2).map { i in
            try DqliteNode(DqliteNode.Configuration(id: UInt64(i + 1), address: addresses[i], dataDir: "\(base)/\(i + 1)",
                                                    bindAddress: binds[i], peerDialer: dialer), logger: Logger(label: "test.roles"))
        }
        for node in nodes { try node.start() }
        defer { for node in nodes { try? node.stop() } }
        let logger = Logger(label: "test.roles")
        let pool = DqlitePool(configuration: .init(seeds: addresses, dialer: dialer, sessionStatements: ClusterDB.sessionStatements), logger: logger)
        let db = try await ClusterDB.open(pool: pool, logger: logger)

        try await db.addDatabaseNode(id: 2, address: addresses[1])
        #expect(try await db.databaseConfiguration().role(of: 2) == .spare)
        try await db.assignDatabaseRole(id: 2, role: .voter)
        #expect(try await db.databaseConfiguration().role(of: 2) == .voter)
        try await db.transferDatabaseLeadership(to: 2)
        // The old leader's connection answers "not leader" to this transaction: the pool moves to the new one.
        _ = try await db.transaction { tx in try tx.members() }
        let moved = try await db.databaseConfiguration()
        #expect(moved.leader == 2)
        #expect(try await db.databaseLeader()?.address == addresses[1])
        await db.close()
    }
}
