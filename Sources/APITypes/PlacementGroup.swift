/// `/1.0/placement-groups/NAME`: a rule for where the instances that name it in their
/// `placement.group` config key may go, relative to each other.
public struct PlacementGroup: Codable, Sendable, Equatable {
    public var name: String
    public var description: String
    /// `policy` (`affinity`: together, `anti-affinity`: apart), `rigor` (`strict`: refuse a launch
    /// that would break the rule, `permissive`: follow it where possible) and `scope` (`member`
    /// or `failure-domain`).
    public var config: [String: String]
    /// `/1.0/instances/NAME` of the instances in the group (GET only).
    public var usedBy: [String]

    enum CodingKeys: String, CodingKey {
        case name, description, config
        case usedBy = "used_by"
    }

    public init(name: String, description: String = "", config: [String: String], usedBy: [String] = []) {
        self.name = name
        self.description = description
        self.config = config
        self.usedBy = usedBy
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        description = try c.decodeIfPresent(String.self, forKey: .description) ?? ""
        config = try c.decodeIfPresent([String: String].self, forKey: .config) ?? [:]
        usedBy = try c.decodeIfPresent([String].self, forKey: .usedBy) ?? []
    }
}
