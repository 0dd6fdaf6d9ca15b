import Foundation

/// What in a running container CRIU would refuse, found before anything is frozen, so that a
/// stateful stop or a move fails at once with the process, its unit and the fix named, and the
/// container keeps running untouched. Pure: `problems` decides from what `scan` read.
///
/// CRIU 4.2 checkpoints nested mount and network namespaces only. systemd's sandboxing makes
/// others: ProtectHostname= a uts namespace (Debian 12's systemd-logind has it), PrivateIPC= an
/// ipc one, PrivateUsers= a user one.
public enum CheckpointPreflight {
    public struct Process: Sendable, Equatable {
        public var pid: Int32
        public var command: String
        /// The systemd unit, from its cgroup2 path (nil outside systemd's units).
        public var unit: String?
        /// Namespace kind -> its link text (e.g. "uts" -> "uts:[4026532246]").
        public var namespaces: [String: String]

        public init(pid: Int32, command: String, unit: String?, namespaces: [String: String]) {
            self.pid = pid
            self.command = command
            self.unit = unit
            self.namespaces = namespaces
        }
    }

    /// Namespaces that must be init's own, with the unit setting that makes a new one.
    static let mustShare: [(kind: String, setting: String?)] = [
        ("uts", "ProtectHostname"), ("ipc", "PrivateIPC"), ("user", "PrivateUsers"),
        ("pid", "PrivatePIDs"), ("cgroup", nil), ("time", nil),
    ]

    /// One sentence per process that cannot be checkpointed; empty when all can.
    public static func problems(initProcess: Process, processes: [Process]) -> [String] {
        processes.compactMap { p in
            let nested = mustShare.filter { k in
                guard let mine = p.namespaces[k.kind], let its = initProcess.namespaces[k.kind] else { return false }
                return mine != its
            }
            guard !nested.isEmpty else { return nil }
            let kinds = nested.map(\.kind).joined(separator: ", ")
            let owner = p.unit.map { "unit \($0)" } ?? "no systemd unit"
            var fix = "end that process before the checkpoint"
            let settings = nested.compactMap(\.setting)
            if let unit = p.unit, !settings.isEmpty {
                fix = "run `systemctl edit \(unit)` in the container, add [Service] "
                    + settings.map { "\($0)=no" }.joined(separator: " ") + ", and restart the unit"
            }
            return "process \(p.pid) (\(p.command), \(owner)) has its own \(kinds) namespace, which CRIU cannot checkpoint "
                + "(only nested mount and network namespaces): \(fix)"
        }
    }

    /// The unit of a process from /proc/PID/cgroup text: the last `.service` or `.scope` in its
    /// cgroup2 path.
    static func unit(cgroupFile: String) -> String? {
        guard let line = cgroupFile.split(separator: "\n").first(where: { $0.hasPrefix("0::") }) else { return nil }
        return line.dropFirst(3).split(separator: "/").last { $0.hasSuffix(".service") || $0.hasSuffix(".scope") }.map(String.init)
    }

    /// Reads init and its descendants from /proc (processes that end meanwhile are skipped).
    public static func scan(initPid: Int32, procRoot: String = "/proc") -> (initProcess: Process, processes: [Process])? {
        guard let initProcess = read(initPid, procRoot: procRoot) else { return nil }
        var children: [Int32: [Int32]] = [:]
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: procRoot)) ?? [] {
            guard let pid = Int32(entry), let stat = try? String(contentsOfFile: "\(procRoot)/\(entry)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { continue }
            // After "comm)": state, then ppid.
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 1, let ppid = Int32(fields[1]) { children[ppid, default: []].append(pid) }
        }
        var found: [Process] = []
        var queue = children[initPid] ?? []
        while let pid = queue.popLast(), found.count < 100_000 {
            if let p = read(pid, procRoot: procRoot) { found.append(p) }
            queue += children[pid] ?? []
        }
        return (initProcess, found)
    }

    private static func read(_ pid: Int32, procRoot: String) -> Process? {
        let dir = "\(procRoot)/\(pid)"
        guard let comm = try? String(contentsOfFile: dir + "/comm", encoding: .utf8) else { return nil }
        var namespaces: [String: String] = [:]
        for kind in mustShare.map(\.kind) {
            if let link = try? FileManager.default.destinationOfSymbolicLink(atPath: "\(dir)/ns/\(kind)") { namespaces[kind] = link }
        }
        let cgroup = (try? String(contentsOfFile: dir + "/cgroup", encoding: .utf8)) ?? ""
        return Process(pid: pid, command: comm.trimmingCharacters(in: .whitespacesAndNewlines), unit: unit(cgroupFile: cgroup),
                       namespaces: namespaces)
    }
}

/// A checkpoint refused before the freeze; the container keeps running.
public struct CheckpointRefused: Error, CustomStringConvertible {
    public let reasons: [String]
    public var description: String { "cannot checkpoint: " + reasons.joined(separator: "; ") }
}
