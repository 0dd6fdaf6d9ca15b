import Foundation
import Glibc

/// The container cgroups on this host: `<parent>/<member>/<leaf>` in every hierarchy used, where
/// the leaf is the container's host name (`InstanceRef.hostName`, `<project>_<name>`; the bare
/// name for a container adopted from the layout before projects, until it stops).
struct Cgroups: Sendable {
    let layout: CgroupLayout
    let base: String   // "<parent>/<member>"

    init(layout: CgroupLayout, parent: String = "lxd-swift", member: String) {
        self.layout = layout
        self.base = parent + "/" + member
    }

    func relative(_ name: String) -> String { base + "/" + name }
    func directories(_ name: String) -> [String] { layout.directories(relative: relative(name)) }
    func delegated(_ name: String) -> String? { layout.delegatedDirectory(relative: relative(name)) }

    /// Creates the container's groups (and missing parents), applies limits, and hands the
    /// groups to the container's root so it can manage its own subtree.
    func create(_ name: String, limits: Limits, owner: IDMap?) throws(RuntimeError) {
        let levels = [base.split(separator: "/").first.map(String.init)!, base, relative(name)]
        if layout.usesV2 {
            let root = layout.unified!
            for level in levels.dropLast() {
                try makeDir(root + "/" + level)
            }
            // Enable the controllers for children at the root and each parent level.
            for dir in [root] + levels.dropLast().map({ root + "/" + $0 }) {
                let available = (try? readString(dir + "/cgroup.controllers")) ?? ""
                let wanted = ["memory", "cpu", "pids", "cpuset"].filter { available.split(separator: " ").contains(Substring($0)) }
                if !wanted.isEmpty {
                    try writeString(dir + "/cgroup.subtree_control", wanted.map { "+" + $0 }.joined(separator: " "))
                }
            }
            try makeDir(root + "/" + relative(name))
        } else {
            // On hybrid hosts the cgroup2 chain too: it carries no controllers, only the
            // container's own tree (see CgroupLayout.delegatedDirectory).
            for dir in Set(layout.v1.values).sorted() + (layout.unified.map { [$0] } ?? []) {
                for level in levels { try makeDir(dir + "/" + level) }
            }
            if let cpuset = layout.v1["cpuset"] {
                // A new v1 cpuset starts empty and refuses tasks: inherit the parent's sets.
                var parent = cpuset
                for level in levels {
                    let dir = cpuset + "/" + level
                    for file in ["cpuset.cpus", "cpuset.mems"] {
                        let mine = (try? readString(dir + "/" + file)) ?? ""
                        if mine.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
                            try writeString(dir + "/" + file, try readString(parent + "/" + file))
                        }
                    }
                    parent = dir
                }
            }
        }
        if let devices = layout.v1["devices"], !layout.usesV2 {
            let dir = devices + "/" + relative(name)
            try writeString(dir + "/devices.deny", CgroupLayout.v1DeviceRules.deny)
            for rule in CgroupLayout.v1DeviceRules.allow { try writeString(dir + "/devices.allow", rule) }
        }
        try apply(name, limits: limits)
        if let owner {
            for dir in directories(name) {
                for entry in ["", "/cgroup.procs", "/tasks", "/cgroup.subtree_control", "/cgroup.threads"] {
                    _ = chown(dir + entry, owner.hostBase, owner.hostBase)   // missing files are fine
                }
            }
        }
    }

    func apply(_ name: String, limits: Limits) throws(RuntimeError) {
        for w in layout.limitWrites(limits) {
            guard let dir = layout.directory(of: w.controller, relative: relative(name)) else { continue }
            try writeString(dir + "/" + w.file, w.value)
        }
    }

    /// Removes the container's groups, with whatever its init made below them (systemd's
    /// slices and scopes), deepest first. A group can stay busy for a moment after its last
    /// task was reaped, and an exec helper (outside the container's pid namespace) can still
    /// be in it: stragglers are killed, EBUSY is retried for up to ~2 s.
    func remove(_ name: String) throws(RuntimeError) {
        reclaimMemory(name)
        for dir in directories(name) {
            try removeTree(dir, depth: 0)
        }
    }

    private func removeTree(_ dir: String, depth: Int) throws(RuntimeError) {
        // The container's root owns its subtree and could nest it without end; the kernel
        // refuses beyond cgroup.max.depth, which a container can lower but not raise.
        if depth > 64 { throw .invalid("cgroup tree under \(dir) is deeper than 64 levels") }
        for child in subdirectories(dir) {
            try removeTree(dir + "/" + child, depth: depth + 1)
        }
        var attempts = 0
        while rmdir(dir) != 0 {
            let e = errno
            if e == ENOENT { return }
            attempts += 1
            if e != EBUSY || attempts > 400 { throw .system("rmdir cgroup", on: dir, e) }
            if attempts % 20 == 1, let procs = try? readString(dir + "/cgroup.procs") {
                for pid in procs.split(separator: "\n").compactMap({ pid_t($0) }) { kill(pid, SIGKILL) }
            }
            usleep(5_000)
        }
    }

    /// The container's own subgroups in its cgroup2 tree (what systemd made inside), relative to
    /// the container's directory, parents first; empty without a delegated directory.
    func subtree(_ name: String, limit: Int = CgroupTree.maxEntries) -> [String] {
        guard let root = delegated(name) else { return [] }
        var found: [String] = []
        var pending = [""]
        while let relative = pending.popLast(), found.count < limit {
            for child in subdirectories(relative.isEmpty ? root : root + "/" + relative).sorted() {
                let path = relative.isEmpty ? child : relative + "/" + child
                found.append(path)
                pending.append(path)
            }
        }
        return CgroupTree.parentsFirst(Array(found.prefix(limit)))
    }

    /// Makes the subgroups `paths` (checked by `CgroupTree.isValid`) in the container's cgroup2
    /// directory, owned by its root as if its systemd had made them: a restore needs the empty
    /// ones too, which CRIU does not recreate and systemd watches.
    func createSubtree(_ name: String, paths: [String], owner: IDMap?) throws(RuntimeError) {
        guard let root = delegated(name) else { return }
        for path in CgroupTree.parentsFirst(paths) where CgroupTree.isValid(path) {
            let dir = root + "/" + path
            try makeDir(dir)
            if let owner {
                for entry in ["", "/cgroup.procs", "/cgroup.subtree_control", "/cgroup.threads"] {
                    _ = chown(dir + entry, owner.hostBase, owner.hostBase)
                }
            }
        }
    }

    /// Names of the child groups of `dir` (none when it is gone).
    private func subdirectories(_ dir: String) -> [String] {
        guard let d = opendir(dir) else { return [] }
        defer { closedir(d) }
        var names: [String] = []
        while let entry = readdir(d) {
            guard entry.pointee.d_type == UInt8(DT_DIR) else { continue }
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// Pages the container touched (the shared image layer's page cache among them) stay charged
    /// to its memory group after rmdir, and the group lingers in the kernel as a dying cgroup until
    /// they are reclaimed: after a few thousand launches and deletes here, 2,700 of them slowed
    /// 1,000-instance launches from 52 to 40 per second. Reclaiming first lets the group go at
    /// once. Best effort: a group still holding a task refuses, and the rmdir below deals with that.
    private func reclaimMemory(_ name: String) {
        guard let dir = layout.directory(of: "memory", relative: relative(name)), access(dir, F_OK) == 0 else { return }
        if layout.usesV2 {
            _ = try? writeString(dir + "/memory.reclaim", "\(Int64(1) << 40)")
        } else {
            _ = try? writeString(dir + "/memory.force_empty", "0")
        }
    }

    /// Live figures; absent files give nil.
    func stats(_ name: String) -> (processes: Int64?, memory: Int64?, peak: Int64?, cpu: Int64?) {
        let rel = relative(name)
        func num(_ controller: String, _ file: String) -> Int64? {
            guard let dir = layout.directory(of: controller, relative: rel) else { return nil }
            return readInt(dir + "/" + file)
        }
        if layout.usesV2 {
            var cpu: Int64?
            if let dir = layout.directory(of: "cpu", relative: rel), let stat = try? readString(dir + "/cpu.stat") {
                for line in stat.split(separator: "\n") where line.hasPrefix("usage_usec ") {
                    cpu = Int64(line.dropFirst(11)).map { $0 * 1000 }
                }
            }
            return (num("pids", "pids.current"), num("memory", "memory.current"), num("memory", "memory.peak"), cpu)
        }
        return (num("pids", "pids.current"), num("memory", "memory.usage_in_bytes"),
                num("memory", "memory.max_usage_in_bytes"), num("cpuacct", "cpuacct.usage"))
    }

    private func makeDir(_ path: String) throws(RuntimeError) {
        if mkdir(path, 0o755) != 0 && errno != EEXIST { throw .system("mkdir cgroup", on: path, errno) }
    }
}

// Small-file I/O with plain syscalls: these run often (state of 100 containers) and must be cheap.

func readString(_ path: String) throws(RuntimeError) -> String {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    if fd < 0 { throw .system("open", on: path, errno) }
    defer { close(fd) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = read(fd, &buf, buf.count)
        if n < 0 { if errno == EINTR { continue }; throw .system("read", on: path, errno) }
        if n == 0 { break }
        out += buf[0..<n]
    }
    return String(decoding: out, as: UTF8.self)
}

func readInt(_ path: String) -> Int64? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    if fd < 0 { return nil }
    defer { close(fd) }
    var buf = [UInt8](repeating: 0, count: 64)
    let n = read(fd, &buf, buf.count)
    guard n > 0 else { return nil }
    return Int64(String(decoding: buf[0..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
}

func writeString(_ path: String, _ value: String) throws(RuntimeError) {
    let fd = open(path, O_WRONLY | O_CLOEXEC)
    if fd < 0 { throw .system("open", on: path, errno) }
    defer { close(fd) }
    let bytes = Array(value.utf8)
    if write(fd, bytes, bytes.count) != bytes.count { throw .system("write '\(value)'", on: path, errno) }
}

/// The shape of a container's own cgroup2 subtree as a checkpoint records it (`cgroup-tree`
/// beside the images): relative paths, one per line. Read back from images that crossed the
/// network, so checked: plain components only.
public enum CgroupTree {
    public static let maxEntries = 4096
    public static let fileName = "cgroup-tree"

    public static func isValid(_ path: String) -> Bool {
        guard !path.isEmpty, path.utf8.count <= 1024 else { return false }
        return path.split(separator: "/", omittingEmptySubsequences: false).allSatisfy { part in
            !part.isEmpty && part != "." && part != ".." && part.utf8.count <= 255
                && part.utf8.allSatisfy { $0 > 0x20 && $0 != 0x7f }
        }
    }

    /// Sorted so that a parent comes before its children.
    public static func parentsFirst(_ paths: [String]) -> [String] {
        paths.sorted { a, b in
            let (ca, cb) = (a.split(separator: "/").count, b.split(separator: "/").count)
            return ca != cb ? ca < cb : a < b
        }
    }

    public static func encode(_ paths: [String]) -> String { paths.joined(separator: "\n") + (paths.isEmpty ? "" : "\n") }

    /// The valid paths of a `cgroup-tree` file's text, at most `maxEntries`.
    public static func decode(_ text: String) -> [String] {
        Array(text.split(separator: "\n").map(String.init).filter(isValid).prefix(maxEntries))
    }
}
