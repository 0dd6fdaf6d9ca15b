import CRuntime
import Foundation
import Glibc

/// What this host offers containers: capacity for the scheduler, kernel features for the
/// runtime and migration.
public struct HostCapacity: Sendable, Equatable {
    public let cpuCores: Int
    public let memoryBytes: Int64
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
    /// Cores available to this process (affinity) and total memory (/proc/meminfo).
    public static func capacity() throws(RuntimeError) -> HostCapacity {
        var cores = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        let n = Int(cr_affinity_cpu_count())
        if n > 0 { cores = n }
        let meminfo = try readString("/proc/meminfo")
        guard let line = meminfo.split(separator: "\n").first(where: { $0.hasPrefix("MemTotal:") }),
              let kb = Int64(line.split(separator: " ").dropFirst().first ?? "")
        else { throw .unsupported("cannot read MemTotal from /proc/meminfo") }
        return HostCapacity(cpuCores: cores, memoryBytes: kb * 1024)
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
