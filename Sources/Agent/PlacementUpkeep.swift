import APITypes
import ClusterDB
import Foundation
import Instances
import Logging

/// What this host offers, read from the kernel: usable cpus, memory, the data directory's
/// filesystem, and the process limit.
enum HostCapacity {
    static func probe(dataDir: String) -> ReportedCapacity {
        let cpus = usableCPUs()
        let memory = (try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8)).flatMap(memTotal) ?? 0
        var fs = statvfs()
        let disk: Int64? = statvfs(dataDir, &fs) == 0 ? Int64(fs.f_blocks) * Int64(fs.f_frsize) : nil
        let pidMax = readInteger("/proc/sys/kernel/pid_max")
        let threadsMax = readInteger("/proc/sys/kernel/threads-max")
        let processes = [pidMax, threadsMax].compactMap { $0 }.min()
        return ReportedCapacity(cpu: Double(cpus), memory: memory, disk: disk, processes: processes)
    }

    /// cpus this process may run on (`Cpus_allowed` of /proc/self/status), else the online count.
    static func usableCPUs() -> Int {
        if let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
           let count = allowedCPUs(status), count > 0 {
            return count
        }
        return max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
    }

    /// Bits set in the hex mask of `Cpus_allowed:` ("ff" or "00000000,0000000f").
    static func allowedCPUs(_ status: String) -> Int? {
        for line in status.split(separator: "\n") where line.hasPrefix("Cpus_allowed:") {
            var count = 0
            for ch in line.dropFirst("Cpus_allowed:".count) {
                guard let nibble = ch.hexDigitValue else { continue }
                count += nibble.nonzeroBitCount
            }
            return count
        }
        return nil
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

    static func readInteger(_ path: String) -> Int64? {
        (try? String(contentsOfFile: path, encoding: .utf8)).flatMap { Int64($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }
}

/// Reports this member's capacity into ClusterDB at start and whenever the probe changes.
struct CapacityReporter {
    let instances: InstanceService
    let dataDir: String
    let logger: Logger
    var interval: Duration = .seconds(60)

    func run() async {
        var last: ReportedCapacity?
        while !Task.isCancelled {
            let now = HostCapacity.probe(dataDir: dataDir)
            if now != last {
                do {
                    try await instances.placement.reportCapacity(now)
                    last = now
                    logger.info("capacity reported", metadata: [
                        "cpu": "\(now.cpu)", "memory": "\(now.memory)", "disk": "\(now.disk.map(String.init) ?? "-")",
                        "processes": "\(now.processes.map(String.init) ?? "-")",
                    ])
                } catch {
                    logger.warning("cannot report capacity; retrying", metadata: ["error": "\(error)"])
                    try? await Task.sleep(for: .seconds(2))
                    continue
                }
            }
            try? await Task.sleep(for: interval)
        }
    }
}

/// Removes instance rows placed on this member that no launch ever asked it to create.
struct AbandonedPlacementSweeper {
    let instances: InstanceService
    let logger: Logger
    /// Far above the few seconds between a launch's insert and its request to the owner (which
    /// itself gives up after `MemberClient.acceptTimeout`), so a live launch is never cut.
    var grace: Duration = .seconds(120)
    var interval: Duration = .seconds(60)

    func run() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: interval)
            do {
                let removed = try await instances.placement.removeAbandonedPlacements(grace: grace)
                if !removed.isEmpty {
                    logger.warning("removed instance rows whose launch never asked this member to create them",
                                   metadata: ["instances": "\(removed.prefix(10).joined(separator: ","))", "count": "\(removed.count)"])
                }
            } catch {
                logger.debug("abandoned placement sweep failed; next round retries", metadata: ["error": "\(error)"])
            }
        }
    }
}
