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

    /// The slave's path in the host's /dev/pts.
    public func slavePath() throws(RuntimeError) -> String {
        var link = [UInt8](repeating: 0, count: 256)
        let n = link.withUnsafeMutableBytes { readlink("/proc/self/fd/\(slave)", $0.baseAddress!.assumingMemoryBound(to: CChar.self), 255) }
        if n <= 0 { throw .system("readlink", on: "/proc/self/fd/\(slave)", errno) }
        return String(decoding: link[0..<n], as: UTF8.self)
    }

    public func close() {
        Glibc.close(master)
        Glibc.close(slave)
    }

    /// Resizes the terminal (the command gets SIGWINCH).
    public static func resize(master: Int32, rows: UInt16, columns: UInt16) throws(RuntimeError) {
        if cr_set_window_size(master, rows, columns) != 0 { throw .system("TIOCSWINSZ", on: "terminal", errno) }
    }
}
