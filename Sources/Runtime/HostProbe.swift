import CRuntime
import Foundation
import Glibc

/// What this host offers containers: capacity for the scheduler, kernel features for the
/// runtime and migration.
public struct HostCapacity: Sendable, Equatable {
    /// cpus this process may run on (its affinity), else the online count; at least 1.
    public let cpuCores: Int
    /// `MemTotal` of /proc/meminfo; 0 when it cannot be read.
    public let memoryBytes: Int64
    /// Size of the filesystem holding the data directory; nil when statvfs fails.
    public let diskBytes: Int64?
    /// The smaller of `kernel.pid_max` and `kernel.threads-max`; nil when neither can be read.
    public let processes: Int64?
}

public struct KernelFeatures: Sendable, Equatable {
    public let release: String
    /// open_tree + mount_setattr(MOUNT_ATTR_IDMAP) exist (5.12+) and overlayfs takes
    /// "lowerdir+" (6.8+), which the idmapped-lower root filesystem needs.
    public let idmappedOverlayLower: Bool
    public let pidfd: Bool
    public let cgroups: CgroupLayout
}

public enum HostProbe {
    /// What this host offers, read from the kernel each call (never throws: a figure that
    /// cannot be read is reported as 0 or nil, and the next probe tries again).
    public static func capacity(dataDir: String) -> HostCapacity {
        let affinity = Int(cr_affinity_cpu_count())
        let cores = affinity > 0 ? affinity : max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        let memory = (try? readString("/proc/meminfo")).flatMap(memTotal) ?? 0
        var fs = statvfs()
        let disk: Int64? = statvfs(dataDir, &fs) == 0 ? Int64(fs.f_blocks) * Int64(fs.f_frsize) : nil
        let limits = ["/proc/sys/kernel/pid_max", "/proc/sys/kernel/threads-max"].compactMap { path in
            (try? readString(path)).flatMap { Int64($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
        return HostCapacity(cpuCores: cores, memoryBytes: memory, diskBytes: disk, processes: limits.min())
    }

    /// `MemTotal` of /proc/meminfo, in bytes.
    static func memTotal(_ meminfo: String) -> Int64? {
        for line in meminfo.split(separator: "\n") where line.hasPrefix("MemTotal:") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 2, let kib = Int64(fields[1]) else { return nil }
            return kib * 1024
        }
        return nil
    }

    public static func cgroupLayout() throws(RuntimeError) -> CgroupLayout {
        try CgroupLayout.parse(mountinfo: readString("/proc/self/mountinfo"))
    }

    public static func kernelFeatures() throws(RuntimeError) -> KernelFeatures {
        var u = utsname()
        uname(&u)
        let release = withUnsafeBytes(of: &u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let parts = release.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
        let version = parts.count == 2 ? (parts[0], parts[1]) : (0, 0)
        // Syscall presence: an invalid call answers EBADF/EINVAL where it exists, ENOSYS otherwise.
        let hasMountSetattr = syscallExists { cr_detached_layer("", -1) }
        let pidfdOK = cr_pidfd_open(getpid()).map { fd in close(fd); return true }
        return KernelFeatures(
            release: release,
            idmappedOverlayLower: hasMountSetattr && version >= (6, 8),
            pidfd: pidfdOK,
            cgroups: try cgroupLayout())
    }

    private static func syscallExists(_ call: () -> Int32) -> Bool {
        let rc = call()
        if rc >= 0 { close(rc); return true }
        return errno != ENOSYS
    }
}

private extension Int32 {
    func map(_ f: (Int32) -> Bool) -> Bool { self >= 0 ? f(self) : false }
}
