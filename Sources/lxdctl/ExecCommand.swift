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

struct Exec: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a command in an instance; exits with the command's exit code.",
        usage: "lxdctl exec NAME [-t|-T] [--env K=V]... [--cwd DIR] -- CMD..."
    )
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "Instance name.") var name: String
    @Flag(name: .customShort("t"), help: "Force an interactive terminal.") var forceInteractive = false
    @Flag(name: .customShort("T"), help: "Force non-interactive mode.") var forceNonInteractive = false
    @Option(name: .long, help: "Environment variable K=V (repeatable).") var env: [String] = []
    @Option(name: .long, help: "Working directory inside the instance.") var cwd: String?
    @Argument(parsing: .postTerminator, help: "Command and arguments (after --).") var command: [String] = []

    func validate() throws {
        if forceInteractive && forceNonInteractive { throw ValidationError("-t and -T are mutually exclusive") }
        if command.isEmpty { throw ValidationError("missing command; usage: lxdctl exec NAME -- CMD...") }
    }

    func run() async throws {
        let interactive = forceInteractive || (!forceNonInteractive && Terminal.isTerminal(0) && Terminal.isTerminal(1))
        var environment = try ArgumentSyntax.keyValues(env)
        if interactive, environment["TERM"] == nil {
            environment["TERM"] = ProcessInfo.processInfo.environment["TERM"] ?? "xterm"
        }
        let size = Terminal.size(1) ?? Terminal.size(0) ?? (width: 80, height: 24)
        let options = ExecOptions(command: command, environment: environment, cwd: cwd, interactive: interactive,
                                  width: interactive ? size.width : nil, height: interactive ? size.height : nil)

        let (control, controlSink) = AsyncStream.makeStream(of: ExecControl.self)
        let forwarder: SignalForwarder
        var rawMode: Terminal.RawMode?
        if interactive {
            // ^C arrives as a keystroke in raw mode; SIGTERM/SIGHUP aimed at lxdctl are passed on
            // too, so lxdctl never dies leaving the terminal raw.
            forwarder = SignalForwarder([SIGWINCH, SIGTERM, SIGHUP]) { signal in
                if signal != SIGWINCH {
                    controlSink.yield(.signal(signal))
                } else if let size = Terminal.size(1) ?? Terminal.size(0) {
                    controlSink.yield(.resize(width: size.width, height: size.height))
                }
            }
            if Terminal.isTerminal(0) { rawMode = try Terminal.RawMode(0) }
        } else {
            forwarder = SignalForwarder([SIGINT, SIGTERM, SIGHUP]) { controlSink.yield(.signal($0)) }
        }
        let io = ExecIO(
            stdin: Terminal.input(0),
            stdout: { Output.write(1, $0) },
            stderr: { Output.write(2, $0) },
            control: control
        )
        let code: Int32
        do {
            let (client, name) = try connection.target(self.name)
            code = try await client.exec(name, options, io: io)
        } catch {
            rawMode?.restore()
            throw error
        }
        rawMode?.restore()
        controlSink.finish()
        withExtendedLifetime(forwarder) {}
        throw ExitCode(code)
    }
}
