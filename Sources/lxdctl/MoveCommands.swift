import APITypes
import ArgumentParser
import LXDClient
import Synchronization

struct Rename: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Rename a stopped instance.")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "Instance name.") var name: String
    @Argument(help: "New name.") var newName: String

    func run() async throws {
        let (client, name) = try connection.target(self.name)
        try await client.renameInstance(name, to: newName)
    }
}

struct Move: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Move an instance to another cluster member (or rename it: move OLD NEW).",
        usage: "lxdctl move NAME --target MEMBER [--stateless | --mode MODE]\n  lxdctl move OLD NEW",
        discussion: """
            A running instance moves live (its processes, memory and PIDs carry over) unless --stateless is given:
            then it is stopped, copied and started on the target. A stopped instance is copied. --mode names how a
            live move carries memory (stop-and-copy, post-copy, pre-copy); without it the members choose (never
            post-copy). A mode either member cannot do is refused before anything is frozen, with the reason;
            `lxdctl cluster show MEMBER` lists the modes each member supports. While the move runs
            its phase, bytes sent and rate are shown (one updating line on a terminal, a line per change otherwise);
            at the end, how long the instance did not run and how long the move took.
            """)
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "Instance name.") var name: String
    @Argument(help: "New name (a rename, without --target).") var newName: String?
    @Option(help: "Cluster member to move the instance to.") var target: String?
    @Flag(help: "Stop a running instance and start it on the target instead of moving it live.") var stateless = false
    @Option(help: "Memory mode of a live move: stop-and-copy, post-copy or pre-copy (default: the members choose).") var mode: String?

    func run() async throws {
        let (client, name) = try connection.target(self.name)
        guard let target, !target.isEmpty else {
            guard let newName else { throw CLIError("name the member to move \(name) to: lxdctl move \(name) --target MEMBER") }
            if stateless { throw CLIError("--stateless applies to a move to another member (--target)") }
            if mode != nil { throw CLIError("--mode applies to a live move to another member (--target)") }
            try await client.renameInstance(name, to: newName)
            return
        }
        if let newName, newName != name {
            throw CLIError("a move keeps the name: lxdctl move \(name) --target \(target), then lxdctl rename \(name) \(newName)")
        }
        if stateless, mode != nil { throw CLIError("--mode applies to a live move: leave out --stateless, or --mode") }
        let current = try await client.instance(name)
        // As lxc: live unless --stateless; a stopped instance is copied, so it is not asked for live.
        let live = !stateless && current.knownStatus != .stopped
        let display = ProgressLine(terminal: Terminal.isTerminal(1))
        let done: APITypes.Operation
        do {
            done = try await client.moveInstance(name, to: target, live: live, mode: mode) { op in display.show(MoveProgress.line(op.metadata)) }
        } catch {
            display.end()
            throw error
        }
        display.end()
        let figures = MoveProgress.figures(done.metadata).map { ": " + $0 } ?? ""
        Output.stdout("Moved \(name) from \(current.location.isEmpty ? "its member" : current.location) to \(target)\(figures)\n")
    }
}

struct Copy: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Copy an instance to a new one, on the same member or another (--target).",
        discussion: """
            The copy is a new instance, created stopped, with its own uid/gid block and the source's files and
            config (volatile keys excepted). A running instance is frozen while the last changes of its files
            are copied, then runs on; with --stateless a running instance is refused (stop it first).
            Progress is shown as for move.
            """)
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "Instance to copy.") var name: String
    @Argument(help: "Name of the copy.") var newName: String
    @Option(help: "Cluster member to create the copy on (default: the source's member).") var target: String?
    @Flag(help: "Do not freeze a running instance (such a copy is refused: stop the instance first).") var stateless = false

    func run() async throws {
        let (client, name) = try connection.target(self.name)
        let current = try await client.instance(name)
        let live = !stateless && current.knownStatus == .running
        let display = ProgressLine(terminal: Terminal.isTerminal(1))
        let done: APITypes.Operation
        do {
            done = try await client.copyInstance(name, to: newName, target: target.flatMap { $0.isEmpty ? nil : $0 }, live: live) { op in
                display.show(MoveProgress.line(op.metadata))
            }
        } catch {
            display.end()
            throw error
        }
        display.end()
        let figures = MoveProgress.figures(done.metadata).map { ": " + $0 } ?? ""
        let placed = done.metadata?["location"]?.stringValue ?? target
        Output.stdout("Copied \(name) to \(newName)\(placed.map { " on \($0)" } ?? "")\(figures)\n")
    }
}

/// A progress line: rewritten in place on a terminal, else printed once per change (logs and
/// pipes get whole lines, no carriage returns).
final class ProgressLine: Sendable {
    private let terminal: Bool
    private let shown = Mutex<String?>(nil)

    init(terminal: Bool) { self.terminal = terminal }

    func show(_ line: String?) {
        guard let line else { return }
        let changed = shown.withLock { last in
            defer { last = line }
            return last != line
        }
        guard changed else { return }
        Output.stdout(terminal ? "\r\u{1B}[2K" + line : line + "\n")
    }

    /// Clears the in-place line, so what follows starts at the left margin.
    func end() {
        if terminal, shown.withLock({ $0 }) != nil { Output.stdout("\r\u{1B}[2K") }
    }
}
