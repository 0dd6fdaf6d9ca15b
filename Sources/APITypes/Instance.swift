/// `GET /1.0/instances/NAME` (LXD `api.Instance`).
public struct Instance: Codable, Sendable, Equatable {
    public var name: String
    public var description: String = ""
    public var status: String
    public var statusCode: Int
    public var type: String = "container"
    public var architecture: String
    public var config: [String: String]
    public var devices: [String: [String: String]] = [:]
    public var expandedConfig: [String: String]
    public var expandedDevices: [String: [String: String]] = [:]
    public var ephemeral: Bool = false
    public var profiles: [String] = []
    public var stateful: Bool = false
    public var location: String
    public var project: String = "default"
    public var createdAt: String
    public var lastUsedAt: String
    /// Only with `recursion=2`.
    public var state: InstanceState?

    enum CodingKeys: String, CodingKey {
        case name, description, status, type, architecture, config, devices, ephemeral, profiles, stateful, location, project, state
        case statusCode = "status_code"
        case expandedConfig = "expanded_config"
        case expandedDevices = "expanded_devices"
        case createdAt = "created_at"
        case lastUsedAt = "last_used_at"
    }

    public init(name: String, status: StatusCode, architecture: String, config: [String: String], location: String, createdAt: String, lastUsedAt: String, state: InstanceState? = nil) {
        self.name = name
        self.status = status.name
        self.statusCode = status.rawValue
        self.architecture = architecture
        self.config = config
        self.expandedConfig = config
        self.location = location
        self.createdAt = createdAt
        self.lastUsedAt = lastUsedAt
        self.state = state
    }
}

/// `GET /1.0/instances/NAME/state` (LXD `api.InstanceState`).
public struct InstanceState: Codable, Sendable, Equatable {
    public struct Memory: Codable, Sendable, Equatable {
        public var usage: Int64
        public var usagePeak: Int64
        public var total: Int64
        public var swapUsage: Int64 = 0
        public var swapUsagePeak: Int64 = 0
        enum CodingKeys: String, CodingKey {
            case usage, total
            case usagePeak = "usage_peak"
            case swapUsage = "swap_usage"
            case swapUsagePeak = "swap_usage_peak"
        }
        public init(usage: Int64, usagePeak: Int64, total: Int64) {
            self.usage = usage
            self.usagePeak = usagePeak
            self.total = total
        }
    }

    public struct CPU: Codable, Sendable, Equatable {
        /// Nanoseconds of CPU time.
        public var usage: Int64
        public init(usage: Int64) { self.usage = usage }
    }

    public var status: String
    public var statusCode: Int
    public var pid: Int64
    public var processes: Int64
    public var memory: Memory
    public var cpu: CPU
    public var disk: [String: [String: Int64]] = [:]
    public var network: [String: JSONValue]? = nil

    enum CodingKeys: String, CodingKey {
        case status, pid, processes, memory, cpu, disk, network
        case statusCode = "status_code"
    }

    public init(status: StatusCode, pid: Int64, processes: Int64, memory: Memory, cpu: CPU) {
        self.status = status.name
        self.statusCode = status.rawValue
        self.pid = pid
        self.processes = processes
        self.memory = memory
        self.cpu = cpu
    }
}

/// `POST /1.0/instances` body (LXD `api.InstancesPost`).
public struct InstancesPost: Codable, Sendable {
    public struct Source: Codable, Sendable {
        public var type: String
        public var alias: String?
        public var fingerprint: String?
        /// `type` "copy": the instance to copy (LXD's local copy, what `lxc copy` sends within a cluster).
        public var source: String?
        /// `type` "copy": copy a running instance from a consistent freeze of it (lxc sends true
        /// for a running source unless `--stateless`).
        public var live: Bool?
        public init(type: String = "image", alias: String? = nil, fingerprint: String? = nil, source: String? = nil, live: Bool? = nil) {
            self.type = type
            self.alias = alias
            self.fingerprint = fingerprint
            self.source = source
            self.live = live
        }
    }

    public var name: String
    public var source: Source
    public var config: [String: String]?
    public var devices: [String: [String: String]]?
    public var profiles: [String]?
    public var type: String?
    public var ephemeral: Bool?
    public var description: String?
    /// LXD extension `instance_create_start`: start right after creation.
    public var start: Bool?

    public init(name: String, source: Source, config: [String: String]? = nil, start: Bool? = nil) {
        self.name = name
        self.source = source
        self.config = config
        self.start = start
    }
}

/// `POST /1.0/instances/NAME` body (LXD `api.InstancePost`): a rename (`name`) or a move to the
/// member in `?target=` (`migration`, with `live` for a running instance kept running).
public struct InstancePost: Codable, Sendable {
    public var name: String?
    public var migration: Bool?
    public var live: Bool?
    /// LXD's "copy without snapshots"; we have no snapshots yet, so it changes nothing.
    public var instanceOnly: Bool?
    public var containerOnly: Bool?
    /// How a live move carries memory: "stop-and-copy", "post-copy" or "pre-copy" (not in LXD's
    /// `InstancePost`); nil lets the server choose (never post-copy).
    public var migrationMode: String?

    enum CodingKeys: String, CodingKey {
        case name, migration, live
        case instanceOnly = "instance_only"
        case containerOnly = "container_only"
        case migrationMode = "migration_mode"
    }

    public init(name: String? = nil, migration: Bool? = nil, live: Bool? = nil, migrationMode: String? = nil) {
        self.name = name
        self.migration = migration
        self.live = live
        self.migrationMode = migrationMode
    }
}

/// `PUT /1.0/instances/NAME/state` body.
public struct InstanceStatePut: Codable, Sendable {
    public var action: String
    public var timeout: Int?
    public var force: Bool?
    public var stateful: Bool?

    public init(action: String, timeout: Int? = nil, force: Bool? = nil, stateful: Bool? = nil) {
        self.action = action
        self.timeout = timeout
        self.force = force
        self.stateful = stateful
    }
}

/// `PUT`/`PATCH /1.0/instances/NAME` body: the writable part of an instance.
public struct InstancePut: Codable, Sendable {
    public var config: [String: String]?
    public var devices: [String: [String: String]]?
    public var profiles: [String]?
    public var description: String?
    public var ephemeral: Bool?
    public var architecture: String?
    public var stateful: Bool?

    public init(config: [String: String]? = nil) { self.config = config }
}

/// `POST /1.0/instances/NAME/exec` body (LXD `api.InstanceExecPost`).
public struct InstanceExecPost: Codable, Sendable {
    public var command: [String]
    public var environment: [String: String]?
    public var waitForWebsocket: Bool?
    public var interactive: Bool?
    public var recordOutput: Bool?
    public var width: Int?
    public var height: Int?
    public var user: UInt32?
    public var group: UInt32?
    public var cwd: String?

    enum CodingKeys: String, CodingKey {
        case command, environment, interactive, width, height, user, group, cwd
        case waitForWebsocket = "wait-for-websocket"
        case recordOutput = "record-output"
    }

    public init(command: [String], environment: [String: String]? = nil, waitForWebsocket: Bool = true, interactive: Bool = false, width: Int? = nil, height: Int? = nil) {
        self.command = command
        self.environment = environment
        self.waitForWebsocket = waitForWebsocket
        self.interactive = interactive
        self.width = width
        self.height = height
    }
}

/// `POST /1.0/instances/NAME/console` body (LXD `api.InstanceConsolePost`): the terminal's size
/// and the kind of console ("console", the text one; "vga" is for virtual machines).
public struct InstanceConsolePost: Codable, Sendable, Equatable {
    public var width: Int?
    public var height: Int?
    public var type: String?

    public init(width: Int? = nil, height: Int? = nil, type: String? = "console") {
        self.width = width
        self.height = height
        self.type = type
    }
}

/// A control message on an exec's or console's `control` websocket (LXD `api.InstanceExecControl`).
public struct InstanceExecControl: Codable, Sendable {
    public var command: String
    public var args: [String: String]?
    public var signal: Int?

    public init(command: String, args: [String: String]? = nil, signal: Int? = nil) {
        self.command = command
        self.args = args
        self.signal = signal
    }
}
