import Dqlite
import Foundation
import Logging

/// What one member's binary knows: the newest schema migration and how many API extensions.
public struct MemberVersion: Sendable, Equatable, Comparable, CustomStringConvertible {
    public var schema: Int
    public var apiExtensions: Int

    public init(schema: Int, apiExtensions: Int) {
        self.schema = schema
        self.apiExtensions = apiExtensions
    }

    public static func < (a: MemberVersion, b: MemberVersion) -> Bool {
        (a.schema, a.apiExtensions) < (b.schema, b.apiExtensions)
    }

    /// A binary's version: the newest of the migrations it carries, and its API extension count.
    public init(migrations: [SchemaMigration], apiExtensions: Int) {
        self.init(schema: migrations.map(\.version).max() ?? 0, apiExtensions: apiExtensions)
    }

    public var description: String { "schema \(schema), \(apiExtensions) API extensions" }
}

/// Whether a starting member may use the cluster database (DESIGN "Versions"): a member newer than
/// others waits until every member runs its version, so no older member ever meets a schema it
/// does not know; an older member keeps working until then. Pure, so it is tested without a node.
public enum VersionGate {
    public enum Decision: Sendable, Equatable {
        /// Migrate (a no-op when the schema is current) and serve.
        case proceed
        /// Members still running an older version, by name.
        case wait(laggards: [String])
        /// The database is newer than this binary: it cannot serve until upgraded.
        case refuse(databaseSchema: Int)
    }

    /// `others` are the other members' recorded versions; a member that never started records
    /// nothing (schema 0) and checks for itself when it does, so it holds nobody up.
    public static func decide(own: MemberVersion, databaseSchema: Int, others: [(name: String, version: MemberVersion)]) -> Decision {
        if databaseSchema > own.schema { return .refuse(databaseSchema: databaseSchema) }
        let laggards = others.filter { $0.version.schema > 0 && $0.version < own }.map(\.name).sorted()
        return laggards.isEmpty ? .proceed : .wait(laggards: laggards)
    }
}

extension ClusterDB {
    /// Opens the database as member `name`: records this binary's version in the member's row,
    /// waits (polling every `pollInterval`) while other members run an older version, then brings
    /// the schema up to date. Returns the database and the member's id. Throws `schemaTooNew` when
    /// the cluster already runs a newer schema than this binary knows.
    public static func openAsMember(
        name: String, address: String, apiExtensions: Int, pool: DqlitePool, logger: Logger,
        migrations: [SchemaMigration] = SchemaMigration.all, pollInterval: Duration = .seconds(2)
    ) async throws -> (db: ClusterDB, memberID: Int64) {
        let own = MemberVersion(migrations: migrations, apiExtensions: apiExtensions)
        let db = try await openUnmigrated(pool: pool, logger: logger)
        let current = try await db.idempotentTransaction { tx in
            try tx.exec(SchemaMigration.createSchemaTable)
            return try tx.schemaVersion()
        }
        // A fresh database has no members to wait for: create the schema first.
        if current == 0 { try await db.migrate(migrations) }
        let memberID = try await db.idempotentTransaction { tx in
            let id = try tx.ensureMember(name: name, address: address)
            try tx.updateMemberVersions(id: id, schemaVersion: Int64(own.schema), apiExtensions: Int64(own.apiExtensions))
            return id
        }
        var waitingSince: ContinuousClock.Instant?
        var lastLog: ContinuousClock.Instant?
        let clock = ContinuousClock()
        while true {
            let (schema, others) = try await db.idempotentTransaction { tx in
                (try tx.schemaVersion(), try tx.members().filter { $0.id != memberID }.map {
                    (name: $0.name, version: MemberVersion(schema: Int($0.schemaVersion), apiExtensions: Int($0.apiExtensions)))
                })
            }
            switch VersionGate.decide(own: own, databaseSchema: schema, others: others) {
            case .proceed:
                if let waitingSince {
                    logger.notice("every member runs this version now; going on", metadata: ["waited": "\(clock.now - waitingSince)"])
                }
                try await db.migrate(migrations)
                return (db, memberID)
            case .refuse(let databaseSchema):
                await db.close()
                throw ClusterDBError.schemaTooNew(database: databaseSchema, known: own.schema)
            case .wait(let laggards):
                let now = clock.now
                if waitingSince == nil { waitingSince = now }
                if lastLog.map({ now - $0 >= .seconds(30) }) ?? true {
                    lastLog = now
                    logger.notice("waiting for the other members to be upgraded before using the cluster database; upgrade and restart them",
                                  metadata: ["members": "\(laggards.joined(separator: ","))", "version": "\(own)"])
                }
                try await Task.sleep(for: pollInterval)
            }
        }
    }
}
