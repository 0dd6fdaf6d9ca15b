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
        try thaw(instance: instance)
        let pids = processes(of: instance)
        for pid in pids { kill(pid, SIGCONT) }
        logger.info("stopped container continued", metadata: ["instance": "\(instance)", "processes": "\(pids.count)"])
        return pids.count
    }

    /// Kills every process of a frozen container, then thaws it: the kill is pending before any
    /// of them can run again, so none executes another instruction.
    public func killFrozen(instance: InstanceRef) throws(RuntimeError) {
        for pid in processes(of: instance) { kill(pid, SIGKILL) }
        try thaw(instance: instance)
    }
}
