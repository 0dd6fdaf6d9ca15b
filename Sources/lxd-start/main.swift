// lxd-start: the single-threaded helper the agent posix_spawns for every container start and
// every exec, because a multithreaded process may neither fork nor join a mount or user
// namespace. Arguments: `start|exec key=value...`; fd 3 is the report pipe (lines
// "pid=N", "exec=ok", "error=..."). No Foundation: this must start fast and stay small.
import Glibc

let reportFD: Int32 = 3
resetSignals()

do throws(HelperError) {
    let args = try Arguments(CommandLine.arguments)
    switch args.mode {
    case "start":
        let pid = try StartContainer(args).run()
        writeAll(reportFD, "pid=\(pid)\n")
        exit(0)
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
