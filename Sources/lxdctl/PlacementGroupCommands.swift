import APITypes
import ArgumentParser
import LXDClient

/// `lxdctl placement-group create|list|delete`: rules the scheduler applies to the instances that
/// name a group in their `placement.group` config key.
struct PlacementGroupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "placement-group", abstract: "Manage placement groups (instances together or apart).",
        subcommands: [Create.self, ListGroups.self, DeleteGroup.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a placement group; instances join it with -c placement.group=NAME.",
            discussion: """
                policy=affinity (on the same member or failure domain) or anti-affinity (on different ones);
                rigor=strict (default: refuse a launch that would break the rule) or permissive (follow it where possible);
                scope=member (default) or failure-domain.
                """)
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Group name.") var name: String
        @Argument(help: "KEY=VALUE settings: policy (required), rigor, scope.") var settings: [String] = []
        @Option(help: "Description.") var description: String = ""

        func run() async throws {
            var config: [String: String] = [:]
            for setting in settings {
                guard let eq = setting.firstIndex(of: "="), eq != setting.startIndex else {
                    throw CLIError("\"\(setting)\" is not KEY=VALUE (e.g. policy=anti-affinity)")
                }
                config[String(setting[..<eq])] = String(setting[setting.index(after: eq)...])
            }
            try await connection.client.createPlacementGroup(PlacementGroup(name: name, description: description, config: config))
            Output.stdout("Placement group \(name) created\n")
        }
    }

    struct ListGroups: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "List placement groups.")
        @OptionGroup var connection: ConnectionOptions
        @Option(name: [.customShort("f"), .long], help: "Output format: table, csv or json.") var format: OutputFormat = .table

        func run() async throws {
            let groups = try await connection.client.placementGroups()
            let rows = groups.map { g in
                [g.name, g.config["policy"] ?? "", g.config["rigor"] ?? "", g.config["scope"] ?? "", "\(g.usedBy.count)", g.description]
            }
            try Output.listing(format, headers: ["NAME", "POLICY", "RIGOR", "SCOPE", "INSTANCES", "DESCRIPTION"], rows: rows, json: groups)
        }
    }

    struct DeleteGroup: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "delete", abstract: "Delete an unused placement group.")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Group name.") var name: String

        func run() async throws {
            try await connection.client.deletePlacementGroup(name)
        }
    }
}
