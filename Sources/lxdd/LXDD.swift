import Agent
import ArgumentParser
import Cluster
import Foundation
import Logging

@main
struct LXDD: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lxdd", abstract: "The lxd-swift agent: one per host.",
        subcommands: [Daemon.self, Cluster.self], defaultSubcommand: Daemon.self)

    static func bootstrapLogging(debug: Bool) {
        let level: Logger.Level = debug ? .debug : .info
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
    }

    static func dataDir(_ option: String?) -> String {
        option ?? ProcessInfo.processInfo.environment["LXD_DIR"] ?? "/var/lib/lxd-swift"
    }
}

struct Daemon: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "daemon", abstract: "Run the agent (the default).")

    @Option(name: .long, help: "Data directory (default: $LXD_DIR or /var/lib/lxd-swift).")
    var dataDir: String?

    @Option(name: .long, help: "This member's name (default: the host name). Used on first start only.")
    var name: String?

    @Option(name: .long, help: "This member's cluster address host:port (default: the HTTPS address, else 127.0.0.1:8443). Used on first start only.")
    var address: String?

    @Option(name: .long, help: "Serve the API over HTTPS with mutual TLS on host:port (e.g. 127.0.0.2:8443).")
    var httpsAddress: String?

    @Option(name: .long, help: "YAML preseed applied on the first start: bootstrap or join a cluster (docs/clustering.md).")
    var preseed: String?

    @Option(name: .long, help: ArgumentHelp(
        "Host uid/gid range for containers, START:COUNT (default: root's range in /etc/subuid, else 1000000:1000000000).",
        discussion: "Each isolated instance takes 65536 ids. Every member of a cluster must use the same range."))
    var idmapRange: String?

    @Flag(name: .long, help: "Verbose logs.")
    var debug = false

    func run() async throws {
        // A bad preseed is refused before anything is created.
        let seed = try preseed.map { try Preseed.load(path: $0) }
        LXDD.bootstrapLogging(debug: debug)
        // lxd-start is installed next to lxdd.
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let helper = URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("lxd-start").path
        var config = AgentConfiguration(dataDir: LXDD.dataDir(dataDir), memberName: name, address: address ?? httpsAddress ?? "127.0.0.1:8443",
                                        helperPath: helper, httpsAddress: httpsAddress)
        if let seed { try config.apply(seed, addressFlag: address) }
        if let idmapRange {
            do {
                try config.setIDMapRange(idmapRange)
            } catch {
                throw ValidationError("--idmap-range: \(error)")
            }
        }
        try await Agent.run(config, logger: Logger(label: "lxdd"))
    }
}

struct Cluster: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster", abstract: "Offline cluster maintenance (the agent stopped).",
        subcommands: [RecoverFromQuorumLoss.self, Layout.self])

    struct RecoverFromQuorumLoss: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "recover-from-quorum-loss",
            abstract: "Make this stopped member the only database voter of a cluster that lost its majority.",
            discussion: "Run on the surviving member with the newest database, with its lxdd stopped, then start lxdd. See docs/clustering.md.")

        @Option(name: .long, help: "Data directory (default: $LXD_DIR or /var/lib/lxd-swift).")
        var dataDir: String?

        @Flag(name: .long, help: "Do not ask for confirmation.")
        var yes = false

        func run() async throws {
            LXDD.bootstrapLogging(debug: false)
            if !yes {
                guard isatty(0) == 1 else {
                    throw ValidationError("this rewrites the cluster database's membership: confirm with --yes (no terminal to ask on)")
                }
                print("Only this member will remain a database voter; lost members must then be removed with --force. Continue? (yes/no): ", terminator: "")
                guard readLine()?.lowercased() == "yes" else { throw ValidationError("aborted: nothing was changed") }
            }
            print(try QuorumRecovery.run(dataDir: LXDD.dataDir(dataDir), logger: Logger(label: "lxdd")))
        }
    }

    /// For scripts/run-local: one line per member, tab-separated: name, https address, data dir, failure domain.
    struct Layout: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "layout", abstract: "Check a cluster layout file (cluster-configs/) and print its members, one per line.")

        @Argument(help: "Layout file, e.g. cluster-configs/three-members.yaml.")
        var file: String

        func run() async throws {
            let layout = try ClusterLayout.load(path: file)
            for m in layout.members {
                print([m.serverName, m.httpsAddress, m.dataDir, m.failureDomain ?? ""].joined(separator: "\t"))
            }
        }
    }
}
