import APITypes
import Dqlite
import Foundation

public struct MemberRow: Sendable, Equatable {
    public var id: Int64
    public var name: String
    public var address: String
    public var schemaVersion: Int64
    public var apiExtensions: Int64
    /// Last heartbeat recorded by the leader; nil before the first one.
    public var heartbeat: Date?
    public var failureDomain: String
    public var config: [String: String]
    /// Stored by name ("ONLINE", ...); a name this build does not know reads as `.unknown`.
    public var state: MemberStatus
    /// What the member can do for live moves, as JSON its agent published at start
    /// (Migration's `MigrationCapabilities`); nil until it has.
    public var migration: String?

    public init(id: Int64, name: String, address: String, schemaVersion: Int64, apiExtensions: Int64, heartbeat: Date?, failureDomain: String, config: [String: String], state: MemberStatus,
                migration: String? = nil) {
        self.id = id
        self.name = name
        self.address = address
        self.schemaVersion = schemaVersion
        self.apiExtensions = apiExtensions
        self.heartbeat = heartbeat
        self.failureDomain = failureDomain
        self.config = config
        self.state = state
        self.migration = migration
    }
}

extension Transaction {
    private static let memberColumns = "id, name, address, schema_version, api_extensions, heartbeat, failure_domain, config, state, migration"

    private func memberRow(_ values: [DqliteValue]) throws -> MemberRow {
        let r = Row(values: values, table: "members")
        let heartbeat = try r.int(5, "heartbeat")
        return MemberRow(id: try r.int(0, "id"), name: try r.text(1, "name"), address: try r.text(2, "address"),
                         schemaVersion: try r.int(3, "schema_version"), apiExtensions: try r.int(4, "api_extensions"),
                         heartbeat: heartbeat == 0 ? nil : Timestamp.date(fromNanoseconds: heartbeat),
                         failureDomain: try r.text(6, "failure_domain"), config: try r.stringMap(7, "config"),
                         state: MemberStatus(try r.text(8, "state")), migration: try r.optionalText(9, "migration"))
    }

    /// The id of member `name`, inserting it if absent. An existing member keeps its id;
    /// its address is updated when it changed. Throws `alreadyExists` when another member has the address.
    public func ensureMember(name: String, address: String) throws -> Int64 {
        let existing = try query("SELECT id, address FROM members WHERE name = ?", .text(name)).rows
        do {
            if let row = existing.first {
                let r = Row(values: row, table: "members")
                let id = try r.int(0, "id")
                if try r.text(1, "address") != address {
                    try exec("UPDATE members SET address = ? WHERE id = ?", .text(address), .integer(id))
                }
                return id
            }
            return try exec("INSERT INTO members (name, address) VALUES (?, ?)", .text(name), .text(address)).lastInsertID
        } catch let error as DqliteError {
            throw error.mappingUnique("a member with address \(address)")
        }
    }

    public func members() throws -> [MemberRow] {
        try query("SELECT \(Self.memberColumns) FROM members ORDER BY id").rows.map(memberRow)
    }

    public func member(name: String) throws -> MemberRow? {
        try query("SELECT \(Self.memberColumns) FROM members WHERE name = ?", .text(name)).rows.first.map(memberRow)
    }

    public func member(id: Int64) throws -> MemberRow? {
        try query("SELECT \(Self.memberColumns) FROM members WHERE id = ?", .integer(id)).rows.first.map(memberRow)
    }

    public func updateMemberHeartbeat(id: Int64, at date: Date) throws {
        try requireOne(exec("UPDATE members SET heartbeat = ? WHERE id = ?", .integer(Timestamp.nanoseconds(date)), .integer(id)), "member \(id)")
    }

    public func updateMemberState(id: Int64, state: MemberStatus) throws {
        try requireOne(exec("UPDATE members SET state = ? WHERE id = ?", .text(state.name), .integer(id)), "member \(id)")
    }

    /// What the leader's offline detection writes: ONLINE or OFFLINE, except on an EVACUATED
    /// member, which stays EVACUATED through going down and coming back until it is restored (as
    /// in LXD, evacuation is an administrator's state; liveness is the heartbeats'). Returns
    /// whether the row changed.
    @discardableResult
    public func updateMemberLiveness(id: Int64, online: Bool) throws -> Bool {
        let state: MemberStatus = online ? .online : .offline
        let changed = try exec("UPDATE members SET state = ? WHERE id = ? AND state != ?",
                               .text(state.name), .integer(id), .text(MemberStatus.evacuated.name)).rowsAffected > 0
        if !changed, try member(id: id) == nil { throw ClusterDBError.notFound("member \(id)") }
        return changed
    }

    /// Publishes what member `id` can do for live moves (JSON, see `MemberRow.migration`).
    /// Returns whether the stored value changed.
    @discardableResult
    public func updateMemberMigration(id: Int64, migration: String) throws -> Bool {
        let changed = try exec("UPDATE members SET migration = ? WHERE id = ? AND migration IS NOT ?",
                               .text(migration), .integer(id), .text(migration)).rowsAffected > 0
        if !changed, try member(id: id) == nil { throw ClusterDBError.notFound("member \(id)") }
        return changed
    }

    public func updateMemberVersions(id: Int64, schemaVersion: Int64, apiExtensions: Int64) throws {
        try requireOne(exec("UPDATE members SET schema_version = ?, api_extensions = ? WHERE id = ?",
                            .integer(schemaVersion), .integer(apiExtensions), .integer(id)), "member \(id)")
    }

    public func updateMemberConfig(id: Int64, config: [String: String], failureDomain: String? = nil) throws {
        try requireOne(exec("UPDATE members SET config = ?, failure_domain = COALESCE(?, failure_domain) WHERE id = ?",
                            .text(JSONText.encode(config)), DqliteValue(failureDomain), .integer(id)), "member \(id)")
    }

    /// Renames member `id` from `oldName` to `newName`, together with the name its server
    /// certificate is trusted under (members are recognised by that certificate, found by name).
    /// Throws `notFound` when the member is gone, `alreadyExists` when `newName` is taken.
    public func renameMember(id: Int64, from oldName: String, to newName: String) throws {
        do {
            try requireOne(exec("UPDATE members SET name = ? WHERE id = ?", .text(newName), .integer(id)), "member \(id)")
        } catch let error as DqliteError {
            throw error.mappingUnique("a member named \(newName)")
        }
        try exec("UPDATE certificates SET name = ? WHERE name = ? AND type = 'server'", .text(newName), .text(oldName))
    }

    /// Removes a member row; fails (foreign key) while instances still reference it.
    @discardableResult
    public func deleteMember(id: Int64) throws -> Bool {
        try exec("DELETE FROM members WHERE id = ?", .integer(id)).rowsAffected > 0
    }

    func requireOne(_ result: DqliteExecResult, _ what: String) throws {
        if result.rowsAffected == 0 { throw ClusterDBError.notFound(what) }
    }
}
