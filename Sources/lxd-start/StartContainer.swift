import CRuntime
import Glibc

/// `lxd-start start`: joins the container's cgroups, clones the init process into new user
/// (unless privileged) and pid namespaces, maps its ids, mounts the root filesystem in the
/// host mount namespace, then lets the child build the rest and execve init.
/// Reports "pid=N" once init's execve succeeded, or "error=...".
struct StartContainer {
    let hostname: String
    let lower: String
    let upper: String
    let work: String
    let rootfs: String
    let console: String
    /// Where the console monitor listens (empty: no console pty, as for `mount`).
    let consoleSocket: String
    let uidMap: IDRange?
    let gidMap: IDRange?
    /// False when the lower is already shifted into the map (kernels without idmapped mounts).
    let idmapLower: Bool
    let cgroups: [String]
    /// The cgroup2 directory init is cloned into (see CgroupLayout.delegatedDirectory); it is
    /// mounted at the container's /sys/fs/cgroup. Empty on v1-only hosts.
    let cgroup2: String
    let deny: [String]
    let dropCaps: [String]
    let argv: [String]
    let env: [String]

    init(_ a: Arguments) throws(HelperError) {
        hostname = try a.required("name")
        lower = try a.required("lower")
        upper = try a.required("upper")
        work = try a.required("work")
        rootfs = try a.required("rootfs")
        console = a.optional("console") ?? ""
        consoleSocket = a.optional("consolesock") ?? ""
        uidMap = try a.optional("uidmap").map { (s: String) throws(HelperError) in try IDRange(s) }
        gidMap = try a.optional("gidmap").map { (s: String) throws(HelperError) in try IDRange(s) }
        if (uidMap == nil) != (gidMap == nil) { throw HelperError("uidmap= and gidmap= go together") }
        idmapLower = a.optional("idmaplower") != "0"
        cgroups = a.all("cgroup")
        cgroup2 = a.optional("cgroup2") ?? ""
        deny = a.all("deny")
        dropCaps = a.all("dropcap")
        argv = a.all("arg")
        env = a.all("env")
        if a.mode == "start" {
            if argv.isEmpty { throw HelperError("missing init command (arg=)") }
            if console.isEmpty || consoleSocket.isEmpty { throw HelperError("missing argument console= or consolesock=") }
        }
    }

    var privileged: Bool { uidMap == nil }

    /// `lxd-start mount`: only the root filesystem (e.g. to reach files of a stopped
    /// container, or to prepare a restore). The child exists just to own the user namespace
    /// the lower layer is idmapped with; the idmapped mount keeps that namespace alive.
    func mountOnly() throws(HelperError) {
        guard !privileged && idmapLower else {
            try mountRoot(usernsFD: -1)
            return
        }
        var sync: [Int32] = [-1, -1]
        try check(cr_pipe2(&sync, O_CLOEXEC), "pipe")
        let pid = cr_clone3(UInt64(cr_CLONE_NEWUSER))
        if pid < 0 { throw HelperError.errno("clone3 (user namespace)") }
        if pid == 0 {
            close(sync[1])
            var b: UInt8 = 0
            _ = read(sync[0], &b, 1)
            _exit(0)
        }
        close(sync[0])
        defer {
            close(sync[1])
            var st: Int32 = 0
            waitpid(pid, &st, 0)
        }
        try prepareFromParent(child: pid)
    }

    /// Runs in the helper; returns the init pid once its execve is confirmed, and the master
    /// of its console pty.
    func run() throws(HelperError) -> (pid: pid_t, console: Int32) {
        try joinCgroups(cgroups)

        let console = try makeConsole()
        var handedOver = false
        defer { if !handedOver { close(console.master) } }
        var sync: [Int32] = [-1, -1]   // parent -> child: "maps and rootfs are ready"
        var failure: [Int32] = [-1, -1] // child -> parent: error text; EOF on execve = success
        try check(cr_pipe2(&sync, O_CLOEXEC), "pipe")
        try check(cr_pipe2(&failure, O_CLOEXEC), "pipe")

        var flags = UInt64(cr_CLONE_NEWPID)
        if !privileged { flags |= UInt64(cr_CLONE_NEWUSER) }
        let pid: pid_t
        if cgroup2.isEmpty {
            pid = cr_clone3(flags)
        } else {
            let dir = open(cgroup2, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            if dir < 0 { throw HelperError.errno("open cgroup \(cgroup2)") }
            pid = cr_clone3_into(flags, dir)
            close(dir)
        }
        if pid < 0 { throw HelperError.errno("clone3 (user+pid namespaces\(cgroup2.isEmpty ? "" : ", into cgroup \(cgroup2)"))") }
        if pid == 0 {
            close(sync[1]); close(failure[0])
            var go: UInt8 = 0
            // Nothing may happen before the parent wrote the id maps: until then this process
            // still holds host root's credentials.
            if read(sync[0], &go, 1) != 1 { _exit(1) }
            close(sync[0])
            let err = childSetup(errorPipe: failure[1], consoleSlave: console.slavePath)
            writeAll(failure[1], err.message)
            _exit(127)
        }
        close(sync[0]); close(failure[1])
        do throws(HelperError) {
            try prepareFromParent(child: pid)
        } catch {
            kill(pid, SIGKILL)
            var st: Int32 = 0
            waitpid(pid, &st, 0)
            throw error
        }
        var go: UInt8 = 1
        if write(sync[1], &go, 1) != 1 { throw HelperError.errno("release container init") }
        close(sync[1])
        let message = readAll(failure[0])
        close(failure[0])
        if !message.isEmpty {
            var st: Int32 = 0
            waitpid(pid, &st, 0)
            throw HelperError(String(decoding: message, as: UTF8.self))
        }
        handedOver = true
        return (pid, console.master)
    }

    /// Host side, between clone and release: id maps, then the overlay root filesystem whose
    /// lower layer is idmapped with the child's user namespace.
    private func prepareFromParent(child pid: pid_t) throws(HelperError) {
        var usernsFD: Int32 = -1
        if let uidMap, let gidMap {
            try writeFile("/proc/\(pid)/uid_map", uidMap.mapLine)
            try writeFile("/proc/\(pid)/gid_map", gidMap.mapLine)
            if idmapLower {
                usernsFD = open("/proc/\(pid)/ns/user", O_RDONLY | O_CLOEXEC)
                if usernsFD < 0 { throw HelperError.errno("open user namespace of \(pid)") }
            }
        }
        defer { if usernsFD >= 0 { close(usernsFD) } }
        try mountRoot(usernsFD: usernsFD)
    }

    /// The overlay at `rootfs`: lower read-only (idmapped with `usernsFD` when >= 0).
    private func mountRoot(usernsFD: Int32) throws(HelperError) {
        // The detached layer's fd must stay open until the overlay exists (NOTES-criu.md).
        let layer = cr_detached_layer(lower, usernsFD)
        if layer < 0 {
            throw HelperError.errno("make \(usernsFD < 0 ? "read-only" : "idmapped") mount of layer \(lower)"
                                    + (usernsFD >= 0 ? " (kernel needs idmapped mounts; else use shifted layers)" : ""))
        }
        defer { close(layer) }
        var stage: UnsafePointer<CChar>? = nil
        if cr_mount_overlay("/proc/self/fd/\(layer)", upper, work, rootfs, &stage) < 0 {
            let what = stage.map { String(cString: $0) } ?? "overlay"
            throw HelperError.errno("mount overlay root at \(rootfs): \(what)")
        }
    }

    /// In the child after release: returns only on failure (the error to report).
    private func childSetup(errorPipe: Int32, consoleSlave: String) -> HelperError {
        do throws(HelperError) {
            if !privileged {
                try check(cr_setgroups_empty(), "setgroups")
                try check(cr_setresgid(0), "setresgid(0)")
                try check(cr_setresuid(0), "setresuid(0)")
            }
            // Already inside its cgroups (joined by the helper before clone), so the new
            // cgroup namespace is rooted at the container's own cgroups.
            try check(cr_unshare(cr_CLONE_NEWNS | cr_CLONE_NEWUTS | cr_CLONE_NEWIPC | cr_CLONE_NEWNET | cr_CLONE_NEWCGROUP),
                      "unshare(mount, uts, ipc, net, cgroup)")
            try mountFS("none", "/", nil, Int(MS_REC) | Int(MS_PRIVATE), nil)
            // Mounts copied from the host namespace are locked and pivot_root refuses a locked
            // new root (EINVAL): a bind made here belongs to this namespace.
            try mountFS(rootfs, rootfs, nil, Int(MS_BIND) | Int(MS_REC), nil)
            try buildMounts()
            try bindConsole(consoleSlave)
            try check(cr_sethostname(hostname), "sethostname \(hostname)")
            try check(cr_loopback_up(), "bring up lo")
            try check(chdir(rootfs), "chdir \(rootfs)")
            try check(cr_pivot_root(".", "."), "pivot_root \(rootfs)")
            try check(umount2(".", Int32(MNT_DETACH)), "detach old root")
            try check(chdir("/"), "chdir /")
            if setsid() < 0 { throw HelperError.errno("setsid") }
            try stdio()
            // Every inherited fd goes at exec; the error pipe stays until then.
            try check(cr_close_range_cloexec(3), "close_range")
            resetSignals()
            try applySecurity(deny: deny, dropCaps: dropCaps)
        } catch {
            return error
        }
        return execCommand(argv, env: env)
    }

    private func buildMounts() throws(HelperError) {
        let r = rootfs
        let nosuidNodevNoexec = Int(MS_NOSUID) | Int(MS_NODEV) | Int(MS_NOEXEC)
        for d in ["proc", "sys", "dev"] { try makeDir(pathJoin(r, d)) }
        try mountFS("proc", r + "/proc", "proc", nosuidNodevNoexec, nil)
        if privileged {
            // Host root inside: keep kernel tunables read-only, and the magic SysRq trigger (one
            // write reboots or crashes the host). Kernels without SysRq have no such file.
            for path in ["/proc/sys", "/proc/sysrq-trigger"] where path == "/proc/sys" || access(r + path, F_OK) == 0 {
                try bind(r + path, r + path)
                try mountFS("none", r + path, nil, Int(MS_BIND) | Int(MS_REMOUNT) | Int(MS_RDONLY) | nosuidNodevNoexec, nil)
            }
        }
        try mountFS("sysfs", r + "/sys", "sysfs", nosuidNodevNoexec | (privileged ? Int(MS_RDONLY) : 0), nil)
        if !cgroup2.isEmpty {
            // The cgroup namespace is rooted at the container's own cgroup2 directory (init was
            // cloned into it), so this shows only the container's tree, which its root owns.
            try mountFS("cgroup2", r + "/sys/fs/cgroup", "cgroup2", nosuidNodevNoexec, nil)
        }
        try mountFS("tmpfs", r + "/dev", "tmpfs", Int(MS_NOSUID) | Int(MS_NOEXEC), "mode=755,size=65536k")
        // mknod is not allowed in a user namespace: bind the host's device nodes instead.
        for dev in ["null", "zero", "full", "random", "urandom", "tty"] {
            try makeFile(r + "/dev/" + dev)
            try bind("/dev/" + dev, r + "/dev/" + dev)
        }
        try makeDir(r + "/dev/pts")
        try mountFS("devpts", r + "/dev/pts", "devpts", Int(MS_NOSUID) | Int(MS_NOEXEC),
                    "newinstance,ptmxmode=0666,mode=0620,gid=5")
        try makeSymlink("pts/ptmx", r + "/dev/ptmx")
        try makeDir(r + "/dev/shm", 0o1777)
        try mountFS("tmpfs", r + "/dev/shm", "tmpfs", Int(MS_NOSUID) | Int(MS_NODEV), "mode=1777")
        try makeDir(r + "/dev/mqueue")
        try mountFS("mqueue", r + "/dev/mqueue", "mqueue", nosuidNodevNoexec, nil)
        try makeSymlink("/proc/self/fd", r + "/dev/fd")
        try makeSymlink("/proc/self/fd/0", r + "/dev/stdin")
        try makeSymlink("/proc/self/fd/1", r + "/dev/stdout")
        try makeSymlink("/proc/self/fd/2", r + "/dev/stderr")
    }

    /// The console: a pty of the host's devpts, made before the clone as host root so that its
    /// slave can be given to the container's root and tty group (as LXC does). Not one of the
    /// container's own devpts: a checkpoint declares the console external, and a restore binds
    /// a host pty there (CRIU mounts the container's devpts afresh, empty). Were the first
    /// console the container's pts/0, units with a mount namespace of their own (logind) would
    /// keep a bind of it that no restore can recreate, and the next checkpoint would fail.
    /// The master stays with the helper, which keeps it in the console monitor.
    private func makeConsole() throws(HelperError) -> (master: Int32, slavePath: String) {
        var master: Int32 = -1
        var slave: Int32 = -1
        try check(cr_open_devpts_pair("/dev/ptmx", &master, &slave), "open the console pty in the host's devpts")
        defer { close(slave) }
        var name = [CChar](repeating: 0, count: 64)
        let uid = uidMap.map { uid_t($0.base) } ?? 0
        // The tty group (5) as the container sees it; a map too small for it leaves it root's.
        let gid = gidMap.map { gid_t($0.base + ($0.size > 5 ? 5 : 0)) } ?? 5
        let length = readlink("/proc/self/fd/\(slave)", &name, name.count - 1)
        if length <= 0 || fchown(slave, uid, gid) != 0 || fchmod(slave, 0o620) != 0 {
            let saved = errno
            close(master)
            throw HelperError.errno("prepare the console pty", saved)
        }
        return (master, String(cString: name))
    }

    /// Binds the console's slave (a path in the host's devpts, still reachable before
    /// pivot_root) on the container's /dev/console.
    private func bindConsole(_ slavePath: String) throws(HelperError) {
        try makeFile(rootfs + "/dev/console")
        try bind(slavePath, rootfs + "/dev/console")
    }

    /// stdin from the container's /dev/null, stdout/stderr to its /dev/console (the console
    /// pty): nothing refers to a host file the container did not mount itself.
    private func stdio() throws(HelperError) {
        let null = open("/dev/null", O_RDONLY | O_NOCTTY)
        if null < 0 { throw HelperError.errno("open /dev/null") }
        let cons = open("/dev/console", O_WRONLY | O_APPEND | O_NOCTTY)
        if cons < 0 { throw HelperError.errno("open /dev/console") }
        try check(dup2(null, 0), "dup2 stdin")
        try check(dup2(cons, 1), "dup2 stdout")
        try check(dup2(cons, 2), "dup2 stderr")
        if null > 2 { close(null) }
        if cons > 2 { close(cons) }
    }
}
