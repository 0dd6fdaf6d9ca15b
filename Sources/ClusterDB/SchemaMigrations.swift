import Dqlite
import Foundation

/// One schema step. Applied once, in its own transaction, together with its row in `schema`.
public struct SchemaMigration: Sendable {
    public let version: Int
    public let statements: [String]

    public init(version: Int, statements: [String]) {
        self.version = version
        self.statements = statements
    }
}

extension SchemaMigration {
    /// Our schema, oldest first. Never edit a shipped step: append a new one.
    public static let all: [SchemaMigration] = [
        SchemaMigration(version: 1, statements: [
            """
            CREATE TABLE members (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                name TEXT NOT NULL UNIQUE,
                address TEXT NOT NULL UNIQUE,
                schema_version INTEGER NOT NULL DEFAULT 0,
                api_extensions INTEGER NOT NULL DEFAULT 0,
                heartbeat INTEGER NOT NULL DEFAULT 0,
                failure_domain TEXT NOT NULL DEFAULT 'default',
                config TEXT NOT NULL DEFAULT '{}',
                state TEXT NOT NULL DEFAULT 'ONLINE'
            )
            """,
            """
            CREATE TABLE instances (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                project TEXT NOT NULL DEFAULT 'default',
                name TEXT NOT NULL,
                member_id INTEGER NOT NULL REFERENCES members(id),
                image_fingerprint TEXT NOT NULL DEFAULT '',
                architecture TEXT NOT NULL,
                config TEXT NOT NULL DEFAULT '{}',
                power_state TEXT NOT NULL DEFAULT 'STOPPED' CHECK (power_state IN ('RUNNING', 'STOPPED')),
                idmap_base INTEGER,
                created_at INTEGER NOT NULL,
                last_used_at INTEGER,
                request_id TEXT,
                UNIQUE (project, name)
            )
            """,
            // A second guard behind the allocator: two instances can never share a uid/gid block.
            "CREATE UNIQUE INDEX instances_idmap_base ON instances (idmap_base) WHERE idmap_base IS NOT NULL",
            "CREATE INDEX instances_member_id ON instances (member_id)",
            "CREATE INDEX instances_image_fingerprint ON instances (image_fingerprint)",
            """
            CREATE TABLE images (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                fingerprint TEXT NOT NULL UNIQUE,
                filename TEXT NOT NULL DEFAULT '',
                size INTEGER NOT NULL DEFAULT 0,
                architecture TEXT NOT NULL DEFAULT '',
                properties TEXT NOT NULL DEFAULT '{}',
                created_at INTEGER NOT NULL,
                uploaded_at INTEGER NOT NULL
            )
            """,
            """
            CREATE TABLE image_aliases (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                name TEXT NOT NULL UNIQUE,
                image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
                description TEXT NOT NULL DEFAULT ''
            )
            """,
            """
            CREATE TABLE images_members (
                image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
                member_id INTEGER NOT NULL REFERENCES members(id) ON DELETE CASCADE,
                PRIMARY KEY (image_id, member_id)
            )
            """,
            "CREATE TABLE config (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        ]),
        // Remote API trust: client and member certificates, and single-use join tokens.
        SchemaMigration(version: 2, statements: [
            """
            CREATE TABLE certificates (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                fingerprint TEXT NOT NULL UNIQUE,
                name TEXT NOT NULL,
                type TEXT NOT NULL CHECK (type IN ('client', 'server')),
                certificate TEXT NOT NULL,
                restricted INTEGER NOT NULL DEFAULT 0
            )
            """,
            // Only the secret's SHA-256 is stored: a database copy must not hold usable tokens.
            """
            CREATE TABLE trust_tokens (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                name TEXT NOT NULL,
                secret_sha256 TEXT NOT NULL UNIQUE,
                expires_at INTEGER
            )
            """,
        ]),
        // Cluster join tokens: like trust tokens, but they admit a member, not a client, and
        // are bound to the member name they were issued for.
        SchemaMigration(version: 3, statements: [
            """
            CREATE TABLE join_tokens (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                name TEXT NOT NULL,
                secret_sha256 TEXT NOT NULL UNIQUE,
                expires_at INTEGER NOT NULL
            )
            """,
        ]),
        // Scheduling: what each member reports it can hold, and each instance's footprint as
        // columns, so a member's allocation is one SUM over its instance rows (NULL = limit not
        // set; the reader substitutes the scheduler's default footprint).
        SchemaMigration(version: 4, statements: [
            """
            CREATE TABLE members_capacity (
                member_id INTEGER PRIMARY KEY REFERENCES members(id) ON DELETE CASCADE,
                cpu REAL NOT NULL,
                memory INTEGER NOT NULL,
                disk INTEGER,
                processes INTEGER,
                updated_at INTEGER NOT NULL
            )
            """,
            "ALTER TABLE instances ADD COLUMN limit_cpu REAL",
            "ALTER TABLE instances ADD COLUMN limit_memory INTEGER",
            "ALTER TABLE instances ADD COLUMN limit_disk INTEGER",
            "ALTER TABLE instances ADD COLUMN limit_processes INTEGER",
        ]),
        // Placement groups: named rules (together / apart) that instances join with their
        // `placement.group` config key; the scheduler reads the members of each group.
        SchemaMigration(version: 5, statements: [
            """
            CREATE TABLE placement_groups (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                name TEXT NOT NULL UNIQUE,
                policy TEXT NOT NULL CHECK (policy IN ('affinity', 'anti-affinity')),
                rigor TEXT NOT NULL CHECK (rigor IN ('strict', 'permissive')),
                scope TEXT NOT NULL CHECK (scope IN ('member', 'failure-domain')),
                description TEXT NOT NULL DEFAULT ''
            )
            """,
        ]),
        // Placed rows wait for their owner: a launch inserts them unclaimed (0) and the owner
        // claims them before creating anything, so a member whose request to the owner failed
        // removes only rows the owner never took (a lost answer must not orphan containers).
        SchemaMigration(version: 6, statements: [
            "ALTER TABLE instances ADD COLUMN claimed INTEGER NOT NULL DEFAULT 1",
        ]),
        // One random mark per write transaction, written inside it: after a COMMIT cut by a
        // leadership change, the next leader tells whether it applied (ClusterDB.transaction).
        SchemaMigration(version: 7, statements: [
            "CREATE TABLE transaction_marks (token TEXT PRIMARY KEY, written_at INTEGER NOT NULL)",
            "CREATE INDEX transaction_marks_written_at ON transaction_marks (written_at)",
        ]),
        // A move in progress: the source writes a random token and the target member; the one
        // transaction that hands the instance over (or calls the move off) clears it, so the
        // two ends never both believe they own the instance (InstanceMoves.swift).
        SchemaMigration(version: 8, statements: [
            "ALTER TABLE instances ADD COLUMN move_token TEXT",
            "ALTER TABLE instances ADD COLUMN move_target INTEGER REFERENCES members(id)",
        ]),
        // What each member can do for a live move (its CRIU probe, or why it has none), as JSON
        // it writes when its agent starts; NULL until then. A source reads the target's before
        // anything of a move is claimed or frozen (Migration's MoveModeRule).
        SchemaMigration(version: 9, statements: [
            "ALTER TABLE members ADD COLUMN migration TEXT",
        ]),
    ]

    static let createSchemaTable = """
        CREATE TABLE IF NOT EXISTS schema (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            version INTEGER NOT NULL UNIQUE,
            updated_at INTEGER NOT NULL
        )
        """
}

extension Transaction {
    /// The highest applied migration (0 on an empty database).
    public func schemaVersion() throws -> Int {
        let rows = try query("SELECT COALESCE(MAX(version), 0) FROM schema").rows
        guard let first = rows.first else { return 0 }
        return Int(try Row(values: first, table: "schema").int(0, "version"))
    }
}
