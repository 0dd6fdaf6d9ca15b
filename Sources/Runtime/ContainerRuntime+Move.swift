import Foundation
import Glibc
import InstanceConfig
import Logging

/// What a move between members needs of a container on this host.
extension ContainerRuntime {
    /// The container's overlay upper directory: its changes to the image, which a move copies.
    public func upperDirectory(of instance: InstanceRef) -> String { paths(instance).upper }

    /// The container's own cgroup2 subgroups (relative paths, parents first).
    public func cgroupSubtree(of instance: InstanceRef) -> [String] { cgroups.subtree(hostName(instance)) }

    /// Host pids of every process in the container, from its cgroups (the cgroup2 tree on
    /// hybrid and v2 hosts, with the subgroups systemd makes inside; the pids group on v1).
    public func processes(of instance: InstanceRef) -> [Int32] {
        let leaf = hostName(instance)
        let dirs: [String]
        if let root = cgroups.delegated(leaf) {
            dirs = [root] + cgroups.subtree(leaf, limit: .max).map { root + "/" + $0 }
        } else {
            dirs = cgroupLayout.directory(of: "pids", relative: cgroups.relative(leaf)).map { [$0] } ?? []
        }
        return dirs.flatMap { dir in
            ((try? String(contentsOfFile: dir + "/cgroup.procs", encoding: .utf8)) ?? "").split(separator: "\n").compactMap { Int32($0) }
        }
    }

    /// Continues a container that a checkpoint left stopped (CRIU's `--leave-stopped`: every
    /// task in TASK_STOPPED), as when a move is called off before the target took over.
    /// Returns how many processes were continued.
    /// Also thaws it when a post-copy move had frozen its cgroup.
    @discardableResult
    public func resumeStopped(instance: InstanceRef) throws(RuntimeError) -> Int {
        guard state(instance: instance)?.running == true else { throw .notRunning("\(instance)") }
        try setFrozen(instance: instance, false)
        let pids = processes(of: instance)
        for pid in pids { kill(pid, SIGCONT) }
        logger.info("stopped container continued", metadata: ["instance": "\(instance)", "processes": "\(pids.count)"])
        return pids.count
    }

    /// Freezes or thaws every process of the container through its freezer cgroup (the v1
    /// freezer, else cgroup2's cgroup.freeze): a frozen task runs no instruction whatever signal
    /// it gets, so a post-copy source cannot be resumed by CRIU giving up after the target took
    /// over. Returns once the kernel reports the new state (at most 5 s).
    public func setFrozen(instance: InstanceRef, _ frozen: Bool) throws(RuntimeError) {
        let leaf = cgroups.relative(hostName(instance))
        let file: String, value: String, done: (String) -> Bool
        if !cgroupLayout.usesV2, let dir = cgroupLayout.directory(of: "freezer", relative: leaf) {
            (file, value) = (dir + "/freezer.state", frozen ? "FROZEN" : "THAWED")
            done = { $0.trimmingCharacters(in: .whitespacesAndNewlines) == value }
        } else if let dir = cgroupLayout.delegatedDirectory(relative: leaf) {
            (file, value) = (dir + "/cgroup.freeze", frozen ? "1" : "0")
            let events = dir + "/cgroup.events"
            done = { _ in ((try? String(contentsOfFile: events, encoding: .utf8)) ?? "").contains("frozen \(frozen ? 1 : 0)") }
        } else {
            throw .unsupported("no freezer cgroup on this host: neither a v1 freezer nor cgroup2 is mounted")
        }
        guard FileManager.default.fileExists(atPath: file) else {
            if frozen { throw .notRunning("\(instance)") }
            return
        }
        let fd = open(file, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .system("open", on: file, errno) }
        let written = value.withCString { write(fd, $0, strlen($0)) }
        let code = errno
        close(fd)
        guard written >= 0 else { throw .system("write", on: file, code) }
        let deadline = ContinuousClock.now + .seconds(5)
        while !done((try? String(contentsOfFile: file, encoding: .utf8)) ?? "") {
            guard ContinuousClock.now < deadline else {
                throw .invalid("container \(instance) did not become \(frozen ? "frozen" : "thawed") within 5 s (\(file))")
            }
            usleep(1000)
        }
        logger.debug(frozen ? "container frozen" : "container thawed", metadata: ["instance": "\(instance)"])
    }

    /// Kills every process of a frozen container, then thaws it: the kill is pending before any
    /// of them can run again, so none executes another instruction.
    public func killFrozen(instance: InstanceRef) throws(RuntimeError) {
        for pid in processes(of: instance) { kill(pid, SIGKILL) }
        try setFrozen(instance: instance, false)
    }
}
