import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import LXDClient

struct Console: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Attach to an instance's console (detach with ctrl+a q), or show its log.",
        discussion: "Ctrl+a ctrl+a sends one ctrl+a. The console stays attached until you detach, the container stops or another client attaches.")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "Instance name.") var name: String
    @Flag(name: .customLong("show-log"), help: "Print the console log.") var showLog = false

    func run() async throws {
        if showLog {
            Output.write(1, try await connection.client.consoleLog(name))
            return
        }
        let (control, controlSink) = AsyncStream.makeStream(of: ExecControl.self)
        let (input, inputSink) = AsyncStream.makeStream(of: [UInt8].self)
        // SIGTERM and SIGHUP detach, so lxdctl never leaves the terminal raw.
        let forwarder = SignalForwarder([SIGWINCH, SIGTERM, SIGHUP]) { signal in
            if signal != SIGWINCH {
                inputSink.finish()
            } else if let size = Terminal.size(1) ?? Terminal.size(0) {
                controlSink.yield(.resize(width: size.width, height: size.height))
            }
        }
        let keys = Terminal.input(0)
        let reader = Task {
            var escape = ConsoleEscape()
            for await chunk in keys {
                let (send, detach) = escape.feed(chunk)
                if !send.isEmpty { inputSink.yield(send) }
                if detach { break }
            }
            // Detached, or stdin ended (a pipe): either way the attachment ends.
            inputSink.finish()
        }
        let size = Terminal.size(1) ?? Terminal.size(0)
        let rawMode = try Terminal.isTerminal(0) ? Terminal.RawMode(0) : nil
        Output.stderr("To detach from the console, press: <ctrl>+a q\r\n")
        let end: ConsoleEnd
        do {
            let (client, name) = try connection.target(self.name)
            end = try await client.console(name, width: size?.width, height: size?.height,
                                           io: ConsoleIO(input: input, output: { Output.write(1, $0) }, control: control))
        } catch {
            rawMode?.restore()
            throw error
        }
        rawMode?.restore()
        reader.cancel()
        controlSink.finish()
        withExtendedLifetime(forwarder) {}
        if end == .closed {
            Output.stderr("\r\nThe console of \(self.name) closed: the container stopped or another client attached.\r\n")
        }
    }
}
