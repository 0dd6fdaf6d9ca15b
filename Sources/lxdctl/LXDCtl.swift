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
import Identity
import LXDClient

@main
struct LXDCtl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lxdctl",
        abstract: "Manage system containers through an lxd-swift agent.",
        subcommands: [
            ImageCommand.self, Launch.self, Init.self, Start.self, Stop.self, Restart.self, Delete.self, Rename.self, Move.self, Copy.self,
            List.self, Info.self, ConfigCommand.self, RemoteCommand.self, ClusterCommand.self, Exec.self, Console.self, FileCommand.self, OperationCommand.self,
            Monitor.self, PlacementGroupCommand.self,
        ]
    )

    /// Runtime failures print `Error: <message>` and exit 1 (scripts rely on it); usage errors
    /// and explicit exit codes (exec) keep ArgumentParser's handling.
    static func main() async {
        // Writing to a closed pipe (`lxdctl list | head`) must be an EPIPE, not a silent death.
        signal(SIGPIPE, SIG_IGN)
        do {
            var arguments = Array(CommandLine.arguments.dropFirst())
            ConnectionOptions.rootSocket = ConnectionOptions.takeLeadingSocket(&arguments)
            var command = try parseAsRoot(arguments)
            if var command = command as? AsyncParsableCommand {
                try await command.run()
            } else {
                try command.run()
            }
        } catch let error as APIError {
            fail(error.message)
        } catch let error as TransportError {
            fail(error.description)
        } catch let error as ArgumentSyntax.Invalid {
            fail(error.description)
        } catch let error as CLIError {
            fail(error.description)
        } catch let error as IdentityError {
            fail(error.description)
        } catch {
            exit(withError: error)
        }
    }

    static func fail(_ message: String) -> Never {
        Output.stderr("Error: \(message)\n")
        Glibc.exit(1)
    }
}

/// A failure detected by lxdctl itself (bad local file, unsupported flag combination...).
struct CLIError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// `--socket` on every command; the default follows `$LXD_DIR`.
struct ConnectionOptions: ParsableArguments {
    @Option(name: .long, help: "Agent unix socket (default: $LXD_DIR/unix.socket, LXD_DIR=/var/lib/lxd-swift).")
    var socket: String?

    /// The client of the current remote (`lxdctl remote switch`), the unix socket by default.
    var client: LXDClient {
        if socket != nil || Self.rootSocket != nil { return LXDClient.unixSocket(socket ?? Self.rootSocket!) }
        do {
            return try client(remote: ClientConfig.load(from: ClientConfig.directory()).defaultRemote)
        } catch {
            LXDCtl.fail("\(error)")
        }
    }

    /// `lxdctl --socket PATH <command> ...` (before the command name) is accepted too.
    /// nonisolated(unsafe): written once in main() before any command runs, only read after.
    nonisolated(unsafe) static var rootSocket: String?

    /// Removes a leading `--socket PATH` / `--socket=PATH` from `arguments` and returns PATH.
    static func takeLeadingSocket(_ arguments: inout [String]) -> String? {
        guard let first = arguments.first else { return nil }
        if first == "--socket", arguments.count >= 2 {
            defer { arguments.removeFirst(2) }
            return arguments[1]
        }
        if first.hasPrefix("--socket=") {
            defer { arguments.removeFirst() }
            return String(first.dropFirst("--socket=".count))
        }
        return nil
    }
}
