/// The command lines for `lxd-start` (see Sources/lxd-start): pure, so the contract between
/// agent and helper is unit-tested without spawning anything.
public enum HelperInvocation {
    /// Host-side paths of one container.
    public struct Paths: Sendable, Equatable {
        public let dir: String
        public var upper: String { dir + "/upper" }
        public var work: String { dir + "/work" }
        public var rootfs: String { dir + "/rootfs" }
        public var console: String { dir + "/console.log" }
        /// Where the running container's console monitor listens (see lxd-start's ConsoleMonitor;
        /// `ConsoleMessage` packets).
        public var consoleSocket: String { dir + "/console.sock" }
        public var stateFile: String { dir + "/state.json" }
        /// Where a stateful stop keeps the CRIU dump until the next start.
        public var savedState: String { dir + "/state" }

        public init(dir: String) { self.dir = dir }
    }

    /// `lower` defaults to the image layer; `idmapLower` false when it is a shifted copy.
    /// `cloneInto` (one of `cgroupDirs`, the cgroup2 one) is entered by clone3 rather than by
    /// a cgroup.procs write, and becomes the root of the container's cgroup namespace.
    public static func start(helper: String, spec: ContainerSpec, paths: Paths, cgroupDirs: [String],
                             cloneInto: String? = nil, lower: String? = nil, idmapLower: Bool = true) -> [String] {
        var a = [helper, "start",
                 "name=\(spec.name)", "lower=\(lower ?? spec.layerRootfs)", "upper=\(paths.upper)",
                 "work=\(paths.work)", "rootfs=\(paths.rootfs)", "console=\(paths.console)",
                 "consolesock=\(paths.consoleSocket)"]
        if let m = spec.idmap {
            a += ["uidmap=\(m.hostBase):\(m.size)", "gidmap=\(m.hostBase):\(m.size)", "idmaplower=\(idmapLower ? 1 : 0)"]
        }
        a += cgroupDirs.filter { $0 != cloneInto }.map { "cgroup=\($0)" }
        if let cloneInto { a.append("cgroup2=\(cloneInto)") }
        a += policy()
        a += spec.initCommand.map { "arg=\($0)" }
        a += environment(spec.environment).map { "env=\($0)" }
        return a
    }

    public static func exec(helper: String, initPid: Int32, userNamespace: Bool, cgroupDirs: [String],
                            command: [String], environment env: [String: String], cwd: String,
                            uid: UInt32, gid: UInt32, terminal: Bool) -> [String] {
        var a = [helper, "exec", "pid=\(initPid)", "userns=\(userNamespace ? 1 : 0)",
                 "uid=\(uid)", "gid=\(gid)", "cwd=\(cwd)", "tty=\(terminal ? 1 : 0)"]
        a += cgroupDirs.map { "cgroup=\($0)" }
        a += policy()
        a += command.map { "arg=\($0)" }
        a += environment(env).map { "env=\($0)" }
        return a
    }

    /// A sane default PATH and TERM-less environment, overridden by the caller's entries.
    /// `container=lxc` is set last, over any user value: it is how systemd and other inits
    /// learn they run in a container (and which kind, for units' ConditionVirtualization=).
    static func environment(_ env: [String: String]) -> [String] {
        var merged = ["PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root"]
        merged.merge(env) { _, new in new }
        merged["container"] = "lxc"
        return merged.keys.sorted().map { "\($0)=\(merged[$0]!)" }
    }

    private static func policy() -> [String] {
        SecurityPolicy.deniedSyscalls.map { "deny=\($0)" } + SecurityPolicy.droppedCapabilities.map { "dropcap=\($0)" }
    }

    /// The helper's report: "pid=N", "monitor=N", "exec=ok", "error=..." lines.
    public struct Report: Equatable, Sendable {
        public var pid: Int32?
        /// The console monitor a start leaves behind (our child once the helper exited).
        public var monitor: Int32?
        public var execConfirmed = false
        public var error: String?
    }

    public static func parseReport(_ bytes: [UInt8]) -> Report {
        var r = Report()
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
            if line.hasPrefix("pid=") { r.pid = Int32(line.dropFirst(4)) }
            else if line.hasPrefix("monitor=") { r.monitor = Int32(line.dropFirst(8)) }
            else if line == "exec=ok" { r.execConfirmed = true }
            else if line.hasPrefix("error=") {
                r.error = (r.error.map { $0 + "; " } ?? "") + line.dropFirst(6)
            }
        }
        return r
    }
}

extension HelperInvocation {
    /// The fd at which `lxd-start monitor` finds the console's master.
    public static let monitorMasterFD: Int32 = 4

    /// The console monitor of a restored container (lxd-start's ConsoleMonitor), master at
    /// `monitorMasterFD`.
    public static func monitor(helper: String, initPid: Int32, paths: Paths) -> [String] {
        [helper, "monitor", "pid=\(initPid)", "console=\(paths.console)", "consolesock=\(paths.consoleSocket)"]
    }

    /// Mount only the root filesystem (overlay with the idmapped lower) at `paths.rootfs`.
    public static func mount(helper: String, lower: String, idmap: IDMap?, idmapLower: Bool = true, paths: Paths) -> [String] {
        var a = [helper, "mount", "name=mount", "lower=\(lower)", "upper=\(paths.upper)",
                 "work=\(paths.work)", "rootfs=\(paths.rootfs)"]
        if let m = idmap {
            a += ["uidmap=\(m.hostBase):\(m.size)", "gidmap=\(m.hostBase):\(m.size)", "idmaplower=\(idmapLower ? 1 : 0)"]
        }
        return a
    }
}
