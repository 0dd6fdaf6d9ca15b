import CRuntime
import Glibc

/// A host pseudo-terminal for an interactive exec: pass `slave` as `ExecStdio.terminal`, close
/// it after `exec` returns, and talk to the command through `master`.
public struct PseudoTerminal: Sendable {
    public let master: Int32
    public let slave: Int32

    public static func open(rows: UInt16 = 24, columns: UInt16 = 80) throws(RuntimeError) -> PseudoTerminal {
        var m: Int32 = -1, s: Int32 = -1
        if cr_open_pty(&m, &s, rows, columns) != 0 { throw .system("open pseudo-terminal", on: "/dev/ptmx", errno) }
        return PseudoTerminal(master: m, slave: s)
    }

    /// Resizes the terminal (the command gets SIGWINCH).
    public static func resize(master: Int32, rows: UInt16, columns: UInt16) throws(RuntimeError) {
        if cr_set_window_size(master, rows, columns) != 0 { throw .system("TIOCSWINSZ", on: "terminal", errno) }
    }
}
