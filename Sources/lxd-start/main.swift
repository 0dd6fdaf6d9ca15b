// lxd-start: the single-threaded helper the agent posix_spawns for every container start and
// every exec, because a multithreaded process may neither fork nor join a mount or user
// namespace. Arguments: `start|exec key=value...`; fd 3 is the report pipe (lines
// "pid=N", "exec=ok", "error=..."; `monitor` has none). No Foundation: this must start fast and stay small.
import CRuntime
import Glibc

let reportFD: Int32 = 3
resetSignals()

// Run by `criu restore --action-script` (no arguments; the action in the environment): after
// CRIU made the restored tree's namespaces and before the tree runs, bring up its loopback
// (dumped with `--empty-ns net`: containers have no other device, and skipping the network
// dump and restore saves ~250 ms of downtime here). Other actions: nothing to do.
if CommandLine.arguments.count == 1, let action = getenv("CRTOOLS_SCRIPT_ACTION").map({ String(cString: $0) }) {
    guard action == "setup-namespaces" else { exit(0) }
    guard let text = getenv("CRTOOLS_INIT_PID").map({ String(cString: $0) }), let pid = Int32(text), pid > 0 else {
        writeAll(2, "lxd-start: CRTOOLS_INIT_PID missing\n")
        exit(1)
    }
    let fd = open("/proc/\(pid)/ns/net", O_RDONLY | O_CLOEXEC)
    guard fd >= 0, cr_setns(fd, cr_CLONE_NEWNET) == 0, cr_loopback_up() == 0 else {
        writeAll(2, "lxd-start: bringing up lo in the restored network namespace of \(pid) failed: errno \(errno)\n")
        exit(1)
    }
    exit(0)
}

do throws(HelperError) {
    let args = try Arguments(CommandLine.arguments)
    switch args.mode {
    case "start":
        let start = try StartContainer(args)
        let monitor = try ConsoleMonitorLauncher(log: start.console, socket: start.consoleSocket)
        do throws(HelperError) {
            let (pid, console) = try start.run()
            do throws(HelperError) {
                try monitor.hand(master: console, initPid: pid)
            } catch {
                // A container without its console holder would hang up its console: no start.
                kill(pid, SIGKILL)
                var st: Int32 = 0
                waitpid(pid, &st, 0)
                throw error
            }
            writeAll(reportFD, "pid=\(pid)\nmonitor=\(monitor.pid)\n")
        } catch {
            monitor.abandon()
            throw error
        }
        exit(0)
    case "monitor":
        // A restored container's console: the master arrives as fd 4 (CRIU gave the tree the slave).
        let pid = pid_t(try args.int("pid"))
        let pidfd = cr_pidfd_open(pid)
        if pidfd < 0 { throw HelperError.errno("open pidfd of init \(pid)") }
        ConsoleMonitor(master: 4, initPidfd: pidfd, logPath: try args.required("console"),
                       socketPath: try args.required("consolesock")).run()
    case "mount":
        try StartContainer(args).mountOnly()
        exit(0)
    case "exec":
        let code = try ExecInContainer(args).run(report: reportFD)
        exit(code)
    default:
        throw HelperError("unknown mode '\(args.mode)' (expected start, exec or mount)")
    }
} catch {
    writeAll(reportFD, "error=\(error.message)\n")
    exit(1)
}

/// The console monitor is forked before the helper joins the container's cgroups, so it is
/// never counted, limited or frozen with the container; it waits for the console's master and
/// a pidfd of init, and exits at once if the start fails. Its own session, nothing of the
/// agent's: the report pipe closes with this helper, so the agent reads its report to the
/// end without waiting for the monitor.
struct ConsoleMonitorLauncher {
    let pid: pid_t
    private let channel: Int32

    init(log: String, socket: String) throws(HelperError) {
        var pair: [Int32] = [-1, -1]
        try check(cr_socketpair_seqpacket(&pair), "socketpair")
        let pid = cr_fork()
        if pid < 0 { throw HelperError.errno("fork the console monitor") }
        if pid == 0 {
            close(reportFD)
            close(pair[0])
            _ = setsid()
            let master = cr_recv_fd(pair[1])
            let pidfd = master >= 0 ? cr_recv_fd(pair[1]) : -1
            if master < 0 || pidfd < 0 { _exit(0) }
            close(pair[1])
            ConsoleMonitor(master: master, initPidfd: pidfd, logPath: log, socketPath: socket).run()
        }
        close(pair[1])
        self.pid = pid
        self.channel = pair[0]
    }

    func hand(master: Int32, initPid: pid_t) throws(HelperError) {
        let pidfd = cr_pidfd_open(initPid)
        if pidfd < 0 { throw HelperError.errno("open pidfd of init \(initPid)") }
        defer { close(pidfd); close(master) }
        try check(cr_send_fd(channel, master), "hand the console to its monitor")
        try check(cr_send_fd(channel, pidfd), "hand init to the console monitor")
    }

    /// The start failed: the monitor sees the channel close and exits; reap it here.
    func abandon() {
        close(channel)
        var st: Int32 = 0
        waitpid(pid, &st, 0)
    }
}
