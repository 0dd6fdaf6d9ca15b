/// Which cgroup hierarchies this host has, read from /proc/self/mountinfo (never assumed).
/// Pure: parsing and planning only; `Cgroups` performs the writes.
public struct CgroupLayout: Sendable, Equatable {
    public enum Version: String, Sendable { case v1, v2, hybrid }

    public let version: Version
    /// v1 controller -> mount point (a co-mounted "cpu,cpuacct" appears under both names).
    public let v1: [String: String]
    /// The cgroup2 mount point, if any.
    public let unified: String?

    /// Controllers this runtime places containers in on v1 (freezer for CRIU's
    /// --freeze-cgroup; cpuset so the container can see which cpus it has).
    /// devices: which device nodes the container may open (privileged root can mknod).
    public static let v1Controllers = ["memory", "cpu", "cpuacct", "pids", "cpuset", "freezer", "devices"]

    /// v1 device rules: deny everything, then allow creating nodes (opening stays denied)
    /// and the devices a container needs: null, zero, full, random, urandom, tty, console,
    /// ptmx, its own ptys, fuse, net/tun.
    public static let v1DeviceRules: (deny: String, allow: [String]) = ("a", [
        "c *:* m", "b *:* m",
        "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm",
        "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm",
        "c 10:229 rwm", "c 10:200 rwm",
    ])

    public init(version: Version, v1: [String: String], unified: String?) {
        self.version = version
        self.v1 = v1
        self.unified = unified
    }

    /// Parses mountinfo text.
    public static func parse(mountinfo: String) throws(RuntimeError) -> CgroupLayout {
        var v1: [String: String] = [:]
        var unified: String?
        for (mountPoint, fsType, options) in mounts(mountinfo) {
            // A hierarchy can be mounted more than once (CRIU mounts them again in a temporary
            // "cgyard" during a restore): keep the first mount, and prefer /sys/fs/cgroup.
            func better(_ new: String, than old: String?) -> Bool {
                guard let old else { return true }
                return !old.hasPrefix("/sys/fs/cgroup/") && old != "/sys/fs/cgroup" && new.hasPrefix("/sys/fs/cgroup")
            }
            switch fsType {
            case "cgroup2":
                if better(mountPoint, than: unified) { unified = mountPoint }
            case "cgroup":
                for opt in options where v1Controllers.contains(opt) {
                    if better(mountPoint, than: v1[String(opt)]) { v1[String(opt)] = mountPoint }
                }
            default: continue
            }
        }
        if !v1.isEmpty {
            return CgroupLayout(version: unified == nil ? .v1 : .hybrid, v1: v1, unified: unified)
        }
        guard let unified else {
            throw .unsupported("no cgroup hierarchy is mounted (looked for cgroup and cgroup2 in /proc/self/mountinfo)")
        }
        return CgroupLayout(version: .v2, v1: [:], unified: unified)
    }

    /// Whether the cgroup2 mount at `unified` has `favordynmods`; nil without a cgroup2 mount.
    /// Without it every move of a process into a cgroup (each container start and exec) waits
    /// for an RCU grace period: 3 ms on an idle 2-core host, 12-19 ms while it relays traffic.
    public static func favorsDynamicMoves(mountinfo: String, unified: String?) -> Bool? {
        guard let unified else { return nil }
        return mounts(mountinfo).first { $0.fsType == "cgroup2" && $0.mountPoint == unified }.map { $0.options.contains("favordynmods") }
    }

    /// Mount point, filesystem type and super-block options of each mountinfo line.
    private static func mounts(_ mountinfo: String) -> [(mountPoint: String, fsType: String, options: [String])] {
        mountinfo.split(separator: "\n").compactMap { line in
            let halves = line.components(separatedBy: " - ")
            guard halves.count == 2 else { return nil }
            let pre = halves[0].split(separator: " ")
            let post = halves[1].split(separator: " ")
            guard pre.count >= 5, post.count >= 3 else { return nil }
            return (unescape(String(pre[4])), String(post[0]), post[2].split(separator: ",").map(String.init))
        }
    }

    /// True when limits go through the cgroup2 hierarchy (pure v2). In a hybrid layout the
    /// controllers live in v1 and cgroup2 carries none, so v1 is used.
    public var usesV2: Bool { version == .v2 }

    /// The directories of one container, one per hierarchy used (deduplicated for
    /// co-mounted controllers), in a stable order; on hybrid hosts the cgroup2 one comes last.
    public func directories(relative path: String) -> [String] {
        if usesV2 { return [unified! + "/" + path] }
        var seen = Set<String>()
        var dirs: [String] = []
        for c in Self.v1Controllers {
            guard let mp = v1[c], seen.insert(mp).inserted else { continue }
            dirs.append(mp + "/" + path)
        }
        if let delegated = delegatedDirectory(relative: path) { dirs.append(delegated) }
        return dirs
    }

    /// The container's cgroup2 directory, handed to its root and mounted at its /sys/fs/cgroup:
    /// systemd needs a cgroup2 tree it may manage. On v2 it is the limits leaf; on hybrid hosts
    /// the controllers stay in v1 (where the container cannot reach them) and this directory
    /// carries none. Init is cloned straight into it. nil on v1-only hosts.
    public func delegatedDirectory(relative path: String) -> String? {
        unified.map { $0 + "/" + path }
    }

    /// The hierarchies a container is placed in, each as the controllers mounted together
    /// (v1, e.g. ["cpu"] or ["cpu", "cpuacct"] when co-mounted) or [""] for cgroup2, in the
    /// order of `directories`. A restore on another member names each to move the dumped
    /// container cgroup to this member's path (and only these: the container sits at "/" in
    /// the others, such as blkio).
    public var controllerGroups: [[String]] {
        if usesV2 { return [[""]] }
        var byMount: [String: [String]] = [:]
        var order: [String] = []
        for c in Self.v1Controllers {
            guard let mp = v1[c] else { continue }
            if byMount[mp] == nil { order.append(mp) }
            byMount[mp, default: []].append(c)
        }
        return order.map { byMount[$0]! } + (unified == nil ? [] : [[""]])
    }

    /// The directory holding `controller`'s files for `path`.
    public func directory(of controller: String, relative path: String) -> String? {
        if usesV2 { return unified.map { $0 + "/" + path } }
        return v1[controller].map { $0 + "/" + path }
    }

    /// mountinfo escapes space, tab, newline and backslash as octal.
    private static func unescape(_ s: String) -> String {
        guard s.contains("\\") else { return s }
        var out = ""
        var it = Array(s)[...]
        while let c = it.popFirst() {
            if c == "\\", it.count >= 3, let v = UInt8(String(it.prefix(3)), radix: 8) {
                out.append(Character(UnicodeScalar(v)))
                it = it.dropFirst(3)
            } else {
                out.append(c)
            }
        }
        return out
    }
}

/// One write to a cgroup control file.
public struct CgroupWrite: Sendable, Equatable {
    public let controller: String
    public let file: String
    public let value: String
}

extension CgroupLayout {
    /// CFS period used for cpu limits (100 ms, the kernel default).
    public static let cpuPeriod = 100_000

    /// The writes that make `limits` current, including resets of absent limits, so the
    /// same plan serves start and live updates.
    public func limitWrites(_ limits: Limits) -> [CgroupWrite] {
        let quota = limits.cpuCores.map { max(1000, Int(($0 * Double(Self.cpuPeriod)).rounded())) }
        if usesV2 {
            return [
                CgroupWrite(controller: "memory", file: "memory.max", value: limits.memoryBytes.map(String.init) ?? "max"),
                CgroupWrite(controller: "cpu", file: "cpu.max", value: "\(quota.map(String.init) ?? "max") \(Self.cpuPeriod)"),
                CgroupWrite(controller: "pids", file: "pids.max", value: limits.processes.map(String.init) ?? "max"),
            ]
        }
        return [
            CgroupWrite(controller: "memory", file: "memory.limit_in_bytes", value: limits.memoryBytes.map(String.init) ?? "-1"),
            CgroupWrite(controller: "cpu", file: "cpu.cfs_period_us", value: String(Self.cpuPeriod)),
            CgroupWrite(controller: "cpu", file: "cpu.cfs_quota_us", value: quota.map(String.init) ?? "-1"),
            CgroupWrite(controller: "pids", file: "pids.max", value: limits.processes.map(String.init) ?? "max"),
        ]
    }
}
