import APITypes
import Foundation
import Synchronization
import Testing
@testable import LXDClient

/// `lxdctl exec` on a real pseudo-terminal: interactive by default, raw mode while running and
/// restored after, the terminal size sent at start and on SIGWINCH, keystrokes passed through.
@Suite(.enabled(if: CLI.available, "lxdctl is not built next to the test bundle (swift build --build-tests builds it)"), .timeLimit(.minutes(1)))
struct PtyCLITests {
    struct Pty {
        let master: Int32
        let slave: Int32
    }

    static func openPty(width: UInt16, height: UInt16) throws -> Pty {
        // posix_openpt/ptsname are hidden from Swift's Glibc module, so do what they do:
        // open /dev/ptmx, unlock (TIOCSPTLCK), ask the number (TIOCGPTN). Values are Linux's
        // asm-generic ioctl numbers (x86_64 and aarch64 alike).
        let TIOCSPTLCK: UInt = 0x4004_5431, TIOCGPTN: UInt = 0x8004_5430
        let master = open("/dev/ptmx", O_RDWR | O_NOCTTY)
        var unlock: Int32 = 0, number: UInt32 = 0
        guard master >= 0,
              withUnsafeMutablePointer(to: &unlock, { ioctl(master, TIOCSPTLCK, $0) }) == 0,
              withUnsafeMutablePointer(to: &number, { ioctl(master, TIOCGPTN, $0) }) == 0 else {
            throw CLI.SpawnError(description: "cannot allocate a pty: errno \(errno)")
        }
        let slave = open("/dev/pts/\(number)", O_RDWR | O_NOCTTY)
        guard slave >= 0 else { throw CLI.SpawnError(description: "cannot open pty slave: errno \(errno)") }
        try setSize(slave, width: width, height: height)
        return Pty(master: master, slave: slave)
    }

    static func setSize(_ fd: Int32, width: UInt16, height: UInt16) throws {
        var ws = winsize(ws_row: height, ws_col: width, ws_xpixel: 0, ws_ypixel: 0)
        guard withUnsafeMutablePointer(to: &ws, { ioctl(fd, UInt(TIOCSWINSZ), $0) }) == 0 else {
            throw CLI.SpawnError(description: "TIOCSWINSZ failed: errno \(errno)")
        }
    }

    static func localFlags(_ fd: Int32) -> tcflag_t {
        var t = termios()
        _ = tcgetattr(fd, &t)
        return t.c_lflag
    }

    /// Polls `condition` for up to 5 s without blocking a cooperative thread for long.
    static func eventually(_ condition: () -> Bool) async throws {
        for _ in 0..<500 where !condition() { try await Task.sleep(for: .milliseconds(10)) }
    }

    @Test func interactiveExecOnAPty() async throws {
        let sim = PtySimulation()
        let server = try await TestServer.exec(operation: "pty1", fds: ["0": "p0", "control": "pc"], waitForExit: sim.waitForExit, webSockets: sim.route)
        defer { server.stop() }

        let pty = try Self.openPty(width: 90, height: 30)
        defer { close(pty.master); close(pty.slave) }
        let cookedFlags = Self.localFlags(pty.slave)
        #expect(cookedFlags & tcflag_t(ICANON) != 0, "a fresh pty starts in canonical mode")

        let pid = try CLI.spawn([CLI.path, "exec", "c1", "--socket", server.path, "--", "sh"], stdio: pty.slave)
        let output = Mutex<[UInt8]>([])
        let master = pty.master
        Thread.detachNewThread {
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(master, $0.baseAddress, $0.count) }
                if n > 0 { output.withLock { $0 += buffer[..<n] } } else if n < 0 && errno == EINTR { continue } else { break }
            }
        }

        try await Self.eventually { sim.state.withLock { $0.ptyConnected } }
        #expect(Self.localFlags(pty.slave) & tcflag_t(ICANON | ECHO) == 0, "lxdctl must put the terminal in raw mode")
        let post = try #require(server.requests.first { $0.path == "/1.0/instances/c1/exec" })
        let body = try JSONDecoder().decode(InstanceExecPost.self, from: Data(post.body))
        #expect(body.interactive == true, "stdin and stdout are a terminal: interactive by default")
        #expect(body.width == 90 && body.height == 30)
        #expect(body.environment?["TERM"] != nil)

        try Self.setSize(pty.slave, width: 120, height: 50)
        kill(pid, SIGWINCH)
        try await Self.eventually { !sim.state.withLock { $0.control.isEmpty } }
        #expect(sim.state.withLock { $0.control } == [#"{"args":{"height":"50","width":"120"},"command":"window-resize"}"#])

        _ = "abc".withCString { write(pty.master, $0, 3) }
        try await Self.eventually { output.withLock { $0.count } >= 8 }
        _ = "q".withCString { write(pty.master, $0, 1) }

        let status = await CLI.wait(pid)
        #expect(status == 7)
        try await Self.eventually { output.withLock { $0.count } >= 14 }
        #expect(String(decoding: output.withLock { $0 }, as: UTF8.self) == "echo:abcecho:q")
        #expect(Self.localFlags(pty.slave) == cookedFlags, "terminal settings must be restored on exit")
    }
}

extension PtyCLITests {
    /// `-T` on a terminal: pipes semantics, and SIGTERM sent to lxdctl is forwarded to the
    /// command as a control message instead of killing lxdctl.
    @Test func nonInteractiveForwardsSignals() async throws {
        let sim = ExecSimulation(expectedControlMessages: 1)
        let server = try await TestServer.exec(operation: "exec1", fds: ["0": "s0", "1": "s1", "2": "s2", "control": "sc"], waitForExit: sim.waitForExit, webSockets: sim.route)
        defer { server.stop() }

        let pty = try Self.openPty(width: 80, height: 24)
        defer { close(pty.master); close(pty.slave) }
        let pid = try CLI.spawn([CLI.path, "exec", "c1", "-T", "--socket", server.path, "--", "cat"], stdio: pty.slave)
        try await Self.eventually { sim.state.withLock { $0.output.count } == 2 }
        #expect(Self.localFlags(pty.slave) & tcflag_t(ICANON) != 0, "-T must leave the terminal alone")
        kill(pid, SIGTERM)
        try await Self.eventually { !sim.state.withLock { $0.control.isEmpty } }
        #expect(sim.state.withLock { $0.control } == [#"{"command":"signal","signal":15}"#])
        // A line, then ^D: end of input on a canonical-mode terminal.
        _ = "hi\n\u{04}".withCString { write(pty.master, $0, 4) }
        #expect(await CLI.wait(pid) == 3, "lxdctl must survive SIGTERM and exit with the command's code")
        #expect(String(decoding: sim.state.withLock { $0.stdin }, as: UTF8.self) == "hi\n")
    }
}
