import Dqlite

/// A placement group as stored: a rule that instances join through their `placement.group`
/// config key. The values are the Scheduler's rule names (checked by the table's constraints).
public struct PlacementGroupRow: Sendable, Equatable {
    public var name: String
    /// `affinity` (together) or `anti-affinity` (apart).
    public var policy: String
    /// `strict` (refuse rather than break the rule) or `permissive`.
    public var rigor: String
    /// `member` or `failure-domain`.
    public var scope: String
    public var description: String

    public init(name: String, policy: String, rigor: String, scope: String, description: String = "") {
        self.name = name
        self.policy = policy
        self.rigor = rigor
        self.scope = scope
        self.description = description
    }
}

extension Transaction {
    /// The instance config key that puts an instance in a placement group.
    public static let placementGroupKey = "placement.group"

    private func placementGroupRow(_ values: [DqliteValue]) throws -> PlacementGroupRow {
        let r = Row(values: values, table: "placement_groups")
        return PlacementGroupRow(name: try r.text(0, "name"), policy: try r.text(1, "policy"), rigor: try r.text(2, "rigor"),
                                 scope: try r.text(3, "scope"), description: try r.text(4, "description"))
    }

    public func placementGroups() throws -> [PlacementGroupRow] {
        try query("SELECT name, policy, rigor, scope, description FROM placement_groups ORDER BY name").rows.map(placementGroupRow)
    }

    public func placementGroup(name: String) throws -> PlacementGroupRow? {
        try query("SELECT name, policy, rigor, scope, description FROM placement_groups WHERE name = ?", .text(name))
            .rows.first.map(placementGroupRow)
    }

    /// Throws `alreadyExists` when the name is taken.
    public func insertPlacementGroup(_ group: PlacementGroupRow) throws {
        do {
            _ = try exec("INSERT INTO placement_groups (name, policy, rigor, scope, description) VALUES (?, ?, ?, ?, ?)",
                         .text(group.name), .text(group.policy), .text(group.rigor), .text(group.scope), .text(group.description))
        } catch let error as DqliteError {
            throw error.mappingUnique("placement group \(group.name)")
        }
    }

    @discardableResult
    public func deletePlacementGroup(name: String) throws -> Bool {
        try exec("DELETE FROM placement_groups WHERE name = ?", .text(name)).rowsAffected > 0
    }

    /// Names of the instances in each placement group, per member id (from their config).
    public func placementGroupInstances() throws -> [Int64: [String: [String]]] {
        let rows = try query("""
            SELECT member_id, name, json_extract(config, '$."placement.group"') AS pg FROM instances
            WHERE pg IS NOT NULL AND pg != '' ORDER BY name
            """).rows
        var result: [Int64: [String: [String]]] = [:]
        for values in rows {
            let r = Row(values: values, table: "instances")
            result[try r.int(0, "member_id"), default: [:]][try r.text(2, "placement group"), default: []].append(try r.text(1, "name"))
        }
        return result
    }
}
