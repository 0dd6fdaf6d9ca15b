import APITypes
import ArgumentParser
#if canImport(FoundationEssentials)
import FoundationEssentials  // not Foundation: it adds ~10 ms of ICU loading to every lxdctl run
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import LXDClient

struct ClusterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster", abstract: "Manage cluster members.",
        subcommands: [ListMembers.self, ShowMember.self, EnableCluster.self, AddMember.self, JoinCluster.self, SetMember.self, UnsetMember.self,
                      RemoveMember.self, EvacuateMember.self, RestoreMember.self, ClusterInfoCommand.self]
    )

    static let columns = ["NAME", "URL", "DATABASE", "STATUS", "FAILURE DOMAIN", "MESSAGE"]

    static func row(_ m: ClusterMemberInfo) -> [String] {
        [m.serverName, m.url, m.database.uppercased(), m.status.name, m.failureDomain, m.message]
    }

    /// A PUT body that keeps `m` as it is, every field sent (PUT replaces the whole member).
    static func replacement(for m: ClusterMemberInfo) -> ClusterMemberPut {
        ClusterMemberPut(description: "", config: m.config, failureDomain: m.failureDomain, roles: [], groups: [])
    }

    struct ListMembers: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "List cluster members.")
        @OptionGroup var connection: ConnectionOptions
        @Option(name: [.customShort("f"), .long], help: "Output format: table, csv or json.") var format: OutputFormat = .table

        func run() async throws {
            let members = try await connection.client.clusterMembers()
            try Output.listing(format, headers: ClusterCommand.columns, rows: members.map(ClusterCommand.row), json: members)
        }
    }

    struct ShowMember: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "show", abstract: "Show one cluster member.")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Member name.") var name: String

        func run() async throws {
            let m = try await connection.client.clusterMember(name)
            Output.stdout("""
                server_name: \(m.serverName)
                url: \(m.url)
                database: \(m.database)
                status: \(m.status)
                failure_domain: \(m.failureDomain)
                message: \(m.message)
                fingerprint: \(m.fingerprint)
                roles: [\(m.roles.joined(separator: ", "))]
                config:\(m.config.isEmpty ? " {}" : "")

                """)
            for (k, v) in m.config.sorted(by: { $0.key < $1.key }) { Output.stdout("  \(k): \(v)\n") }
            if let migration = m.migration {
                Output.stdout((["migration:"] + Views.migrationLines(migration)).joined(separator: "\n") + "\n")
            }
        }
    }

    struct EnableCluster: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "enable", abstract: "Enable clustering on this (not yet clustered) agent, naming it NAME.",
            discussion: "The agent must serve HTTPS (lxdd --https-address HOST:PORT): that address is the cluster address.")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "This member's name in the cluster.") var name: String
        @Option(help: "Seconds to wait for the agent when a rename restarts it.") var timeout: Int = 30

        func run() async throws {
            let client = connection.client
            // A rename restarts the agent: as with join, the answer may be lost with the old listener.
            if let answer = await JoinCluster.bounded(.seconds(10), { try await client.enableCluster(serverName: name) }), case .failure(let e) = answer {
                throw e
            }
            await client.transport.shutdown()
            try await JoinCluster.poll(client, timeout: timeout, what: "clustering was not seen enabled as \(name)") {
                let info = try await client.clusterInfo()
                guard info.enabled && info.serverName == name else { return "server_name \(info.serverName), enabled \(info.enabled)" }
                Output.stdout("Clustering enabled on member \(name)\n")
                return nil
            }
        }
    }

    struct SetMember: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set", abstract: "Set a member's failure_domain or config keys (KEY=VALUE ...).",
            discussion: "failure_domain=NAME places the member in a failure domain (the database roles prefer distinct ones); other keys are member config (scheduler.*, user.*).")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Member name.") var name: String
        @Argument(help: "KEY=VALUE pairs.") var pairs: [String]

        func run() async throws {
            guard !pairs.isEmpty else { throw CLIError("nothing to set: give KEY=VALUE pairs, e.g. failure_domain=rack1") }
            let client = connection.client
            let m = try await client.clusterMember(name)
            var update = ClusterCommand.replacement(for: m)
            for pair in pairs {
                guard let eq = pair.firstIndex(of: "="), eq != pair.startIndex else { throw CLIError("\"\(pair)\" is not KEY=VALUE") }
                let key = String(pair[..<eq]), value = String(pair[pair.index(after: eq)...])
                if key == "failure_domain" { update.failureDomain = value } else { update.config?[key] = value }
            }
            try await client.updateClusterMember(name, update)
        }
    }

    struct UnsetMember: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "unset", abstract: "Remove member config keys (failure_domain goes back to \"default\").")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Member name.") var name: String
        @Argument(help: "Keys.") var keys: [String]

        func run() async throws {
            let client = connection.client
            let m = try await client.clusterMember(name)
            var update = ClusterCommand.replacement(for: m)
            for key in keys {
                if key == "failure_domain" { update.failureDomain = "default"; continue }
                guard update.config?.removeValue(forKey: key) != nil else { throw CLIError("member \(name) has no config key \(key)") }
            }
            try await client.updateClusterMember(name, update)
        }
    }

    struct AddMember: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "add", abstract: "Print a single-use join token for a new member (valid 3 h).")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Name the new member will join with.") var name: String

        func run() async throws {
            let token = try await connection.client.createJoinToken(name: name)
            Output.stdout("Member \(name) join token:\n\(token)\n")
        }
    }

    struct JoinCluster: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "join", abstract: "Make this (empty) agent join the cluster a token from `cluster add` names.")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Join token.") var token: String
        @Option(help: "Seconds to wait for the agent to come back as a member.") var timeout: Int = 60

        func run() async throws {
            let client = connection.client
            // The agent restarts its listeners on the cluster's database right after accepting, so
            // the answer to this request can be lost with the old listener: a refusal comes back at
            // once, while a silence is settled by the membership poll below.
            if let refused = await Self.bounded(.seconds(10), { try await client.joinCluster(token: token) }), case .failure(let e) = refused {
                throw e
            }
            await client.transport.shutdown()
            try await Self.poll(client, timeout: timeout, what: "the agent accepted the join but did not come back as a cluster member") {
                let members = try await client.clusterMembers()
                guard members.count > 1 else { return "\(members.count) member" }
                Output.stdout("Joined a cluster of \(members.count) members\n")
                return nil
            }
        }

        /// Asks `check` every 100 ms, each time on a fresh connection and bounded to 2 s (a connection
        /// left to the agent's old listener never answers), until it returns nil (done); its other
        /// answers and errors say how far it got when `timeout` seconds pass.
        static func poll(_ client: LXDClient, timeout: Int, what: String, _ check: @escaping @Sendable () async throws -> String?) async throws {
            let deadline = ContinuousClock.now + .seconds(timeout)
            var last = ""
            while ContinuousClock.now < deadline {
                do {
                    guard let answer = await bounded(.seconds(2), check) else { throw CLIError("no answer within 2 s") }
                    guard let progress = try answer.get() else { return }
                    last = progress
                } catch {
                    last = "\(error)"
                }
                await client.transport.shutdown()
                try await Task.sleep(for: .milliseconds(100))
            }
            throw CLIError("\(what) within \(timeout) s (\(last)): check the agent's log")
        }

        /// The result of `work`, or nil when it has not finished within `limit` (then it is left
        /// behind: a request on a connection the agent dropped cannot be cancelled).
        static func bounded<T: Sendable>(_ limit: Duration, _ work: @escaping @Sendable () async throws -> T) async -> Result<T, any Error>? {
            let (results, sink) = AsyncStream<Result<T, any Error>?>.makeStream()
            Task {
                do { sink.yield(.success(try await work())) } catch { sink.yield(.failure(error)) }
            }
            Task {
                try? await Task.sleep(for: limit)
                sink.yield(nil)
            }
            for await first in results { return first }
            return nil
        }
    }

    struct RemoveMember: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "remove", abstract: "Remove a member from the cluster.")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Member name.") var name: String
        @Flag(help: "Remove an OFFLINE member even if it owns instances: their records are deleted from the database.") var force = false
        @Flag(help: "With --force: do not ask for confirmation.") var yes = false

        func run() async throws {
            if force && !yes {
                guard Terminal.isTerminal(0) else {
                    throw CLIError("--force deletes \(name)'s instances from the database: confirm with --yes (no terminal to ask on)")
                }
                Output.stdout("Forcefully removing \(name) deletes its instances from the database; its containers, if it ever comes back, are not managed any more.\nAre you sure? (yes/no): ")
                guard readLine()?.lowercased() == "yes" else { throw CLIError("aborted: \(name) was not removed") }
            }
            try await connection.client.removeClusterMember(name, force: force)
        }
    }

    struct EvacuateMember: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "evacuate", abstract: "Move every instance off a member and mark it EVACUATED (nothing new lands there).",
            discussion: """
                Each instance follows its cluster.evacuate (auto: live where possible, else stopped, moved and \
                started; stopped when no member can take it. live-migrate, migrate, stop), unless --action \
                says otherwise for all. Targets are chosen by the scheduler (capacity, placement groups). \
                `lxdctl cluster restore MEMBER` brings them back.
                """)
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Member name.") var name: String
        @Option(help: "For every instance: stop, migrate or live-migrate.") var action: String?
        @Flag(help: "Do not ask for confirmation.") var force = false

        func run() async throws {
            if let action, !["stop", "migrate", "live-migrate"].contains(action) {
                throw CLIError("--action must be stop, migrate or live-migrate, not \"\(action)\"")
            }
            try ClusterCommand.confirm(force: force, "Evacuating \(name) moves or stops all of its instances.", refused: "\(name) was not evacuated")
            try await ClusterCommand.follow(connection.client, member: name, ClusterMemberStatePost(action: "evacuate", mode: action),
                                            doing: "Evacuating", done: "Evacuated")
        }
    }

    struct RestoreMember: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "restore", abstract: "Bring an evacuated member back: ONLINE, its instances moved back and restarted.")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Member name.") var name: String
        @Flag(help: "Do not ask for confirmation.") var force = false

        func run() async throws {
            try ClusterCommand.confirm(force: force, "Restoring \(name) moves its instances back to it.", refused: "\(name) was not restored")
            try await ClusterCommand.follow(connection.client, member: name, ClusterMemberStatePost(action: "restore"),
                                            doing: "Restoring", done: "Restored")
        }
    }

    /// As LXD does: asks on a terminal unless --force; without a terminal, --force is required.
    static func confirm(force: Bool, _ what: String, refused: String) throws {
        guard !force else { return }
        guard Terminal.isTerminal(0) else { throw CLIError("\(what) Confirm with --force (no terminal to ask on)") }
        Output.stdout("\(what)\nAre you sure? (yes/no): ")
        guard readLine()?.lowercased() == "yes" else { throw CLIError("aborted: \(refused)") }
    }

    /// Starts the state change, shows each instance's outcome as the operation reports it, and
    /// fails when the operation did.
    static func follow(_ client: LXDClient, member: String, _ post: ClusterMemberStatePost, doing: String, done: String) async throws {
        let op = try await client.changeClusterMemberState(member, post)
        var shown = 0
        var lastProgress = ""
        let interactive = Terminal.isTerminal(2)
        while true {
            let current = try await client.operation(op.id)
            let outcomes = Self.outcomes(current)
            for outcome in outcomes.dropFirst(shown) { Output.stdout(Self.line(outcome) + "\n") }
            shown = max(shown, outcomes.count)
            if let progress = current.metadata?["progress"]?.stringValue, progress != lastProgress, interactive {
                Output.stderr("\r\u{1B}[K\(doing) \(member): \(progress)")
                lastProgress = progress
            }
            if let status = current.knownStatus, status.isFinal {
                if interactive && !lastProgress.isEmpty { Output.stderr("\r\u{1B}[K") }
                guard status == .success else {
                    throw APIError(400, current.err.isEmpty ? "operation \(op.id) failed" : current.err)
                }
                let failed = outcomes.filter { $0.outcome == "failed" }.count
                Output.stdout("\(done) \(member): \(outcomes.count) instance(s)\(failed > 0 ? ", \(failed) failed" : "")\n")
                if failed > 0 { throw CLIError("\(failed) instance(s) could not be handled: see above") }
                return
            }
            try await Task.sleep(for: .milliseconds(250))
        }
    }

    static func outcomes(_ op: APITypes.Operation) -> [EvacuationOutcome] {
        guard case .array(let items)? = op.metadata?["instances"] else { return [] }
        return items.map { item in
            EvacuationOutcome(project: item["project"]?.stringValue ?? "default", name: item["name"]?.stringValue ?? "?",
                              outcome: item["outcome"]?.stringValue ?? "?", target: item["target"]?.stringValue ?? "",
                              reason: item["reason"]?.stringValue ?? "")
        }
    }

    /// "web1: moved-live to m2", "db: stopped (cluster.evacuate=stop)".
    static func line(_ o: EvacuationOutcome) -> String {
        let name = o.project == "default" ? o.name : "\(o.project)/\(o.name)"
        var text = "\(name): \(o.outcome)"
        if !o.target.isEmpty && o.outcome != "failed" { text += " to \(o.target)" }
        if !o.reason.isEmpty { text += " (\(o.reason))" }
        return text
    }
}
