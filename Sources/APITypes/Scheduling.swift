/// Extension `instances_create_count` and `instances_scheduler_policy`: fields of
/// `POST /1.0/instances` besides LXD's `InstancesPost`, read from the same JSON body.
///
/// With `count`, the request creates `count` instances named `name_prefix` + a zero-padded index
/// (`web-001` ... `web-300`), placed together by the scheduler, all or nothing.
public struct InstancesCreateOptions: Codable, Sendable, Equatable {
    public var count: Int?
    public var namePrefix: String?
    /// `fewest`, `spread` or `binpack` for this launch, instead of the cluster's `scheduler.policy`.
    public var schedulerPolicy: String?

    enum CodingKeys: String, CodingKey {
        case count
        case namePrefix = "name_prefix"
        case schedulerPolicy = "scheduler_policy"
    }

    public init(count: Int? = nil, namePrefix: String? = nil, schedulerPolicy: String? = nil) {
        self.count = count
        self.namePrefix = namePrefix
        self.schedulerPolicy = schedulerPolicy
    }
}

/// `POST /1.0/instances` with the extension fields: what `lxdctl launch --count` sends.
public struct InstancesBatchPost: Codable, Sendable {
    public var name: String
    public var source: InstancesPost.Source
    public var config: [String: String]?
    public var start: Bool?
    public var count: Int?
    public var namePrefix: String?
    public var schedulerPolicy: String?

    enum CodingKeys: String, CodingKey {
        case name, source, config, start, count
        case namePrefix = "name_prefix"
        case schedulerPolicy = "scheduler_policy"
    }

    public init(name: String = "", source: InstancesPost.Source, config: [String: String]? = nil, start: Bool? = nil,
                count: Int? = nil, namePrefix: String? = nil, schedulerPolicy: String? = nil) {
        self.name = name
        self.source = source
        self.config = config
        self.start = start
        self.count = count
        self.namePrefix = namePrefix
        self.schedulerPolicy = schedulerPolicy
    }
}

/// `POST /internal/instances/materialise` (members only): the receiving member of a launch asks
/// the owner to create, and maybe start, instances whose rows it already inserted there.
public struct InstancesMaterialisePost: Codable, Sendable, Equatable {
    public var names: [String]
    public var start: Bool

    public init(names: [String], start: Bool) {
        self.names = names
        self.start = start
    }
}

/// Amounts of the resources the scheduler accounts for (`nil`: not reported, not checked).
public struct ResourceFigures: Codable, Sendable, Equatable {
    public var cpu: Double
    public var memory: Int64
    public var disk: Int64?
    public var processes: Int64?

    public init(cpu: Double, memory: Int64, disk: Int64? = nil, processes: Int64? = nil) {
        self.cpu = cpu
        self.memory = memory
        self.disk = disk
        self.processes = processes
    }
}

/// One member in `GET /1.0/cluster/resources` (extension `cluster_member_resources`).
public struct MemberResources: Codable, Sendable, Equatable {
    public var serverName: String
    public var status: MemberStatus
    public var failureDomain: String
    /// `scheduler.instance`: all, manual or group.
    public var schedulerInstance: String
    /// What the member reported; nil before its first report.
    public var reported: ResourceFigures?
    /// What the scheduler uses: reported, or overridden by the member's `scheduler.*` config.
    public var capacity: ResourceFigures
    /// Sum over the member's instances (limits, or the default footprint where unset).
    public var allocated: ResourceFigures
    public var instances: Int
    /// cpu may be allocated up to `capacity.cpu × cpuOvercommit`.
    public var cpuOvercommit: Double
    /// The uid/gid range isolated instances get their ids from; only the member that answered
    /// knows its own (nil for the others).
    public var idmap: IDMapSummary?

    enum CodingKeys: String, CodingKey {
        case status, reported, capacity, allocated, instances, idmap
        case serverName = "server_name"
        case failureDomain = "failure_domain"
        case schedulerInstance = "scheduler_instance"
        case cpuOvercommit = "cpu_overcommit"
    }

    public init(serverName: String, status: MemberStatus, failureDomain: String, schedulerInstance: String, reported: ResourceFigures?,
                capacity: ResourceFigures, allocated: ResourceFigures, instances: Int, cpuOvercommit: Double, idmap: IDMapSummary? = nil) {
        self.idmap = idmap
        self.serverName = serverName
        self.status = status
        self.failureDomain = failureDomain
        self.schedulerInstance = schedulerInstance
        self.reported = reported
        self.capacity = capacity
        self.allocated = allocated
        self.instances = instances
        self.cpuOvercommit = cpuOvercommit
    }
}

/// A member's uid/gid range for isolated instances (`lxdd --idmap-range`), in `MemberResources`.
public struct IDMapSummary: Codable, Sendable, Equatable {
    public var start: Int64
    public var size: Int64
    /// How many isolated instances the range holds: one block of 65,536 ids each.
    public var instances: Int64

    public init(start: Int64, size: Int64, instances: Int64) {
        self.start = start
        self.size = size
        self.instances = instances
    }
}

/// `PATCH /1.0/cluster/members/NAME`: config keys to set (an empty value removes the key).
public struct ClusterMemberPatch: Codable, Sendable {
    public var config: [String: String]
    public init(config: [String: String]) { self.config = config }
}

/// `PUT`/`PATCH /1.0` body: the server (cluster-wide) config.
public struct ServerPut: Codable, Sendable {
    public var config: [String: String]
    public init(config: [String: String]) { self.config = config }
}
