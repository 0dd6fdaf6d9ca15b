import CRuntime
import Glibc

/// `lxd-start exec`: joins a running container (cgroups, then all its namespaces through a
/// pidfd), forks (a pid namespace only applies to children), and the child execs the command
/// with the container's security policy. Reports "pid=N" (host pid of the command) and then
/// "exec=ok" or "error=...", and exits with the command's exit code (128+signal if killed).
struct ExecInContainer {
    let initPid: pid_t
    let userns: Bool
    let cgroups: [String]
    let uid: uid_t
    let gid: gid_t
    let cwd: String
    let tty: Bool
    let deny: [String]
    let dropCaps: [String]
    let argv: [String]
    let env: [String]

    init(_ a: Arguments) throws(HelperError) {
        initPid = pid_t(try a.int("pid"))
        userns = a.optional("userns") == "1"
        cgroups = a.all("cgroup")
        uid = uid_t(try a.int("uid"))
        gid = gid_t(try a.int("gid"))
        cwd = a.optional("cwd") ?? "/"
        tty = a.optional("tty") == "1"
        deny = a.all("deny")
        dropCaps = a.all("dropcap")
        argv = a.all("arg")
        env = a.all("env")
        if argv.isEmpty { throw HelperError("missing command (arg=)") }
    }

    /// Returns the exit code for the helper.
    func run(report: Int32) throws(HelperError) -> Int32 {
        let pidfd = cr_pidfd_open(initPid)
        if pidfd < 0 { throw HelperError.errno("open pidfd of container init \(initPid) (is the container running?)") }
        try joinCgroups(cgroups)
        var nsFlags = cr_CLONE_NEWNS | cr_CLONE_NEWPID | cr_CLONE_NEWUTS | cr_CLONE_NEWIPC | cr_CLONE_NEWNET | cr_CLONE_NEWCGROUP
        if userns { nsFlags |= cr_CLONE_NEWUSER }
        try check(cr_setns(pidfd, nsFlags), "setns into the namespaces of \(initPid)")
        close(pidfd)

        var failure: [Int32] = [-1, -1]
        try check(cr_pipe2(&failure, O_CLOEXEC), "pipe")
        let pid = cr_fork()
        if pid < 0 { throw HelperError.errno("fork into the container") }
        if pid == 0 {
            close(failure[0])
            let err = childSetup()
            writeAll(failure[1], err.message)
            _exit(err.message.hasPrefix("command not found") ? 127 : 126)
        }
        close(failure[1])
        writeAll(report, "pid=\(pid)\n")
        let message = readAll(failure[0])
        close(failure[0])
        writeAll(report, message.isEmpty ? "exec=ok\n" : "error=\(String(decoding: message, as: UTF8.self))\n")
        close(report)
        // Our stdio copies would hold pipes open after the command closed them.
        let null = open("/dev/null", O_RDWR)
        if null >= 0 { dup2(null, 0); dup2(null, 1); dup2(null, 2); if null > 2 { close(null) } }

        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            if errno != EINTR { return 126 }
        }
        if (status & 0x7f) == 0 { return (status >> 8) & 0xff }   // WIFEXITED
        return 128 + (status & 0x7f)                                // WTERMSIG
    }

    private func childSetup() -> HelperError {
        do throws(HelperError) {
            // The command dies with the helper: killing the helper is how the agent kills it.
            try check(cr_set_pdeathsig(SIGKILL), "prctl(PDEATHSIG)")
            if setsid() < 0 { throw HelperError.errno("setsid") }
            if tty { try check(cr_set_tty_controlling(0), "make the pty the controlling terminal") }
            try check(cr_close_range_cloexec(3), "close_range")
            resetSignals()
            // Both need privileges that setresuid to a non-root user would take away.
            try applySecurity(deny: deny, dropCaps: dropCaps)
            try check(cr_setgroups_empty(), "setgroups")
            try check(cr_setresgid(gid), "setresgid(\(gid))")
            try check(cr_setresuid(uid), "setresuid(\(uid))")
            if chdir(cwd) < 0 { throw HelperError.errno("chdir \(cwd) in the container") }
        } catch {
            return error
        }
        return execCommand(argv, env: env)
    }
}
