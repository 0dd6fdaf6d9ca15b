/// A cluster member's status. This server stores and sends the upper-case names it always has
/// ("ONLINE"); LXD itself sends "Online", which decodes to the same case, as any spelling does.
public enum MemberStatus: Sendable, Hashable, CustomStringConvertible {
    /// Answers the leader's heartbeats.
    case online
    /// Missed heartbeats for longer than the offline threshold.
    case offline
    /// Emptied of instances on purpose; placement skips it.
    case evacuated
    /// A status this build does not know (LXD's "Blocked", a newer member's): kept as received,
    /// so a peer's member list still decodes. Like every status but `offline`, it counts as reachable.
    case unknown(String)

    /// The status `text` names, in any letter case.
    public init(_ text: String) {
        switch text.uppercased() {
        case "ONLINE": self = .online
        case "OFFLINE": self = .offline
        case "EVACUATED": self = .evacuated
        default: self = .unknown(text)
        }
    }

    /// The name stored in the database and sent on the wire.
    public var name: String {
        switch self {
        case .online: "ONLINE"
        case .offline: "OFFLINE"
        case .evacuated: "EVACUATED"
        case .unknown(let text): text
        }
    }

    public var description: String { name }
}

extension MemberStatus: Codable {
    public init(from decoder: any Decoder) throws {
        self.init(try decoder.singleValueContainer().decode(String.self))
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(name)
    }
}

/// One member as `GET /1.0/cluster/members` shows it (LXD `api.ClusterMember`). Decoding
/// accepts what an LXD server sends too: fields this server always fills may be absent there,
/// and LXD's `database` is a boolean.
public struct ClusterMemberInfo: Codable, Sendable, Equatable {
    public var serverName: String
    public var url: String
    /// "voter", "stand-by" or "spare" (dqlite's view), "" when unknown.
    public var database: String
    public var status: MemberStatus
    public var message: String
    public var failureDomain: String
    public var fingerprint: String
    /// Member config (`scheduler.*`, `user.*`): MemberConfigSchema.
    public var config: [String: String]
    /// LXD's roles list: "database" for a voter, "database-leader" added for the leader.
    public var roles: [String]
    /// Which live-move memory modes the member supports, and why not (not in LXD's
    /// `ClusterMember`: LXD clients ignore it). Nil from an LXD server.
    public var migration: MemberMigration?

    enum CodingKeys: String, CodingKey {
        case url, database, status, message, fingerprint, config, roles, migration
        case serverName = "server_name"
        case failureDomain = "failure_domain"
        case databaseRole = "database_role"
    }

    public init(serverName: String, url: String, database: String, status: MemberStatus, message: String, failureDomain: String, fingerprint: String,
                config: [String: String] = [:], roles: [String] = [], migration: MemberMigration? = nil) {
        self.serverName = serverName
        self.url = url
        self.database = database
        self.status = status
        self.message = message
        self.failureDomain = failureDomain
        self.fingerprint = fingerprint
        self.config = config
        self.roles = roles
        self.migration = migration
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        serverName = try c.decode(String.self, forKey: .serverName)
        url = try c.decode(String.self, forKey: .url)
        // LXD says only whether the member holds the database (a voter); we add the role.
        if let role = try c.decodeIfPresent(String.self, forKey: .databaseRole) {
            database = role
        } else if let holds = try? c.decodeIfPresent(Bool.self, forKey: .database) {
            database = holds ? "voter" : ""
        } else {
            database = try c.decodeIfPresent(String.self, forKey: .database) ?? ""
        }
        status = try c.decode(MemberStatus.self, forKey: .status)
        message = try c.decodeIfPresent(String.self, forKey: .message) ?? ""
        failureDomain = try c.decodeIfPresent(String.self, forKey: .failureDomain) ?? ""
        fingerprint = try c.decodeIfPresent(String.self, forKey: .fingerprint) ?? ""
        config = try c.decodeIfPresent([String: String].self, forKey: .config) ?? [:]
        roles = try c.decodeIfPresent([String].self, forKey: .roles) ?? []
        migration = try c.decodeIfPresent(MemberMigration.self, forKey: .migration)
    }

    /// LXD's shape (`database` a boolean: the member is a voter, which LXD's clients decode
    /// strictly) plus `database_role`, the dqlite role they ignore.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(serverName, forKey: .serverName)
        try c.encode(url, forKey: .url)
        try c.encode(database == "voter", forKey: .database)
        try c.encode(database, forKey: .databaseRole)
        try c.encode(status, forKey: .status)
        try c.encode(message, forKey: .message)
        try c.encode(failureDomain, forKey: .failureDomain)
        try c.encode(fingerprint, forKey: .fingerprint)
        try c.encode(config, forKey: .config)
        try c.encode(roles, forKey: .roles)
        try c.encodeIfPresent(migration, forKey: .migration)
    }
}

/// What a member can do for live moves (`ClusterMemberInfo.migration`), from the CRIU probe it
/// published when its agent started. Stateless and cold moves need no CRIU: always possible.
public struct MemberMigration: Codable, Sendable, Equatable {
    /// `criu --version` on the member; nil when it has no usable CRIU.
    public var criuVersion: String?
    /// Every memory mode ("stop-and-copy", "post-copy", "pre-copy") with whether this member
    /// supports it and, when not, why.
    public var modes: [String: MigrationModeAvailability]
    /// Per other member: whether a live move from this member to it is possible, in which mode
    /// by default, and why not.
    public var liveMoves: [String: LiveMoveAvailability]

    enum CodingKeys: String, CodingKey {
        case modes
        case criuVersion = "criu_version"
        case liveMoves = "live_moves"
    }

    public init(criuVersion: String?, modes: [String: MigrationModeAvailability], liveMoves: [String: LiveMoveAvailability]) {
        self.criuVersion = criuVersion
        self.modes = modes
        self.liveMoves = liveMoves
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        criuVersion = try c.decodeIfPresent(String.self, forKey: .criuVersion)
        modes = try c.decodeIfPresent([String: MigrationModeAvailability].self, forKey: .modes) ?? [:]
        liveMoves = try c.decodeIfPresent([String: LiveMoveAvailability].self, forKey: .liveMoves) ?? [:]
    }
}

/// One memory mode on one member.
public struct MigrationModeAvailability: Codable, Sendable, Equatable {
    public var available: Bool
    /// Why the mode is unavailable; nil when it is available.
    public var reason: String?

    public init(available: Bool, reason: String? = nil) {
        self.available = available
        self.reason = reason
    }
}

/// A live move from one member to another.
public struct LiveMoveAvailability: Codable, Sendable, Equatable {
    public var possible: Bool
    /// The memory mode a live move uses when none is asked for; nil when not possible.
    public var mode: String?
    /// Why a live move is impossible; nil when possible.
    public var reason: String?

    public init(possible: Bool, mode: String? = nil, reason: String? = nil) {
        self.possible = possible
        self.mode = mode
        self.reason = reason
    }
}

/// A key a joining member must (or may) set for itself (LXD `api.ClusterMemberConfigKey`).
/// This server asks for none; the shape is here so LXD's bodies decode.
public struct ClusterMemberConfigKey: Codable, Sendable, Equatable {
    public var entity: String
    public var name: String
    public var key: String
    public var value: String
    public var description: String

    public init(entity: String, name: String, key: String, value: String, description: String = "") {
        self.entity = entity
        self.name = name
        self.key = key
        self.value = value
        self.description = description
    }
}

/// `GET /1.0/cluster` (LXD `api.Cluster`).
public struct ClusterInfo: Codable, Sendable, Equatable {
    public var serverName: String
    public var enabled: Bool
    /// Keys a joining member must set for itself (LXD lists storage keys here; none are needed yet).
    public var memberConfig: [ClusterMemberConfigKey]

    enum CodingKeys: String, CodingKey {
        case enabled
        case serverName = "server_name"
        case memberConfig = "member_config"
    }

    public init(serverName: String, enabled: Bool, memberConfig: [ClusterMemberConfigKey] = []) {
        self.serverName = serverName
        self.enabled = enabled
        self.memberConfig = memberConfig
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        serverName = try c.decode(String.self, forKey: .serverName)
        enabled = try c.decode(Bool.self, forKey: .enabled)
        // LXD sends null for none.
        memberConfig = try c.decodeIfPresent([ClusterMemberConfigKey].self, forKey: .memberConfig) ?? []
    }
}

/// `PUT /1.0/cluster` (LXD `api.ClusterPut`): `enabled` with `server_name` bootstraps (enables
/// clustering); `cluster_token` joins. Fields not sent stay nil.
public struct ClusterPut: Codable, Sendable, Equatable {
    public var serverName: String?
    public var enabled: Bool?
    public var clusterToken: String?
    public var serverAddress: String?
    public var clusterAddress: String?
    public var clusterCertificate: String?
    public var memberConfig: [ClusterMemberConfigKey]?

    enum CodingKeys: String, CodingKey {
        case enabled
        case serverName = "server_name"
        case clusterToken = "cluster_token"
        case serverAddress = "server_address"
        case clusterAddress = "cluster_address"
        case clusterCertificate = "cluster_certificate"
        case memberConfig = "member_config"
    }

    public init(serverName: String? = nil, enabled: Bool? = nil, clusterToken: String? = nil) {
        self.serverName = serverName
        self.enabled = enabled
        self.clusterToken = clusterToken
    }
}

/// `POST /1.0/cluster/members` (LXD `api.ClusterMembersPost`): a join token for a new member.
public struct ClusterMembersPost: Codable, Sendable, Equatable {
    public var serverName: String

    enum CodingKeys: String, CodingKey { case serverName = "server_name" }

    public init(serverName: String) { self.serverName = serverName }
}

/// `POST /1.0/cluster/members/NAME/state` (LXD `api.ClusterMemberStatePost`): evacuate a member
/// or restore an evacuated one.
public struct ClusterMemberStatePost: Codable, Sendable, Equatable {
    /// "evacuate" or "restore".
    public var action: String
    /// For evacuate: "stop", "migrate" or "live-migrate" overrides every instance's
    /// `cluster.evacuate`; nil or "" keeps each instance's own.
    public var mode: String?

    public init(action: String, mode: String? = nil) {
        self.action = action
        self.mode = mode
    }
}

/// What an evacuation or restore did with one instance, in its operation's metadata under
/// "instances" (reported as each is done, so a client polling the operation sees progress).
public struct EvacuationOutcome: Codable, Sendable, Equatable {
    public var project: String
    public var name: String
    /// "moved-live", "moved" (stateless or cold), "stopped", "left", "started", "failed",
    /// "unchanged" (restore: nothing to do).
    public var outcome: String
    /// The member it went to (moves), "" otherwise.
    public var target: String
    /// Why it was stopped, left or failed; "" for a move.
    public var reason: String

    public init(project: String, name: String, outcome: String, target: String = "", reason: String = "") {
        self.project = project
        self.name = name
        self.outcome = outcome
        self.target = target
        self.reason = reason
    }
}

/// A join token as issued: its fields, which LXD's token operation carries (`lxc cluster add`
/// encodes the token from them), and the encoded token itself.
public struct IssuedJoinToken: Sendable, Equatable {
    public var serverName: String
    public var fingerprint: String
    public var addresses: [String]
    public var secret: String
    /// Unix seconds.
    public var expiresAt: Int64
    public var encoded: String

    public init(serverName: String, fingerprint: String, addresses: [String], secret: String, expiresAt: Int64, encoded: String) {
        self.serverName = serverName
        self.fingerprint = fingerprint
        self.addresses = addresses
        self.secret = secret
        self.expiresAt = expiresAt
        self.encoded = encoded
    }
}

/// `PUT /1.0/cluster/members/NAME` (LXD `api.ClusterMemberPut`). PUT replaces config and failure
/// domain; `roles` are the database's to decide and are ignored, as LXD recomputes them too.
public struct ClusterMemberPut: Codable, Sendable, Equatable {
    public var description: String?
    public var config: [String: String]?
    public var failureDomain: String?
    public var roles: [String]?
    public var groups: [String]?

    enum CodingKeys: String, CodingKey {
        case description, config, roles, groups
        case failureDomain = "failure_domain"
    }

    public init(description: String? = nil, config: [String: String]? = nil, failureDomain: String? = nil, roles: [String]? = nil, groups: [String]? = nil) {
        self.description = description
        self.config = config
        self.failureDomain = failureDomain
        self.roles = roles
        self.groups = groups
    }
}

// MARK: Member to member (/internal/cluster)

/// What the joining member sends to an existing member (`POST /internal/cluster/accept`).
public struct ClusterAcceptRequest: Codable, Sendable, Equatable {
    public var serverName: String
    /// host:port of the joining member's HTTPS listener, which is also its dqlite address.
    public var address: String
    /// PEM of the certificate the joining member presents on the connection.
    public var certificate: String
    public var secret: String
    /// The joining binary's newest schema migration and API extension count: members of one
    /// cluster run one version (ClusterDB.VersionGate), so a mismatch is refused before anything is written.
    public var schemaVersion: Int?
    public var apiExtensions: Int?

    enum CodingKeys: String, CodingKey {
        case address, certificate, secret
        case serverName = "server_name"
        case schemaVersion = "schema_version"
        case apiExtensions = "api_extensions"
    }

    public init(serverName: String, address: String, certificate: String, secret: String, schemaVersion: Int? = nil, apiExtensions: Int? = nil) {
        self.serverName = serverName
        self.address = address
        self.certificate = certificate
        self.secret = secret
        self.schemaVersion = schemaVersion
        self.apiExtensions = apiExtensions
    }
}

/// A member as the join answer and the heartbeat list it.
public struct ClusterPeerInfo: Codable, Sendable, Equatable {
    public var name: String
    public var address: String
    public var fingerprint: String
    public var dqliteID: UInt64

    enum CodingKeys: String, CodingKey {
        case name, address, fingerprint
        case dqliteID = "dqlite_id"
    }

    public init(name: String, address: String, fingerprint: String, dqliteID: UInt64) {
        self.name = name
        self.address = address
        self.fingerprint = fingerprint
        self.dqliteID = dqliteID
    }
}

/// The answer to an accepted join: the joining member's dqlite id and every member (itself included).
public struct ClusterAcceptResponse: Codable, Sendable, Equatable {
    public var dqliteID: UInt64
    public var members: [ClusterPeerInfo]

    enum CodingKeys: String, CodingKey {
        case members
        case dqliteID = "dqlite_id"
    }

    public init(dqliteID: UInt64, members: [ClusterPeerInfo]) {
        self.dqliteID = dqliteID
        self.members = members
    }
}

/// What the leader's heartbeat carries (`POST /internal/cluster/heartbeat`): the member list as it knows it.
public struct ClusterHeartbeat: Codable, Sendable, Equatable {
    public var members: [ClusterPeerInfo]
    public init(members: [ClusterPeerInfo]) { self.members = members }
}
