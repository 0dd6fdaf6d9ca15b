/// How CRIU locks the network of a dumped tree (`--network-lock`). nftables leaves nothing
/// behind; iptables leaves empty tables (NOTES-criu.md).
public enum NetworkLock: String, Sendable, Hashable, Codable {
    case nftables, iptables, skip
}

/// `--manage-cgroups` modes: what CRIU restores of the dumped cgroups.
public enum CgroupManagement: String, Sendable, Hashable, Codable {
    case none, props, soft, full, strict, ignore
}

/// Where the restored tree's cgroups go (`--cgroup-root [controllers:]path`): the dumped
/// container cgroup is replaced by `path`. Name the controllers the runtime manages: without
/// them CRIU moves every controller, also those the container had at "/" (blkio, devices),
/// and creates the groups itself (cpuset then fails: "Failed writing ... cpuset.cpus").
public struct CgroupRoot: Sendable, Hashable, Codable {
    /// Empty = every controller.
    public var controllers: [String]
    public var path: String
    public init(controllers: [String] = [], path: String) {
        self.controllers = controllers
        self.path = path
    }
    var argument: String { controllers.isEmpty ? path : controllers.joined(separator: ",") + ":" + path }
}

/// A file handed to criu restore for an external one: `key` names it as the dump did
/// (`tty[rdev:dev]` for a terminal), `fd` is open in the caller.
public struct InheritedFile: Sendable, Hashable {
    public var key: String
    public var fd: Int32
    public init(key: String, fd: Int32) {
        self.key = key
        self.fd = fd
    }
}

/// Where a dump's memory goes. The sockets are one end of a socketpair whose other end the agent
/// pumps over its mutual-TLS link to the other member, so no port is opened for CRIU.
public enum DumpMemory: Sendable, Hashable {
    /// Into pages-*.img beside the other images.
    case images
    /// Straight to `criu page-server` on the other member while the dump runs
    /// (`--page-server --ps-socket`): nothing of the memory touches the local disk.
    case pageServer(socket: Int32)
    /// Post-copy: the pages stay in the frozen tree and are served over `socket` to the other
    /// member's lazy-pages daemon once the other images are written (`--lazy-pages --ps-socket`);
    /// `status` gets one byte at that moment. The dump returns when every page has been sent.
    case lazy(socket: Int32, status: Int32)
}

/// What to checkpoint and how. Defaults are the options that worked for unprivileged
/// containers on idmapped overlays here (NOTES-criu.md).
public struct DumpRequest: Sendable, Hashable {
    /// The container init's pid as the host sees it.
    public var pid: Int32
    /// Where the images go (must exist).
    public var imagesDirectory: String
    /// Log file name, relative to `imagesDirectory` (CRIU's rule for -o).
    public var logFile = "dump.log"
    /// Dump ESTABLISHED TCP connections (they survive on restore with the same addresses).
    public var tcpEstablished = false
    /// Freeze through this v1 freezer cgroup (a path under /sys/fs/cgroup/freezer): 4-10 ms
    /// for the whole tree instead of CRIU stopping tasks one by one.
    public var freezeCgroup: String?
    /// Keep the source running after the dump (a checkpoint, or the iteration of a move that
    /// may still be undone).
    public var leaveRunning = false
    /// Leave every task stopped (TASK_STOPPED) after the dump instead of killing the tree: a
    /// move keeps the source this way until the target has taken over, and SIGCONT resumes it
    /// if the move is called off. Ignored with `leaveRunning`.
    public var leaveStopped = false
    public var networkLock: NetworkLock?
    /// Do not dump the network namespace's devices, addresses, routes and rules
    /// (`--empty-ns net`): for containers whose only device is lo, which the restore brings up
    /// again (`RestoreRequest.actionScript`). Saves the `ip`/`iptables-save` runs (~250 ms here).
    public var emptyNetwork = false
    /// Extra `--external` specs, e.g. `mnt[/mnt]:vol` for an idmapped volume bind.
    public var externals: [String] = []
    /// Directories (in the container's root) where CRIU looks for the paths of inotify watches
    /// it cannot reopen by handle (`--irmap-scan-path`): overlayfs gives no usable handles.
    public var irmapScanPaths: [String] = []
    /// Pre-copy: track dirty memory and, from the second pass on, reference the previous
    /// pass's images (a path relative to `imagesDirectory`, e.g. "../1").
    public var trackMemory = false
    public var previousImages: String?
    public var memory: DumpMemory = .images

    public init(pid: Int32, imagesDirectory: String) {
        self.pid = pid
        self.imagesDirectory = imagesDirectory
    }
}

/// What to restore and where.
public struct RestoreRequest: Sendable, Hashable {
    public var imagesDirectory: String
    public var logFile = "restore.log"
    /// The container's root filesystem, already mounted (same layers, same id map, the moved
    /// upper layer). Required: without --root CRIU 4.2 crashes on these images.
    public var root: String
    /// CRIU writes the restored init's host pid here (the tree is detached with -d).
    public var pidFile: String
    public var tcpEstablished = false
    /// Restore the tree's cgroups here instead of the dumped paths (another member's names).
    public var cgroupRoots: [CgroupRoot] = []
    public var manageCgroups: CgroupManagement?
    /// Extra `--external` specs, e.g. `mnt[vol]:/path` or `netdev[eth0]:vethXYZ`.
    public var externals: [String] = []
    /// Post-copy: pages come from a lazy-pages daemon started first on this host.
    public var lazyPages = false
    /// Images dumped with `emptyNetwork`: CRIU makes a bare network namespace.
    public var emptyNetwork = false
    /// An executable CRIU runs at each restore stage (`--action-script`, no arguments, the
    /// stage in CRTOOLS_SCRIPT_ACTION): lxd-start, which brings up lo of an empty namespace.
    public var actionScript: String?
    /// Files the restored tree gets in place of external ones (`--inherit-fd`), such as the
    /// console terminal, whose other end lives outside the tree.
    public var inherited: [InheritedFile] = []

    public init(imagesDirectory: String, root: String, pidFile: String) {
        self.imagesDirectory = imagesDirectory
        self.root = root
        self.pidFile = pidFile
    }
}

/// CRIU argument lists (argv without argv[0]). Pure, so the exact options are unit-tested.
public enum CRIUCommand {
    /// `--external 'mnt[]'`: treat every mount outside the container root as external. Without
    /// it dump fails ("./dev/tty doesn't have a proper root mount") and restore refuses
    /// ("autodetected external mount").
    static let allMountsExternal = ["--external", "mnt[]"]

    public static func dump(_ r: DumpRequest) -> [String] {
        var args = ["dump"] + common(pid: r.pid, directory: r.imagesDirectory, log: r.logFile)
        args += allMountsExternal
        args += dumpOptions(r)
        if r.leaveRunning { args.append("--leave-running") } else if r.leaveStopped { args.append("--leave-stopped") }
        switch r.memory {
        case .images: break
        case .pageServer: args += ["--page-server", "--ps-socket", String(socketFD)]
        case .lazy: args += ["--lazy-pages", "--ps-socket", String(socketFD), "--status-fd", String(statusFD)]
        }
        return args
    }

    /// The fds a dump gets besides stdio (child fd: caller's fd).
    public static func dumpInherited(_ r: DumpRequest) -> [Int32: Int32] {
        switch r.memory {
        case .images: [:]
        case .pageServer(let socket): [socketFD: socket]
        case .lazy(let socket, let status): [socketFD: socket, statusFD: status]
        }
    }

    /// Where the page-server socket and the status pipe are in criu (right after stdio).
    public static let socketFD: Int32 = 3
    public static let statusFD: Int32 = 4

    /// A pre-copy pass: copies memory while the tree keeps running (needs soft-dirty).
    public static func preDump(_ r: DumpRequest) -> [String] {
        var args = ["pre-dump"] + common(pid: r.pid, directory: r.imagesDirectory, log: r.logFile)
        args += allMountsExternal
        var pass = r
        pass.trackMemory = true
        args += dumpOptions(pass)
        return args
    }

    public static func restore(_ r: RestoreRequest) -> [String] {
        var args = ["restore", "-D", r.imagesDirectory, "-o", r.logFile, "--root", r.root]
        args += allMountsExternal
        args += ["-d", "--pidfile", r.pidFile]
        if r.tcpEstablished { args.append("--tcp-established") }
        for root in r.cgroupRoots { args += ["--cgroup-root", root.argument] }
        if let mode = r.manageCgroups { args.append("--manage-cgroups=\(mode.rawValue)") }
        for e in r.externals { args += ["--external", e] }
        for (fd, file) in zip(inheritedFDs(r), r.inherited) { args += ["--inherit-fd", "fd[\(fd)]:\(file.key)"] }
        if r.lazyPages { args.append("--lazy-pages") }
        if r.emptyNetwork { args += ["--empty-ns", "net"] }
        if let script = r.actionScript { args += ["--action-script", script] }
        return args
    }

    /// The fd numbers criu gets the inherited files at, in order: right after stdio.
    public static func inheritedFDs(_ r: RestoreRequest) -> [Int32] {
        r.inherited.indices.map { Int32(3 + $0) }
    }

    /// The receiving end of a `.pageServer` dump: writes pagemap and pages images into
    /// `imagesDirectory` from the socket at `socketFD`, and exits when the dump is done.
    public static func pageServer(imagesDirectory: String, logFile: String = "page-server.log") -> [String] {
        ["page-server", "-D", imagesDirectory, "-o", logFile, "--ps-socket", String(socketFD)]
    }

    /// The target-side daemon of post-copy: serves the restored tree's page faults with pages it
    /// asks the source for over the socket at `socketFD`, then fetches the rest; exits when it
    /// has them all. One byte on `statusFD` when the restore may start.
    public static func lazyPagesDaemon(imagesDirectory: String, logFile: String = "lazy-pages.log") -> [String] {
        ["lazy-pages", "--page-server", "--ps-socket", String(socketFD), "--status-fd", String(statusFD),
         "-D", imagesDirectory, "-o", logFile]
    }

    public static let check = ["check"]
    public static let version = ["--version"]
    public static func checkFeature(_ name: String) -> [String] { ["check", "--feature", name] }

    private static func common(pid: Int32, directory: String, log: String) -> [String] {
        ["-t", String(pid), "-D", directory, "-o", log]
    }

    private static func dumpOptions(_ r: DumpRequest) -> [String] {
        var args: [String] = []
        if r.tcpEstablished { args.append("--tcp-established") }
        if let cg = r.freezeCgroup { args += ["--freeze-cgroup", cg] }
        if let lock = r.networkLock { args += ["--network-lock", lock.rawValue] }
        if r.emptyNetwork { args += ["--empty-ns", "net"] }
        for e in r.externals { args += ["--external", e] }
        for p in r.irmapScanPaths { args += ["--irmap-scan-path", p] }
        if r.trackMemory { args.append("--track-mem") }
        if let prev = r.previousImages { args += ["--prev-images-dir", prev] }
        return args
    }
}
