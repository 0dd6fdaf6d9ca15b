import APITypes
import ArgumentParser
#if canImport(FoundationEssentials)
import FoundationEssentials  // not Foundation: it adds ~10 ms of ICU loading to every lxdctl run
#else
import Foundation
#endif
import LXDClient

/// `lxdctl monitor`: prints the cluster's events as they happen, until interrupted.
struct Monitor: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Watch the events of every cluster member (lifecycle, operations) as they happen.",
        usage: "lxdctl monitor [--type lifecycle,operation] [--format pretty|json]"
    )

    enum Format: String, ExpressibleByArgument, CaseIterable {
        case pretty, json
    }

    @OptionGroup var connection: ConnectionOptions
    @Option(name: .long, help: "Event types, comma-separated: operation, lifecycle, logging (default: all).") var type: String?
    @Option(name: [.customShort("f"), .long], help: "Output format: pretty (one line per event) or json (one object per line).") var format: Format = .pretty

    func run() async throws {
        // Checked here too, so a typo fails before connecting.
        let types = try type.map { try EventType.parseList($0) }
        let stream = try await connection.client.watchEvents(types: types)
        for try await event in stream {
            switch format {
            case .pretty: Output.stdout(EventText.line(event) + "\n")
            case .json: Output.stdout(try JSONText.encode(event))
            }
        }
        throw CLIError("the event stream ended (the agent stopped, or this watcher fell too far behind): run lxdctl monitor again")
    }
}
