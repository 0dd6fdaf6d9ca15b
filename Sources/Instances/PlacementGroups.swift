import APITypes
import ClusterDB
import InstanceConfig

/// Placement groups: created and deleted here, applied by the scheduler when an instance that
/// names one in `placement.group` is placed (PlacementPlanner).
extension PlacementService {
    static let placementGroupDefaults = ["rigor": "strict", "scope": "member"]
    static let placementGroupValues: [String: [String]] = [
        "policy": ["affinity", "anti-affinity"], "rigor": ["strict", "permissive"], "scope": ["member", "failure-domain"],
    ]

    public func placementGroups() async throws -> [PlacementGroup] {
        let (groups, grouped) = try await context.db.transaction { tx in (try tx.placementGroups(), try tx.placementGroupInstances()) }
        return groups.map { Self.apiPlacementGroup($0, grouped) }
    }

    public func placementGroup(_ name: String) async throws -> PlacementGroup {
        let (group, grouped) = try await context.db.transaction { tx in (try tx.placementGroup(name: name), try tx.placementGroupInstances()) }
        guard let group else { throw InstancesError.notFound("Placement group \"\(name)\" not found") }
        return Self.apiPlacementGroup(group, grouped)
    }

    /// Validates everything before writing: unknown keys and values are refused with the accepted ones.
    public func createPlacementGroup(_ post: PlacementGroup) async throws {
        do { try InstanceName.validate(post.name) } catch {
            throw InstancesError.invalid("Invalid placement group name \"\(post.name)\": \(error.description)")
        }
        var config = Self.placementGroupDefaults
        for (key, value) in post.config {
            guard let allowed = Self.placementGroupValues[key] else {
                throw InstancesError.invalid("Unknown placement group key \"\(key)\": use policy, rigor and scope")
            }
            guard allowed.contains(value) else {
                throw InstancesError.invalid("Invalid \(key) \"\(value)\": use \(allowed.joined(separator: " or "))")
            }
            config[key] = value
        }
        guard let policy = config["policy"] else {
            throw InstancesError.invalid("A placement group needs a policy: affinity (together) or anti-affinity (apart)")
        }
        let row = PlacementGroupRow(name: post.name, policy: policy, rigor: config["rigor"]!, scope: config["scope"]!, description: post.description)
        do {
            try await context.db.transaction { tx in try tx.insertPlacementGroup(row) }
        } catch ClusterDBError.alreadyExists {
            throw InstancesError.conflict("Placement group \"\(post.name)\" already exists")
        }
    }

    /// Refused while instances name the group: deleting it would silently drop their rule.
    public func deletePlacementGroup(_ name: String) async throws {
        try await context.db.transaction { tx in
            let users = try tx.placementGroupInstances().values.flatMap { $0[name] ?? [] }
            guard users.isEmpty else {
                throw InstancesError.conflict("Placement group \"\(name)\" is used by \(users.sorted().prefix(5).joined(separator: ", "))\(users.count > 5 ? " and \(users.count - 5) more" : ""): delete them or unset their placement.group first")
            }
            guard try tx.deletePlacementGroup(name: name) else { throw InstancesError.notFound("Placement group \"\(name)\" not found") }
        }
    }

    static func apiPlacementGroup(_ row: PlacementGroupRow, _ grouped: [Int64: [String: [String]]]) -> PlacementGroup {
        let users = grouped.values.flatMap { $0[row.name] ?? [] }.sorted()
        return PlacementGroup(name: row.name, description: row.description,
                              config: ["policy": row.policy, "rigor": row.rigor, "scope": row.scope],
                              usedBy: users.map { InstanceRef(name: $0).apiPath })
    }
}
