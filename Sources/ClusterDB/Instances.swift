import Dqlite
import Foundation

/// The desired power state stored with an instance (what the owner should converge to).
public enum InstancePowerState: String, Sendable, Equatable {
    case running = "RUNNING"
    case stopped = "STOPPED"
}

public struct NewInstance: Sendable, Equatable {
    public var project: String
    public var name: String
    public var memberID: Int64
    public var imageFingerprint: String
    public var architecture: String
    public var config: [String: String]
    public var powerState: InstancePowerState
    /// Host uid/gid base of a 65536-id block; nil for privileged containers.
    public var idmapBase: Int64?
    public var createdAt: Date
    /// The client request that created it, to reconcile an unknown commit outcome.
    public var requestID: String?

    public init(project: String = "default", name: String, memberID: Int64, imageFingerprint: String, architecture: String,
                config: [String: String] = [:], powerState: InstancePowerState = .stopped, idmapBase: Int64? = nil,
                createdAt: Date = Date(), requestID: String? = nil) {
        self.project = project
        self.name = name
        self.memberID = memberID
        self.imageFingerprint = imageFingerprint
        self.architecture = architecture
        self.config = config
        self.powerState = powerState
        self.idmapBase = idmapBase
        self.createdAt = createdAt
        self.requestID = requestID
    }
}

public struct InstanceRow: Sendable, Equatable {
    public var id: Int64
    public var project: String
    public var name: String
    public var memberID: Int64
    /// The owning member's name.
    public var location: String
    public var imageFingerprint: String
    public var architecture: String
    public var config: [String: String]
    public var powerState: InstancePowerState
    public var idmapBase: Int64?
    public var createdAt: Date
    /// nil until first started.
    public var lastUsedAt: Date?
    public var requestID: String?

    public init(id: Int64, project: String, name: String, memberID: Int64, location: String, imageFingerprint: String, architecture: String, config: [String: String], powerState: InstancePowerState, idmapBase: Int64?, createdAt: Date, lastUsedAt: Date?, requestID: String?) {
        self.id = id
        self.project = project
        self.name = name
        self.memberID = memberID
        self.location = location
        self.imageFingerprint = imageFingerprint
        self.architecture = architecture
        self.config = config
        self.powerState = powerState
        self.idmapBase = idmapBase
        self.createdAt = createdAt
        self.lastUsedAt = lastUsedAt
        self.requestID = requestID
    }
}

extension Transaction {
    private static let instanceSelect = """
        SELECT i.id, i.project, i.name, i.member_id, m.name, i.image_fingerprint, i.architecture, i.config,
               i.power_state, i.idmap_base, i.created_at, i.last_used_at, i.request_id
        FROM instances i JOIN members m ON m.id = i.member_id
        """

    private func instanceRow(_ values: [DqliteValue]) throws -> InstanceRow {
        let r = Row(values: values, table: "instances")
        let power = try r.text(8, "power_state")
        guard let powerState = InstancePowerState(rawValue: power) else {
            throw ClusterDBError.corrupt("instances.power_state is \(power.debugDescription)")
        }
        return InstanceRow(id: try r.int(0, "id"), project: try r.text(1, "project"), name: try r.text(2, "name"),
                           memberID: try r.int(3, "member_id"), location: try r.text(4, "members.name"),
                           imageFingerprint: try r.text(5, "image_fingerprint"), architecture: try r.text(6, "architecture"),
                           config: try r.stringMap(7, "config"), powerState: powerState,
                           idmapBase: try r.optionalInt(9, "idmap_base"), createdAt: try r.date(10, "created_at"),
                           lastUsedAt: try r.optionalDate(11, "last_used_at"), requestID: try r.optionalText(12, "request_id"))
    }

    /// Inserts an instance. Throws `alreadyExists` when (project, name) — or its idmap block — is taken;
    /// `notFound` when the member does not exist.
    public func insertInstance(_ new: NewInstance) throws -> InstanceRow {
        guard !new.name.isEmpty else { throw ClusterDBError.invalidArgument("instance name is empty") }
        let id: Int64
        do {
            id = try exec("""
                INSERT INTO instances (project, name, member_id, image_fingerprint, architecture, config, power_state,
                                       idmap_base, created_at, request_id)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                .text(new.project), .text(new.name), .integer(new.memberID), .text(new.imageFingerprint),
                .text(new.architecture), .text(JSONText.encode(new.config)), .text(new.powerState.rawValue),
                DqliteValue(new.idmapBase), .integer(Timestamp.nanoseconds(new.createdAt)), DqliteValue(new.requestID)).lastInsertID
        } catch let error as DqliteError {
            if error.isUniqueViolation, case .server(_, let message, _) = error, message.contains("idmap_base") {
                throw ClusterDBError.alreadyExists("idmap block at \(new.idmapBase ?? -1)")
            }
            if error.isConstraintViolation, case .server(_, let message, _) = error, message.contains("FOREIGN KEY") {
                throw ClusterDBError.notFound("member \(new.memberID)")
            }
            throw error.mappingUnique("instance \(new.name) in project \(new.project)")
        }
        guard let row = try query("\(Self.instanceSelect) WHERE i.id = ?", .integer(id)).rows.first else {
            throw ClusterDBError.corrupt("instance \(id) vanished right after insert")
        }
        return try instanceRow(row)
    }

    public func instance(name: String, project: String = "default") throws -> InstanceRow? {
        try query("\(Self.instanceSelect) WHERE i.project = ? AND i.name = ?", .text(project), .text(name)).rows.first.map(instanceRow)
    }

    /// The instance created by client request `requestID`: how a caller learns whether a commit
    /// reported as `outcomeUnknown` actually applied.
    public func instance(requestID: String) throws -> InstanceRow? {
        try query("\(Self.instanceSelect) WHERE i.request_id = ?", .text(requestID)).rows.first.map(instanceRow)
    }

    /// All instances, or those on one member, ordered by project and name.
    public func instances(memberID: Int64? = nil) throws -> [InstanceRow] {
        let rows: DqliteRows
        if let memberID {
            rows = try query("\(Self.instanceSelect) WHERE i.member_id = ? ORDER BY i.project, i.name", .integer(memberID))
        } else {
            rows = try query("\(Self.instanceSelect) ORDER BY i.project, i.name")
        }
        return try rows.rows.map(instanceRow)
    }

    /// Replaces the whole config map. Throws `notFound`.
    public func updateInstanceConfig(name: String, project: String = "default", config: [String: String]) throws {
        try requireOne(exec("UPDATE instances SET config = ? WHERE project = ? AND name = ?",
                            .text(JSONText.encode(config)), .text(project), .text(name)), "instance \(name)")
    }

    /// Records the desired power state. Throws `notFound`.
    public func updateInstancePowerState(name: String, project: String = "default", _ state: InstancePowerState) throws {
        try requireOne(exec("UPDATE instances SET power_state = ? WHERE project = ? AND name = ?",
                            .text(state.rawValue), .text(project), .text(name)), "instance \(name)")
    }

    /// Moves the instance to another member (after a migration). Throws `notFound`.
    public func updateInstanceMember(name: String, project: String = "default", memberID: Int64) throws {
        try requireOne(exec("UPDATE instances SET member_id = ? WHERE project = ? AND name = ?",
                            .integer(memberID), .text(project), .text(name)), "instance \(name)")
    }

    /// Renames an instance within its project: one UPDATE, so the row (config, idmap block,
    /// member) keeps everything but its name. Throws `notFound` when there is no such
    /// instance, `alreadyExists` when `newName` is taken in the project.
    public func renameInstance(name: String, project: String = "default", to newName: String) throws {
        guard !newName.isEmpty else { throw ClusterDBError.invalidArgument("new instance name is empty") }
        let result: DqliteExecResult
        do {
            result = try exec("UPDATE instances SET name = ? WHERE project = ? AND name = ?", .text(newName), .text(project), .text(name))
        } catch let error as DqliteError {
            throw error.mappingUnique("instance \(newName) in project \(project)")
        }
        try requireOne(result, "instance \(name)")
    }

    /// Sets last_used_at (on start). Throws `notFound`.
    public func touchInstance(name: String, project: String = "default", lastUsedAt: Date = Date()) throws {
        try requireOne(exec("UPDATE instances SET last_used_at = ? WHERE project = ? AND name = ?",
                            .integer(Timestamp.nanoseconds(lastUsedAt)), .text(project), .text(name)), "instance \(name)")
    }

    /// True when a row was deleted.
    @discardableResult
    public func deleteInstance(name: String, project: String = "default") throws -> Bool {
        try exec("DELETE FROM instances WHERE project = ? AND name = ?", .text(project), .text(name)).rowsAffected > 0
    }

    /// Deletes every instance row of member `memberID` (a member removed for good); returns how many went.
    @discardableResult
    public func deleteInstances(memberID: Int64) throws -> Int64 {
        try exec("DELETE FROM instances WHERE member_id = ?", .integer(memberID)).rowsAffected
    }

    /// Whether the database holds any instance or image: only an empty member may join a
    /// cluster (its database is replaced by the cluster's).
    public func holdsInstancesOrImages() throws -> Bool {
        let rows = try query("SELECT (SELECT count(*) FROM instances) + (SELECT count(*) FROM images)").rows
        return try Row(values: rows.first ?? [], table: "instances").int(0, "count(*)") > 0
    }

    /// How many instances were created from the image (its base layer is in use while > 0).
    public func instanceCount(usingImage fingerprint: String) throws -> Int {
        let rows = try query("SELECT count(*) FROM instances WHERE image_fingerprint = ?", .text(fingerprint)).rows
        return Int(try Row(values: rows.first ?? [], table: "instances").int(0, "count(*)"))
    }

    /// The lowest free `block`-aligned uid/gid base in `[rangeStart, rangeStart + rangeSize)`, judged
    /// against every instance's idmap_base. Insert the instance in the same transaction so the
    /// block is taken atomically. Throws `exhausted` when no block is left.
    public func allocateIdmapBase(rangeStart: Int64, rangeSize: Int64, block: Int64 = 65536) throws -> Int64 {
        guard block > 0, rangeSize > 0, rangeStart >= 0 else {
            throw ClusterDBError.invalidArgument("idmap range start \(rangeStart) size \(rangeSize) block \(block)")
        }
        let used = try idmapBasesInUse()
        guard let base = IdmapAllocator.lowestFree(used: used, rangeStart: rangeStart, rangeSize: rangeSize, block: block) else {
            throw ClusterDBError.exhausted("uid/gid range \(rangeStart)+\(rangeSize) (\(used.count) blocks of \(block) in use)")
        }
        return base
    }
}
