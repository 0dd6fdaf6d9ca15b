import APITypes
import ArgumentParser
import LXDClient

struct Launch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create and start an instance, or many with --count.",
        discussion: """
            Without --target the cluster's scheduler picks the member (policy: server config scheduler.policy,
            or --policy). --target MEMBER or --target @GROUP narrows the choice.
            With --count N one request creates N instances named PREFIX001...PREFIXN (--name-prefix, else NAME-).
            """)
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "Image alias.") var image: String
    @Argument(help: "Instance name (with --count: the name prefix is NAME- unless --name-prefix is given).") var name: String?
    @Option(name: [.customShort("c"), .long], help: "Config key=value (repeatable).") var config: [String] = []
    @Option(help: "Cluster member (or @group) to create the instance on.") var target: String?
    @Option(help: "How many instances to create in one request.") var count: Int?
    @Option(name: .customLong("name-prefix"), help: "Name prefix of the instances (with --count).") var namePrefix: String?
    @Option(help: "Scheduler policy for this launch: fewest, spread or binpack.") var policy: String?
    @Flag(name: .customLong("no-start"), help: "Create only (with --count).") var noStart = false

    func run() async throws {
        let config = try ArgumentSyntax.keyValues(config)
        if count != nil || namePrefix != nil || policy != nil {
            let (client, name) = try name.map { try connection.target($0) } ?? (connection.client, "")
            try await LaunchMany.run(client: client, post: InstancesBatchPost(
                name: name, source: .init(alias: image), config: config, start: !noStart, count: count,
                namePrefix: namePrefix, schedulerPolicy: policy), target: target)
            return
        }
        guard let reference = self.name else { throw CLIError("launch needs an instance name (or --count N --name-prefix P)") }
        let (client, name) = try connection.target(reference)
        Output.stdout("Creating \(name)\n")
        try await client.createInstance(InstancesPost(name: name, source: .init(alias: image), config: config, start: true), target: target)
        Output.stdout("Starting \(name)\n")
    }
}

struct Init: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Create an instance without starting it.")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "Image alias.") var image: String
    @Argument(help: "Instance name.") var name: String
    @Option(name: [.customShort("c"), .long], help: "Config key=value (repeatable).") var config: [String] = []

    func run() async throws {
        let config = try ArgumentSyntax.keyValues(config)
        Output.stdout("Creating \(name)\n")
        try await connection.client.createInstance(InstancesPost(name: name, source: .init(alias: image), config: config))
    }
}

struct Start: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Start instances.")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "Instance names.") var names: [String]

    func run() async throws {
        for reference in names {
            let (client, name) = try connection.target(reference)
            try await client.changeState(name, InstanceStatePut(action: "start"))
        }
    }
}

struct Stop: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Stop instances.")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "Instance names.") var names: [String]
    @Flag(name: [.customShort("f"), .long], help: "Kill instead of asking init to shut down.") var force = false
    @Option(help: "Seconds to wait for a clean shutdown (-1: no limit).") var timeout: Int = -1
    @Flag(help: "Checkpoint the running state so the next start restores it.") var stateful = false

    func run() async throws {
        let client = connection.client
        let change = InstanceStatePut(action: "stop", timeout: timeout, force: force, stateful: stateful ? true : nil)
        for name in names { try await client.changeState(name, change) }
    }
}

struct Restart: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Restart instances.")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "Instance names.") var names: [String]
    @Flag(name: [.customShort("f"), .long], help: "Kill instead of asking init to shut down.") var force = false
    @Option(help: "Seconds to wait for a clean shutdown (-1: no limit).") var timeout: Int = -1

    func run() async throws {
        let client = connection.client
        for name in names { try await client.changeState(name, InstanceStatePut(action: "restart", timeout: timeout, force: force)) }
    }
}

struct Delete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Delete instances.")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "Instance names.") var names: [String]
    @Flag(name: [.customShort("f"), .long], help: "Stop running instances first.") var force = false

    func run() async throws {
        for reference in names {
            let (client, name) = try connection.target(reference)
            try await client.deleteInstance(name, force: force)
        }
    }
}

struct List: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List instances with their state.")
    @OptionGroup var connection: ConnectionOptions
    @Option(name: [.customShort("f"), .long], help: "Output format: table, csv or json.") var format: OutputFormat = .table
    @Argument(help: "Remote to list (REMOTE:); default: the current remote.") var remote: String?

    func run() async throws {
        let client = try connection.target(remote ?? "").client
        let instances = try await client.instances()
        try Output.listing(format, headers: Views.instanceColumns, rows: Views.instanceRows(instances), json: instances)
    }
}

struct Info: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show an instance's details and live state.")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "Instance name.") var name: String

    func run() async throws {
        let (client, name) = try connection.target(self.name)
        let instance = try await client.instance(name)
        let state = try await client.instanceState(name)
        // What its member can do for live moves; a server that is not clustered has no member to show.
        var member: ClusterMemberInfo?
        if !instance.location.isEmpty, instance.location != "none" { member = try? await client.clusterMember(instance.location) }
        Output.stdout(Views.info(instance, state: state, member: member))
    }
}

struct ConfigCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config", abstract: "Read and change instance config.",
        subcommands: [Set.self, Unset.self, Get.self, Show.self, TrustCommand.self]
    )

    /// A server (cluster-wide) key such as `scheduler.policy`: instance names never contain dots.
    static func isServerKey(_ argument: String) -> Bool { argument.contains(".") || argument.contains("=") }

    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Set config keys: NAME key=value... (or NAME key value); server keys: KEY VALUE (e.g. scheduler.policy spread).")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Instance name, or a server key (it contains a dot).") var name: String
        @Argument(help: "key=value pairs.") var settings: [String] = []

        func run() async throws {
            // Instance names cannot contain dots or '=': this is `lxc config set KEY VALUE` for the server.
            if ConfigCommand.isServerKey(name) {
                let config = name.contains("=") ? try ArgumentSyntax.keyValues([name] + settings)
                    : settings.count == 1 ? [name: settings[0]] : [:]
                guard !config.isEmpty else { throw CLIError("give the server key's value: config set \(name) VALUE") }
                try await connection.client.updateServerConfig(config)
                return
            }
            let config: [String: String]
            if settings.count == 2, !settings[0].contains("=") {
                config = [settings[0]: settings[1]]
            } else {
                config = try ArgumentSyntax.keyValues(settings)
            }
            guard !config.isEmpty else { throw CLIError("nothing to set; give key=value") }
            try await connection.client.setConfig(name, config)
        }
    }

    struct Unset: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove config keys.")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Instance name.") var name: String
        @Argument(help: "Keys to remove.") var keys: [String] = []

        func run() async throws {
            if ConfigCommand.isServerKey(name) {
                try await connection.client.updateServerConfig(Dictionary(uniqueKeysWithValues: ([name] + keys).map { ($0, "") }))
                return
            }
            try await connection.client.unsetConfig(name, keys: keys)
        }
    }

    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print one config value (empty when unset).")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Instance name.") var name: String
        @Argument(help: "Key.") var key: String?

        func run() async throws {
            guard let key else {
                guard ConfigCommand.isServerKey(name) else { throw CLIError("give the key: config get \(name) KEY") }
                Output.stdout((try await connection.client.serverConfig()[name] ?? "") + "\n")
                return
            }
            Output.stdout((try await connection.client.instance(name).config[key] ?? "") + "\n")
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the instance's configuration as YAML.")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Instance name.") var name: String

        func run() async throws {
            Output.stdout(Views.configShow(try await connection.client.instance(name)))
        }
    }
}

struct OperationCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "operation", abstract: "Inspect background operations.",
        subcommands: [ListOperations.self, ShowOperation.self]
    )

    struct ListOperations: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "List operations.")
        @OptionGroup var connection: ConnectionOptions
        @Option(name: [.customShort("f"), .long], help: "Output format: table, csv or json.") var format: OutputFormat = .table

        func run() async throws {
            let operations = try await connection.client.operations()
            try Output.listing(format, headers: Views.operationColumns, rows: Views.operationRows(operations), json: operations)
        }
    }

    struct ShowOperation: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "show", abstract: "Show one operation.")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Operation id.") var id: String

        func run() async throws {
            Output.stdout(Views.operationShow(try await connection.client.operation(id)))
        }
    }
}
