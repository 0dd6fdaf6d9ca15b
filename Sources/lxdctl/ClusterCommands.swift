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
        subcommands: [ListMembers.self, ShowMember.self, AddMember.self, JoinCluster.self, RemoveMember.self, ClusterInfoCommand.self]
    )

    static let columns = ["NAME", "URL", "DATABASE", "STATUS", "FAILURE DOMAIN", "MESSAGE"]

    static func row(_ m: ClusterMemberRecord) -> [String] {
        [m.serverName, m.url, m.database.uppercased(), m.status, m.failureDomain, m.message]
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
                fingerprint: \(m.fingerprint ?? "")

                """)
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
            let deadline = ContinuousClock.now + .seconds(timeout)
            var last = ""
            while ContinuousClock.now < deadline {
                do {
                    // Each poll on a fresh connection, bounded: one left to the old listener never answers.
                    guard let answer = await Self.bounded(.seconds(2), { try await client.clusterMembers() }) else {
                        throw CLIError("no answer within 2 s")
                    }
                    let members = try answer.get()
                    if members.count > 1 {
                        Output.stdout("Joined a cluster of \(members.count) members\n")
                        return
                    }
                } catch {
                    last = "\(error)"
                }
                await client.transport.shutdown()
                try await Task.sleep(for: .milliseconds(100))
            }
            throw CLIError("the agent accepted the join but did not come back as a cluster member within \(timeout) s (\(last)): check its log")
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

        func run() async throws {
            try await connection.client.removeClusterMember(name)
        }
    }
}
