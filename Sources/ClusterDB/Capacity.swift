import APITypes
import Dqlite
import Foundation

/// What a member reports it can hold (before any override in its config): the API's figures
/// type, so the report reaches `GET /1.0/cluster/resources` unchanged. nil disk or processes:
/// not reported (the scheduler then does not check them).
public typealias ReportedCapacity = ResourceFigures

/// An instance's resource limits as stored in its row; nil = not set (the reader of allocations
/// substitutes a default footprint, so an unlimited instance still counts).
public struct InstanceFootprint: Sendable, Equatable {
    public var cpu: Double?
    public var memory: Int64?
    public var disk: Int64?
    public var processes: Int64?

    public init(cpu: Double? = nil, memory: Int64? = nil, disk: Int64? = nil, processes: Int64? = nil) {
        self.cpu = cpu
        self.memory = memory
        self.disk = disk
        self.processes = processes
    }
}

/// The sum of the footprints of one member's instances.
public struct MemberAllocation: Sendable, Equatable {
    public var instances: Int
    public var cpu: Double
    public var memory: Int64
    public var disk: Int64
    public var processes: Int64

    public init(instances: Int = 0, cpu: Double = 0, memory: Int64 = 0, disk: Int64 = 0, processes: Int64 = 0) {
        self.instances = instances
        self.cpu = cpu
        self.memory = memory
        self.disk = disk
        self.processes = processes
    }
}

extension Transaction {
    /// Records what member `memberID` reports (replacing its previous report).
    public func setReportedCapacity(memberID: Int64, _ capacity: ReportedCapacity, at date: Date = Date()) throws {
        try exec("""
            INSERT INTO members_capacity (member_id, cpu, memory, disk, processes, updated_at) VALUES (?, ?, ?, ?, ?, ?)
            ON CONFLICT (member_id) DO UPDATE SET cpu = excluded.cpu, memory = excluded.memory, disk = excluded.disk,
                processes = excluded.processes, updated_at = excluded.updated_at
            """,
            .integer(memberID), .float(capacity.cpu), .integer(capacity.memory), DqliteValue(capacity.disk),
            DqliteValue(capacity.processes), .integer(Timestamp.nanoseconds(date)))
    }

    /// Every member's last report, by member id (members that never reported are absent).
    public func reportedCapacities() throws -> [Int64: ReportedCapacity] {
        var all: [Int64: ReportedCapacity] = [:]
        for values in try query("SELECT member_id, cpu, memory, disk, processes FROM members_capacity").rows {
            let r = Row(values: values, table: "members_capacity")
            all[try r.int(0, "member_id")] = ReportedCapacity(
                cpu: try r.real(1, "cpu"), memory: try r.int(2, "memory"),
                disk: try r.optionalInt(3, "disk"), processes: try r.optionalInt(4, "processes"))
        }
        return all
    }

    /// Per member: instance count and the SUM of their footprints, with `defaults` standing in for
    /// limits that are not set. Computed from the rows every time (never a stored counter), so it
    /// is exactly what the transaction that reads it sees.
    public func memberAllocations(defaults: InstanceFootprint) throws -> [Int64: MemberAllocation] {
        let rows = try query("""
            SELECT member_id, COUNT(*), TOTAL(COALESCE(limit_cpu, ?)), TOTAL(COALESCE(limit_memory, ?)),
                   TOTAL(COALESCE(limit_disk, ?)), TOTAL(COALESCE(limit_processes, ?))
            FROM instances GROUP BY member_id
            """,
            .float(defaults.cpu ?? 0), .integer(defaults.memory ?? 0), .integer(defaults.disk ?? 0),
            .integer(defaults.processes ?? 0)).rows
        var all: [Int64: MemberAllocation] = [:]
        for values in rows {
            let r = Row(values: values, table: "instances")
            // TOTAL() is a float: exact for byte counts below 2^53 (8 PiB).
            all[try r.int(0, "member_id")] = MemberAllocation(
                instances: Int(try r.int(1, "count")), cpu: try r.real(2, "limit_cpu"),
                memory: Int64(try r.real(3, "limit_memory")), disk: Int64(try r.real(4, "limit_disk")),
                processes: Int64(try r.real(5, "limit_processes")))
        }
        return all
    }

    /// Sets the footprint columns of an instance (after its limits changed). Throws `notFound`.
    public func setInstanceFootprint(name: String, project: String = "default", _ footprint: InstanceFootprint) throws {
        try requireOne(exec("""
            UPDATE instances SET limit_cpu = ?, limit_memory = ?, limit_disk = ?, limit_processes = ?
            WHERE project = ? AND name = ?
            """,
            footprint.cpu.map { .float($0) } ?? .null, DqliteValue(footprint.memory), DqliteValue(footprint.disk),
            DqliteValue(footprint.processes), .text(project), .text(name)), "instance \(name)")
    }

    /// Every idmap base in use, for allocating many blocks at once (see ``IdmapAllocator``).
    public func idmapBasesInUse() throws -> [Int64] {
        try query("SELECT idmap_base FROM instances WHERE idmap_base IS NOT NULL").rows.map {
            try Row(values: $0, table: "instances").int(0, "idmap_base")
        }
    }

    /// Names among `names` that already exist in `project`.
    public func existingInstanceNames(_ names: [String], project: String = "default") throws -> [String] {
        var found: [String] = []
        // dqlite takes at most 255 parameters per statement.
        var start = 0
        while start < names.count {
            let chunk = Array(names[start..<min(start + 200, names.count)])
            start += chunk.count
            let marks = Array(repeating: "?", count: chunk.count).joined(separator: ", ")
            let rows = try query("SELECT name FROM instances WHERE project = ? AND name IN (\(marks))",
                                 params: [.text(project)] + chunk.map { .text($0) }).rows
            found += try rows.map { try Row(values: $0, table: "instances").text(0, "name") }
        }
        return found.sorted()
    }

    /// Inserts many instances with few statements (each statement is a round trip to the leader).
    /// All or nothing within the caller's transaction; throws `alreadyExists` on a taken name or
    /// idmap block and `notFound` for an unknown member.
    public func insertInstances(_ news: [(instance: NewInstance, footprint: InstanceFootprint)]) throws {
        let columns = 14
        let perStatement = 255 / columns
        var start = 0
        while start < news.count {
            let chunk = news[start..<min(start + perStatement, news.count)]
            start += chunk.count
            var params: [DqliteValue] = []
            params.reserveCapacity(chunk.count * columns)
            for (new, footprint) in chunk {
                guard !new.name.isEmpty else { throw ClusterDBError.invalidArgument("instance name is empty") }
                params += [
                    .text(new.project), .text(new.name), .integer(new.memberID), .text(new.imageFingerprint),
                    .text(new.architecture), .text(JSONText.encode(new.config)), .text(new.powerState.rawValue),
                    DqliteValue(new.idmapBase), .integer(Timestamp.nanoseconds(new.createdAt)), DqliteValue(new.requestID),
                    footprint.cpu.map { .float($0) } ?? .null, DqliteValue(footprint.memory), DqliteValue(footprint.disk),
                    DqliteValue(footprint.processes),
                ]
            }
            // Unclaimed until the owner takes them (`claimInstances`).
            let tuple = "(" + Array(repeating: "?", count: columns).joined(separator: ", ") + ", 0)"
            do {
                try exec("""
                    INSERT INTO instances (project, name, member_id, image_fingerprint, architecture, config, power_state,
                                           idmap_base, created_at, request_id, limit_cpu, limit_memory, limit_disk, limit_processes,
                                           claimed)
                    VALUES \(Array(repeating: tuple, count: chunk.count).joined(separator: ", "))
                    """, params: params)
            } catch let error as DqliteError {
                if error.isUniqueViolation, case .server(_, let message, _) = error, message.contains("idmap_base") {
                    throw ClusterDBError.alreadyExists("an idmap block of the batch")
                }
                if error.isConstraintViolation, case .server(_, let message, _) = error, message.contains("FOREIGN KEY") {
                    throw ClusterDBError.notFound("a member of the batch")
                }
                throw error.mappingUnique("an instance name of the batch")
            }
        }
    }

    /// Deletes the named instances; returns how many rows went.
    @discardableResult
    public func deleteInstances(_ names: [String], project: String = "default") throws -> Int {
        var deleted = 0
        try forEachChunk(names) { chunk, marks in
            deleted += Int(try exec("DELETE FROM instances WHERE project = ? AND name IN (\(marks))",
                                    params: [.text(project)] + chunk.map { .text($0) }).rowsAffected)
        }
        return deleted
    }

    /// On the owner, before it creates anything: takes the named rows placed on `memberID`.
    /// Returns the rows it took; throws `notFound` naming rows that are gone (the placing member
    /// gave up on them) or not placed here, and `alreadyExists` for rows already taken (a repeated
    /// request), taking none in either case.
    public func claimInstances(_ names: [String], memberID: Int64, project: String = "default") throws -> [InstanceRow] {
        let wanted = Set(names)
        let rows = try instances(memberID: memberID).filter { $0.project == project && wanted.contains($0.name) }
        guard rows.count == wanted.count else {
            let missing = wanted.subtracting(rows.map(\.name)).sorted()
            throw ClusterDBError.notFound("instances \(missing.prefix(5).joined(separator: ", "))\(missing.count > 5 ? " (and \(missing.count - 5) more)" : "") placed on this member")
        }
        var taken: [String] = []
        try forEachChunk(names) { chunk, marks in
            let rows = try query("SELECT name FROM instances WHERE project = ? AND claimed = 1 AND name IN (\(marks))",
                                 params: [.text(project)] + chunk.map { .text($0) }).rows
            taken += try rows.map { try Row(values: $0, table: "instances").text(0, "name") }
        }
        guard taken.isEmpty else {
            throw ClusterDBError.alreadyExists("instances \(taken.sorted().prefix(5).joined(separator: ", ")) are already being created")
        }
        try forEachChunk(names) { chunk, marks in
            try exec("UPDATE instances SET claimed = 1 WHERE project = ? AND name IN (\(marks))", params: [.text(project)] + chunk.map { .text($0) })
        }
        return rows
    }

    /// On the placing member after its request to the owner failed: deletes the named rows the owner
    /// never claimed and returns the names the owner did claim (it is creating those: they stay).
    public func releaseUnclaimedInstances(_ names: [String], project: String = "default") throws -> (released: Int, claimed: [String]) {
        var claimed: [String] = []
        var released = 0
        try forEachChunk(names) { chunk, marks in
            let params: [DqliteValue] = [.text(project)] + chunk.map { .text($0) }
            claimed += try query("SELECT name FROM instances WHERE project = ? AND claimed = 1 AND name IN (\(marks))", params: params)
                .rows.map { try Row(values: $0, table: "instances").text(0, "name") }
            released += Int(try exec("DELETE FROM instances WHERE project = ? AND claimed = 0 AND name IN (\(marks))", params: params).rowsAffected)
        }
        return (released, claimed.sorted())
    }

    /// Deletes rows placed on `memberID` that nobody claimed since before `date` (the placing
    /// member died between inserting and asking the owner); returns their names.
    public func deleteAbandonedPlacements(memberID: Int64, placedBefore date: Date) throws -> [String] {
        let params: [DqliteValue] = [.integer(memberID), .integer(Timestamp.nanoseconds(date))]
        let names = try query("SELECT name FROM instances WHERE member_id = ? AND claimed = 0 AND created_at < ? ORDER BY name",
                              params: params).rows.map { try Row(values: $0, table: "instances").text(0, "name") }
        if !names.isEmpty { try exec("DELETE FROM instances WHERE member_id = ? AND claimed = 0 AND created_at < ?", params: params) }
        return names
    }

    /// Runs `body` over `names` in chunks small enough for one statement's parameters, with the
    /// chunk's `?, ?, …` list.
    private func forEachChunk(_ names: [String], _ body: ([String], String) throws -> Void) throws {
        var start = 0
        while start < names.count {
            let chunk = Array(names[start..<min(start + 200, names.count)])
            start += chunk.count
            try body(chunk, Array(repeating: "?", count: chunk.count).joined(separator: ", "))
        }
    }

    /// Removes config key `key` from the named instances (one statement per 200 names);
    /// instances without it are left alone.
    public func removeInstanceConfigKey(_ key: String, names: [String], project: String = "default") throws {
        guard !key.contains("\""), !key.contains("\\") else { throw ClusterDBError.invalidArgument("config key \(key)") }
        let path = "$.\"\(key)\""
        try forEachChunk(names) { chunk, marks in
            try exec("UPDATE instances SET config = json_remove(config, ?) WHERE project = ? AND name IN (\(marks)) AND json_type(config, ?) IS NOT NULL",
                     params: [.text(path), .text(project)] + chunk.map { .text($0) } + [.text(path)])
        }
    }

    /// Sets the desired power state of many instances at once.
    public func updateInstancesPowerState(_ names: [String], project: String = "default", _ state: InstancePowerState) throws {
        try forEachChunk(names) { chunk, marks in
            try exec("UPDATE instances SET power_state = ?, last_used_at = ? WHERE project = ? AND name IN (\(marks))",
                     params: [.text(state.rawValue), .integer(Timestamp.nanoseconds(Date())), .text(project)] + chunk.map { .text($0) })
        }
    }
}

extension Transaction {
    /// (name, member id) of the instances inserted with `requestID`: how a launch whose COMMIT
    /// outcome was unknown learns whether it applied.
    public func placedInstances(requestID: String) throws -> [(name: String, memberID: Int64, location: String)] {
        try query("""
            SELECT i.name, i.member_id, m.name FROM instances i JOIN members m ON m.id = i.member_id
            WHERE i.request_id = ? ORDER BY i.id
            """, .text(requestID)).rows.map {
            let r = Row(values: $0, table: "instances")
            return (try r.text(0, "name"), try r.int(1, "member_id"), try r.text(2, "members.name"))
        }
    }
}

extension Row {
    func real(_ i: Int, _ column: String) throws -> Double {
        guard i < values.count else { throw ClusterDBError.corrupt("\(table).\(column) is missing") }
        switch values[i] {
        case .float(let v): return v
        case .integer(let v): return Double(v)
        default: throw ClusterDBError.corrupt("\(table).\(column) should be a number, got \(values[i])")
        }
    }
}
