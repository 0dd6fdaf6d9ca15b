import CRuntime
import Foundation
import Glibc
import InstanceConfig
import Logging
import Synchronization

/// Containers on this host. Every process is created by the single-threaded `lxd-start`
/// helper (this process never forks); exits come from the `Reaper`. Layout:
/// `<dataDir>/containers/<project>_<name>/{config.json, state.json, upper/, work/, rootfs/, console.log}`
/// (`InstanceRef.hostName`; cgroups likewise, see `Cgroups`). A container running across the
/// upgrade from the layout before projects keeps its old names until it stops (`upgradeLayout`).
///
/// Thread-safe: the table of running containers sits behind a mutex that is never held across
/// a system call that can block for long or an `await`, so `state` stays cheap and synchronous.
public final class ContainerRuntime: Sendable {
    public let dataDir: String
    public let memberName: String
    public let helperPath: String
    public let cgroupLayout: CgroupLayout
    let cgroups: Cgroups
    let logger: Logger

    private struct Running {
        let pid: pid_t
        let startTime: UInt64
        let exit: ExitFuture
        let cgroupDirs: [String]
        let idmap: IDMap?
        /// For adopted containers (not our children): signals go through a pidfd, since
        /// the pid could otherwise be reaped by someone else and reused.
        let signalFD: Int32?
        /// Opened once the root is unmounted and the cgroups are gone.
        let cleaned = Event()
    }
    private struct Table {
        var running: [InstanceRef: Running] = [:]
        /// Running containers whose cleanup has been claimed (by stop or the exit watcher).
        var cleaning: Set<InstanceRef> = []
        /// Instances with a start or a temporary root mount in flight.
        var busy: Set<InstanceRef> = []
        /// Containers still under the layout before projects (running across the upgrade,
        /// holding a saved state, or unable to move): their directory and cgroup leaf are the
        /// bare name until `moveIfLegacy` moves them (at a stop, or the next agent start).
        var legacy: [InstanceRef: String] = [:]
        /// Inits that `stop` signalled: their end was asked for.
        var stopRequested: Set<pid_t> = []
        /// Console ptys made for restores in flight, until the restored init is registered
        /// (the master goes to its monitor) or the restore is released.
        var restoreConsoles: [InstanceRef: PseudoTerminal] = [:]
    }
    private let table = Mutex(Table())
    private let exitObserver = Mutex<(@Sendable (InitExit) -> Void)?>(nil)

    /// Called once per container run whose init ended and was cleaned up, asked for or not
    /// (a shutdown or reboot from inside, a crash). Set once, by whoever owns the instances.
    public func observeExits(_ observer: @escaping @Sendable (InitExit) -> Void) {
        exitObserver.withLock { $0 = observer }
    }

    private func record(_ name: InstanceRef) -> Running? { table.withLock { $0.running[name] } }

    private func claimBusy(_ name: InstanceRef) throws(RuntimeError) {
        let ok = table.withLock { t in t.running[name] == nil && t.busy.insert(name).inserted }
        if !ok {
            if record(name) != nil { throw .alreadyRunning("\(name)") }
            throw .invalid("container \(name) has an operation in progress; retry")
        }
    }

    private func releaseBusy(_ name: InstanceRef) { _ = table.withLock { $0.busy.remove(name) } }

    /// False on kernels without idmapped mounts of an overlay lower layer: unprivileged
    /// containers then get a per-container copy of the layer with shifted owners.
    public let idmappedLayers: Bool

    /// `shiftLayers` forces the shifted-copy fallback (tests; kernels the probe misjudges).
    public init(dataDir: String, memberName: String, helperPath: String, logger: Logger,
                shiftLayers: Bool = false) throws(RuntimeError) {
        self.dataDir = dataDir
        self.memberName = memberName
        self.helperPath = helperPath
        self.logger = logger
        guard access(helperPath, X_OK) == 0 else {
            throw .invalid("helper \(helperPath) is missing or not executable (build the lxd-start product)")
        }
        let mountinfo = try readString("/proc/self/mountinfo")
        cgroupLayout = try CgroupLayout.parse(mountinfo: mountinfo)
        if CgroupLayout.favorsDynamicMoves(mountinfo: mountinfo, unified: cgroupLayout.unified) == false {
            logger.notice("cgroup2 is mounted without favordynmods: each container start and exec waits for an RCU grace period (3-20 ms); see docs/clustering.md to remount it",
                          metadata: ["mount": "\(cgroupLayout.unified ?? "")"])
        }
        idmappedLayers = !shiftLayers && ((try? HostProbe.kernelFeatures())?.idmappedOverlayLower ?? false)
        if !idmappedLayers {
            logger.notice("idmapped layers unavailable: unprivileged containers get a shifted copy of their image layer")
        }
        cgroups = Cgroups(layout: cgroupLayout, member: memberName)
        try Reaper.shared.start()
        try Self.makeDir(dataDir + "/containers", mode: 0o711)
        if let blocked = Self.untraversable(dataDir + "/containers") {
            logger.warning("unprivileged containers will not start: \(blocked) is not searchable by other users; run chmod o+x \(blocked)")
        }
    }

    /// The first directory on the way to `path` that other users cannot search: a mapped
    /// container root walks this path to its root filesystem and console.
    static func untraversable(_ path: String) -> String? {
        var current = ""
        for part in path.split(separator: "/") {
            current += "/" + part
            var st = stat()
            if stat(current, &st) == 0 && st.st_mode & S_IXOTH == 0 { return current }
        }
        return nil
    }

    /// The container's name on this host: its directory under `containers/` and its cgroup leaf.
    func hostName(_ instance: InstanceRef) -> String {
        table.withLock { $0.legacy[instance] } ?? instance.hostName
    }

    func paths(_ instance: InstanceRef) -> HelperInvocation.Paths {
        HelperInvocation.Paths(dir: dataDir + "/containers/" + hostName(instance))
    }

    /// The container's directory on this host (`<dataDir>/containers/<project>_<name>`).
    public func directory(of instance: InstanceRef) -> String { paths(instance).dir }

    /// Where a stateful stop keeps the container's dump until the next start: inside its
    /// directory, so it moves with it.
    public func savedStateDirectory(of instance: InstanceRef) -> String { paths(instance).savedState }

    /// The container's directory of cgroup `controller` (nil when that controller is not mounted).
    public func cgroupDirectory(_ controller: String, of instance: InstanceRef) -> String? {
        cgroupLayout.directory(of: controller, relative: cgroups.relative(hostName(instance)))
    }

    // MARK: create / delete

    /// Creates the container's directories (upper and work owned by the mapped root).
    /// Safe to repeat; `delete` undoes it.
    public func create(_ spec: ContainerSpec) throws(RuntimeError) {
        try ContainerSpec.validate(spec.instance)
        var st = stat()
        guard stat(spec.layerRootfs, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else {
            throw .invalid("image layer \(spec.layerRootfs) of \(spec.name) is not a directory (unpack the image first)")
        }
        let p = paths(spec.instance)
        let owner = spec.idmap?.hostBase ?? 0
        try Self.makeDir(p.dir, mode: 0o711)
        try Self.makeDir(p.upper, mode: 0o755, owner: owner)
        try Self.makeDir(p.work, mode: 0o700, owner: owner)
        try Self.makeDir(p.rootfs, mode: 0o755)
        var lower = spec.layerRootfs
        if let map = spec.idmap, !idmappedLayers {
            lower = p.dir + "/lower"
            if access(lower, F_OK) != 0 {
                // Built aside and renamed, so a crash never leaves a half-shifted layer in use.
                let partial = p.dir + "/lower.partial"
                try? FileManager.default.removeItem(atPath: partial)
                try LayerShift.copyShifted(from: spec.layerRootfs, to: partial, map: map)
                if rename(partial, lower) != 0 { throw .system("rename", on: partial, errno) }
            }
        }
        try StoredConfig(layerRootfs: spec.layerRootfs, idmap: spec.idmap, limits: spec.limits,
                         lower: lower, idmappedLower: spec.idmap != nil && idmappedLayers)
            .write(to: p.dir + "/config.json")
    }

    /// Removes everything of a stopped container: mounts, cgroups, directories.
    public func delete(instance name: InstanceRef) throws(RuntimeError) {
        try ContainerSpec.validate(name)
        try claimBusy(name)
        defer { releaseBusy(name) }
        let p = paths(name)
        try Self.unmountAll(under: p.dir)
        try cgroups.remove(hostName(name))
        guard access(p.dir, F_OK) == 0 else { return }
        // Never recurse into a mounted root filesystem: that would delete through the mount.
        if !Mounts.under(p.dir).isEmpty { throw .invalid("mounts remain under \(p.dir); not deleting") }
        do { try FileManager.default.removeItem(atPath: p.dir) } catch {
            throw .invalid("remove \(p.dir): \(error)")
        }
        _ = table.withLock { $0.legacy.removeValue(forKey: name) }
    }

    // MARK: rename

    /// Renames a stopped container: `containers/<project>_<old>` becomes
    /// `containers/<project>_<new>`, with config.json's paths into it rewritten (the layout
    /// upgrade's move, `HostLayout.moveStopped`). Its cgroups are gone while it is stopped and
    /// are made under the new name at the next start. Refuses a running container, one with a
    /// start or a temporary root mount in flight, one holding a stateful stop's dump (CRIU's
    /// images record the old paths, the console's bind mount among them) and a target that
    /// exists. Moving it back is the same call with the names swapped.
    public func renameContainer(from old: InstanceRef, to new: InstanceRef) throws(RuntimeError) {
        try ContainerSpec.validate(old)
        try ContainerSpec.validate(new)
        guard old != new else { throw .invalid("container \(old) already has that name") }
        try claimBusy(old)
        defer { releaseBusy(old) }
        try claimBusy(new)
        defer { releaseBusy(new) }
        let from = paths(old)
        guard access(from.dir, F_OK) == 0 else { throw .notFound("\(old)") }
        for taken in Set([dataDir + "/containers/" + new.hostName, paths(new).dir]) where access(taken, F_OK) == 0 {
            throw .invalid("cannot rename container \(old) to \(new): \(taken) exists already; remove it if it holds nothing you need, then retry")
        }
        if let state = try? StoredState.read(from: from.stateFile), Self.startTime(of: state.pid) == state.pidStartTime {
            throw .alreadyRunning("\(old)")
        }
        if access(from.savedState + "/inventory.img", F_OK) == 0 {
            throw .invalid("container \(old) holds a saved state whose images record its current paths: start it, stop it without --stateful, then rename it")
        }
        // Leftovers of a stop that did not clean up (a crash): nothing may stay mounted or in a cgroup under the old name.
        try Self.unmountAll(under: from.dir)
        if !Mounts.under(from.dir).isEmpty { throw .invalid("mounts remain under \(from.dir); not renaming") }
        try? cgroups.remove(hostName(old))
        unlink(from.stateFile)
        // Moves with the directory and stays until the caller recorded the new name (`finishRename`).
        try RenameMarker(from: old.hostName, to: new.hostName).write(to: from.dir + "/" + RenameMarker.file)
        do {
            try HostLayout.moveStopped(containers: dataDir + "/containers", from: hostName(old), to: new.hostName)
        } catch {
            unlink(from.dir + "/" + RenameMarker.file)
            throw error
        }
        _ = table.withLock { $0.legacy.removeValue(forKey: old) }
        logger.info("container renamed", metadata: ["from": "\(old)", "to": "\(new)"])
    }

    /// Ends a rename once its owner recorded the name the container now has: removes the
    /// marker, and points config.json back into the directory if the agent died between
    /// rewriting it and moving the directory (`HostLayout.repointLower`).
    public func finishRename(of instance: InstanceRef) throws(RuntimeError) {
        let dir = paths(instance).dir
        try HostLayout.repointLower(dir: dir)
        if unlink(dir + "/" + RenameMarker.file) != 0 && errno != ENOENT { throw .system("unlink", on: dir + "/" + RenameMarker.file, errno) }
    }

    /// Renames this host began and did not finish (the agent died before `finishRename`), for
    /// the owner of the instances to settle against its database at agent start.
    public func unfinishedRenames() -> [UnfinishedRename] {
        let root = dataDir + "/containers"
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: root) else { return [] }
        return entries.sorted().compactMap { entry in
            guard let at = InstanceRef(hostName: entry),
                  let marker = try? RenameMarker.read(from: root + "/" + entry + "/" + RenameMarker.file),
                  let from = InstanceRef(hostName: marker.from), let to = InstanceRef(hostName: marker.to) else { return nil }
            return UnfinishedRename(from: from, to: to, at: at)
        }
    }

    // MARK: start / stop

    /// Starts the container; returns once init's execve succeeded.
    public func start(_ spec: ContainerSpec) async throws(RuntimeError) -> RunningContainer {
        let name = spec.instance
        try ContainerSpec.validate(name)
        try claimBusy(name)
        defer { releaseBusy(name) }
        let clock = ContinuousClock()
        let t0 = clock.now
        try create(spec)
        let p = paths(name)
        try Self.unmountAll(under: p.dir)   // a stale root from a crash
        if !spec.files.isEmpty { try await writeStartFiles(spec) }
        try Self.freshConsole(p.console, owner: spec.idmap)
        let leaf = hostName(name)
        do {
            try cgroups.create(leaf, limits: spec.limits, owner: spec.idmap)
        } catch {
            try? cgroups.remove(leaf)
            throw error
        }
        let dirs = cgroups.directories(leaf)
        guard let config = try? StoredConfig.read(from: p.dir + "/config.json") else { throw .notFound("\(name)") }
        let args = HelperInvocation.start(helper: helperPath, spec: spec, paths: p, cgroupDirs: dirs,
                                          cloneInto: cgroups.delegated(leaf),
                                          lower: config.lowerDirectory, idmapLower: config.idmapLower)
        let sequence = Reaper.shared.sequence
        let t1 = clock.now
        let outcome: (HelperInvocation.Report, ExitStatus)
        do {
            outcome = try await runHelper(args, stdio: nil)
        } catch {
            try? Self.unmountAll(under: p.dir)
            try? cgroups.remove(leaf)
            throw error
        }
        let (report, helperExit) = outcome
        guard let pid = report.pid, report.error == nil else {
            try? Self.unmountAll(under: p.dir)
            try? cgroups.remove(leaf)
            var why = report.error ?? "lxd-start \(helperExit) without a report"
            if why.contains("Permission denied"), let map = spec.idmap {
                // Name the directory to fix, when one on the way lacks the search bit for others.
                if let blocked = Self.untraversable(p.dir) {
                    why += " (the container's root, host uid \(map.hostBase), cannot traverse \(blocked) on the way to \(p.dir): run chmod o+x \(blocked))"
                } else {
                    why += " (the container's root, host uid \(map.hostBase), must be able to traverse every directory down to \(p.dir): make them 0711)"
                }
            }
            throw .startFailed("\(name)", why)
        }
        let t2 = clock.now
        // The monitor ends with init; claimed here so it is reaped at once, not as an orphan.
        if let monitor = report.monitor { _ = Reaper.shared.exit(of: monitor, reapedAfter: sequence) }
        let exit = Reaper.shared.exit(of: pid, reapedAfter: sequence)
        guard let startTime = Self.startTime(of: pid), exit.status == nil else {
            _ = await exit.wait(timeout: .seconds(1))
            try? Self.unmountAll(under: p.dir)
            try? cgroups.remove(leaf)
            throw .startFailed("\(name)", "init exited right after it started; see the console log \(p.console)")
        }
        let record = Running(pid: pid, startTime: startTime, exit: exit, cgroupDirs: dirs, idmap: spec.idmap, signalFD: nil)
        table.withLock { $0.running[name] = record }
        try? StoredState(pid: pid, pidStartTime: startTime, cgroupDirs: dirs, idmap: spec.idmap).write(to: p.stateFile)
        watch(name, record)
        logger.info("container started", metadata: [
            "instance": "\(name)", "pid": "\(pid)",
            "prepare": "\(t1 - t0)", "helper": "\(t2 - t1)", "record": "\(clock.now - t2)",
        ])
        return RunningContainer(instance: name, pid: pid, pidStartTime: startTime)
    }

    /// Stops the container. Clean: init's shutdown signal (`HaltSignal`), SIGKILL after
    /// `timeout`. Force: SIGKILL. Returns after init was reaped, the root unmounted and the
    /// cgroups removed.
    public func stop(instance name: InstanceRef, force: Bool, timeout: Duration = .seconds(30)) async throws(RuntimeError) {
        guard let r = record(name) else { throw .notRunning("\(name)") }
        _ = table.withLock { $0.stopRequested.insert(r.pid) }
        if force {
            signal(r, SIGKILL)
        } else {
            let status = try? readString("/proc/\(r.pid)/status")
            for sig in HaltSignal.signals(forInitStatus: status ?? "") { signal(r, sig) }
            if await r.exit.wait(timeout: timeout) == nil {
                logger.notice("container did not stop in time; killing", metadata: ["instance": "\(name)"])
                signal(r, SIGKILL)
            }
        }
        _ = await r.exit.wait()
        try await cleanUp(name, r)
    }

    private func signal(_ r: Running, _ sig: Int32) {
        if let fd = r.signalFD { _ = cr_pidfd_send_signal(fd, sig) } else { kill(r.pid, sig) }
    }

    /// Cleans up when init ends on its own (shutdown inside, crash, OOM).
    private func watch(_ name: InstanceRef, _ r: Running) {
        Task { [weak self] in
            let status = await r.exit.wait()
            guard let self else { return }
            self.logger.info("container init ended", metadata: ["instance": "\(name)", "status": "\(status)"])
            do { try await self.cleanUp(name, r) } catch {
                self.logger.error("cleanup after container exit failed", metadata: ["instance": "\(name)", "error": "\(error)"])
            }
            let requested = self.table.withLock { $0.stopRequested.remove(r.pid) != nil }
            self.exitObserver.withLock { $0 }?(InitExit(instance: name, status: status, requested: requested))
        }
    }

    /// Runs once per container run, whoever asks first (stop or the exit watcher); later
    /// callers wait until it is done, so `stop` returns only when nothing is left.
    private func cleanUp(_ name: InstanceRef, _ r: Running) async throws(RuntimeError) {
        let mine = table.withLock { t in t.running[name]?.pid == r.pid && t.cleaning.insert(name).inserted }
        guard mine else {
            await r.cleaned.wait()
            return
        }
        defer {
            table.withLock { t in
                if t.running[name]?.pid == r.pid { t.running[name] = nil }
                t.cleaning.remove(name)
            }
            if let fd = r.signalFD { close(fd) }
            r.cleaned.open()
        }
        let p = paths(name)
        unlink(p.stateFile)
        unlink(p.consoleSocket)   // its monitor ended with init
        try Self.unmountAll(under: p.dir)
        try cgroups.remove(hostName(name))
        // Adopted under the layout before projects: stopped now, so it moves to its new names.
        moveIfLegacy(name)
    }

    // MARK: state

    /// Live state; nil when the container does not exist. Cheap: a few small cgroup reads.
    public func state(instance name: InstanceRef) -> ContainerState? {
        guard let r = record(name), r.exit.status == nil else {
            return access(paths(name).dir, F_OK) == 0 ? .stopped : nil
        }
        let s = cgroups.stats(hostName(name))
        return ContainerState(running: true, pid: r.pid, processes: s.processes ?? 0, memoryUsage: s.memory ?? 0,
                              memoryPeak: s.peak ?? 0, cpuUsageNanoseconds: s.cpu ?? 0)
    }

    /// The running containers.
    public func runningInstances() -> [InstanceRef] { table.withLock { $0.running.keys.sorted() } }

    /// Applies limits to a running container at once (no-op when stopped: the next start
    /// applies the spec's limits).
    public func updateLimits(instance name: InstanceRef, limits: Limits) throws(RuntimeError) {
        let configPath = paths(name).dir + "/config.json"
        if var config = try? StoredConfig.read(from: configPath) {
            config.limits = limits   // what a restore here recreates
            try config.write(to: configPath)
        }
        guard record(name) != nil else { return }
        try cgroups.apply(hostName(name), limits: limits)
    }

    public func consoleLog(instance name: InstanceRef) throws(RuntimeError) -> [UInt8] {
        let path = paths(name).console
        if access(paths(name).dir, F_OK) != 0 { throw .notFound("\(name)") }
        if access(path, F_OK) != 0 { return [] }
        return Array(try readString(path).utf8)
    }

    // MARK: exec

    /// Runs a command in the running container. Returns once the command was exec'd (or
    /// failed to be: then `failure` says why and the exit code is 127 or 126).
    public func exec(instance name: InstanceRef, command: [String], environment: [String: String] = [:], cwd: String = "/",
                     uid: UInt32 = 0, gid: UInt32 = 0, stdio: ExecStdio) async throws(RuntimeError) -> ExecProcess {
        guard let r = record(name), r.exit.status == nil else { throw .notRunning("\(name)") }
        guard !command.isEmpty else { throw .invalid("exec in \(name): empty command") }
        let terminal: Bool
        let fds: [Int32]
        switch stdio {
        case let .pipes(i, o, e): (terminal, fds) = (false, [i, o, e])
        case let .terminal(t): (terminal, fds) = (true, [t, t, t])
        }
        let args = HelperInvocation.exec(helper: helperPath, initPid: r.pid, userNamespace: r.idmap != nil,
                                         cgroupDirs: r.cgroupDirs, command: command, environment: environment,
                                         cwd: cwd, uid: uid, gid: gid, terminal: terminal)
        let (report, process) = try await spawnHelper(args, stdio: fds)
        guard let commandPid = report.pid else {
            throw .invalid("exec in \(name) failed: \(report.error ?? "lxd-start gave no report")")
        }
        return ExecProcess(pid: process.pid, commandPid: commandPid, failure: report.error, exit: process.exit)
    }

    // MARK: helper plumbing

    /// Runs the helper to its end; returns its report and exit status.
    private func runHelper(_ args: [String], stdio: [Int32]?) async throws(RuntimeError) -> (HelperInvocation.Report, ExitStatus) {
        let (report, process) = try await spawnHelper(args, stdio: stdio)
        return (report, await process.wait())
    }

    /// Spawns the helper and reads its report pipe to EOF (the helper closes it once it has
    /// nothing more to say: at exit for start, after the exec confirmation for exec).
    private func spawnHelper(_ args: [String], stdio: [Int32]?) async throws(RuntimeError) -> (HelperInvocation.Report, SpawnedProcess) {
        var pipe: [Int32] = [-1, -1]
        if cr_pipe2(&pipe, O_CLOEXEC) != 0 { throw .system("pipe", on: "helper report", errno) }
        let null = open("/dev/null", O_RDWR | O_CLOEXEC)
        defer { if null >= 0 { close(null) } }
        let s = stdio ?? [null, null, null]
        let process: SpawnedProcess
        do {
            process = try Spawner.spawn(helperPath, arguments: args, fds: [0: s[0], 1: s[1], 2: s[2], 3: pipe[1]])
        } catch {
            close(pipe[0]); close(pipe[1])
            throw error
        }
        close(pipe[1])
        let bytes = await Self.readToEOF(pipe[0])
        return (HelperInvocation.parseReport(bytes), process)
    }

    /// Blocking read on a short-lived thread, so no cooperative-pool thread waits on a pipe.
    static func readToEOF(_ fd: Int32) async -> [UInt8] {
        await withCheckedContinuation { (c: CheckedContinuation<[UInt8], Never>) in
            let t = Thread {
                var out: [UInt8] = []
                var buf = [UInt8](repeating: 0, count: 4096)
                while true {
                    let n = read(fd, &buf, buf.count)
                    if n < 0 && errno == EINTR { continue }
                    if n <= 0 { break }
                    out += buf[0..<n]
                }
                close(fd)
                c.resume(returning: out)
            }
            t.stackSize = 128 * 1024
            t.start()
        }
    }

    // MARK: adoption after an agent restart

    /// The layout step from before projects, run once at agent start before `adopt`: each
    /// `containers/<name>` becomes `containers/default_<name>`, and its cgroups
    /// `<member>/default_<name>`. A stopped container moves now. A running one cannot move
    /// under its live root mount and cgroups (cgroup v2 refuses to rename a cgroup, and a
    /// moved directory would leave its mounts under the old path), so it keeps its old names
    /// and moves when it next stops (`cleanUp`). A container that cannot move (the new
    /// directory exists) keeps its old names too, so nothing of it is lost, and so does one
    /// holding a stateful stop's dump (see `moveIfLegacy`).
    public func upgradeLayout() -> (moved: [InstanceRef], deferred: [InstanceRef]) {
        let root = dataDir + "/containers"
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: root) else { return ([], []) }
        var moved: [InstanceRef] = [], deferred: [InstanceRef] = []
        for entry in entries.sorted() {
            guard let instance = HostLayout.legacyInstance(entry) else { continue }
            let dir = root + "/" + entry
            table.withLock { $0.legacy[instance] = entry }
            if let state = try? StoredState.read(from: dir + "/state.json"), Self.startTime(of: state.pid) == state.pidStartTime {
                deferred.append(instance)
                continue
            }
            // Stopped, or its init is gone: nothing of it may stay mounted or in a cgroup under the old name.
            unlink(dir + "/state.json")
            try? Self.unmountAll(under: dir)
            try? cgroups.remove(entry)
            if moveIfLegacy(instance) { moved.append(instance) } else { deferred.append(instance) }
        }
        if !moved.isEmpty || !deferred.isEmpty {
            logger.notice("containers moved to the layout with projects (<project>_<name>); running ones move when they stop",
                          metadata: ["moved": "\(moved.count)", "running": "\(deferred.count)"])
        }
        return (moved, deferred)
    }

    /// Moves a stopped container still under the layout before projects to its host name;
    /// true when it is there now. One with a saved state (a stateful stop's dump in `state/`)
    /// stays: the dump records the old paths (the console's bind mount among them), so it is
    /// restored where it was and moves at a later stop without one.
    @discardableResult
    private func moveIfLegacy(_ instance: InstanceRef) -> Bool {
        guard let old = table.withLock({ $0.legacy[instance] }) else { return true }
        if access(HelperInvocation.Paths(dir: dataDir + "/containers/" + old).savedState + "/inventory.img", F_OK) == 0 {
            logger.notice("container keeps its directory from the layout before projects while it holds a saved state",
                          metadata: ["instance": "\(instance)", "directory": "\(old)"])
            return false
        }
        do throws(RuntimeError) {
            try HostLayout.moveStopped(containers: dataDir + "/containers", from: old, to: instance.hostName)
        } catch {
            logger.error("could not move a stopped container to the layout with projects; it stays at its old directory until the next agent start",
                         metadata: ["instance": "\(instance)", "error": "\(error)"])
            return false
        }
        _ = table.withLock { $0.legacy.removeValue(forKey: instance) }
        logger.info("container moved to the layout with projects", metadata: ["instance": "\(instance)", "from": "\(old)", "to": "\(instance.hostName)"])
        return true
    }

    /// Re-attaches to containers still running from before (verified by pid and pid start
    /// time), watching them through pidfds; cleans up entries whose init is gone.
    /// Returns the adopted containers. Run `upgradeLayout` first.
    public func adopt() -> [InstanceRef] {
        let root = dataDir + "/containers"
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: root) else { return [] }
        let legacy = table.withLock { t in Dictionary(t.legacy.map { ($0.value, $0.key) }, uniquingKeysWith: { a, _ in a }) }
        var adopted: [InstanceRef] = []
        for entry in entries.sorted() {
            guard let name = InstanceRef(hostName: entry) ?? legacy[entry] else { continue }
            let skip = table.withLock { t in t.running[name] != nil || t.busy.contains(name) }
            if skip { continue }
            let p = paths(name)
            guard let state = try? StoredState.read(from: p.stateFile) else {
                try? Self.unmountAll(under: p.dir)   // a stopped container has no mounts
                continue
            }
            if Self.startTime(of: state.pid) == state.pidStartTime,
               let watchFD = Optional(cr_pidfd_open(state.pid)), watchFD >= 0 {
                let signalFD = cr_pidfd_open(state.pid)
                // Re-check after opening: the pidfds must refer to the same process.
                if Self.startTime(of: state.pid) == state.pidStartTime, signalFD >= 0 {
                    let exit = Reaper.shared.watch(pid: state.pid, pidfd: watchFD)
                    let r = Running(pid: state.pid, startTime: state.pidStartTime, exit: exit,
                                    cgroupDirs: state.cgroupDirs, idmap: state.idmap, signalFD: signalFD)
                    table.withLock { $0.running[name] = r }
                    watch(name, r)
                    adopted.append(name)
                    continue
                }
                close(watchFD)
                if signalFD >= 0 { close(signalFD) }
            }
            logger.notice("removing stale state of a container that is gone", metadata: ["instance": "\(name)"])
            unlink(p.stateFile)
            try? Self.unmountAll(under: p.dir)
            try? cgroups.remove(hostName(name))
            moveIfLegacy(name)
        }
        return adopted
    }

    // MARK: root filesystem without a running container

    /// Mounts the container's root filesystem at `<dir>/rootfs` without starting it (files of
    /// a stopped container; the target side of a restore). Undo with `unmountRootfs`.
    public func mountRootfs(instance name: InstanceRef) async throws(RuntimeError) {
        let p = paths(name)
        guard let config = try? StoredConfig.read(from: p.dir + "/config.json") else { throw .notFound("\(name)") }
        if Mounts.isMountPoint(p.rootfs) { return }
        let args = HelperInvocation.mount(helper: helperPath, lower: config.lowerDirectory, idmap: config.idmap,
                                          idmapLower: config.idmapLower, paths: p)
        let (report, status) = try await runHelper(args, stdio: nil)
        if let e = report.error { throw .invalid("mount root filesystem of \(name): \(e)") }
        if status.code != 0 { throw .invalid("mount root filesystem of \(name): lxd-start \(status)") }
    }

    public func unmountRootfs(instance name: InstanceRef) throws(RuntimeError) {
        if record(name) != nil { throw .alreadyRunning("\(name)") }
        try Self.unmountAll(under: paths(name).dir)
    }

    /// Runs `body` with a directory fd on the container's root (mounted temporarily when the
    /// container is stopped) and its id map.
    func withRoot<R>(_ name: InstanceRef, _ body: (Int32, IDMap?) throws(RuntimeError) -> R) async throws(RuntimeError) -> R {
        let p = paths(name)
        guard let config = try? StoredConfig.read(from: p.dir + "/config.json") else { throw .notFound("\(name)") }
        // A stopped container is held busy (no start meanwhile) while its root is mounted here.
        var temporary = false
        if record(name) == nil {
            try claimBusy(name)
            if !Mounts.isMountPoint(p.rootfs) {
                do { try await mountRootfs(instance: name) } catch { releaseBusy(name); throw error }
                temporary = true
            } else {
                releaseBusy(name)
            }
        }
        defer {
            if temporary {
                try? Self.unmountAll(under: p.dir)
                releaseBusy(name)
            }
        }
        let fd = open(p.rootfs, cr_O_PATH | O_DIRECTORY | O_CLOEXEC)
        if fd < 0 { throw .system("open", on: p.rootfs, errno) }
        defer { close(fd) }
        return try body(fd, config.idmap)
    }

    // MARK: restore (CRIU) support

    /// What a restore needs from this host, prepared by `mountForRestore`.
    public struct RestorePreparation: Sendable, Equatable {
        /// The mounted root filesystem (`criu restore --root`).
        public let rootfs: String
        /// The container's cgroup directories, created with its stored limits.
        public let cgroupDirectories: [String]
        /// Reaper sequence before the restore: pass it to `registerRestored`.
        public let reapedAfter: UInt64
        /// The console the restored tree gets (its master stays here until `registerRestored`).
        public let consoleSlavePath: String
        public let consoleSlaveFD: Int32
        /// The container's cgroup path below each hierarchy's root ("lxd-swift/<member>/<leaf>")
        /// and the hierarchies it is in (`CgroupLayout.controllerGroups`): a tree dumped on
        /// another member is restored there.
        public let cgroupPath: String
        public let cgroupControllerGroups: [[String]]
    }

    /// Mounts the root filesystem of a created, stopped container and creates its cgroups,
    /// and reserves the name (no start) until `registerRestored` or `releaseRestore`.
    public func mountForRestore(instance name: InstanceRef) async throws(RuntimeError) -> RestorePreparation {
        try claimBusy(name)
        let p = paths(name)
        let leaf = hostName(name)
        do throws(RuntimeError) {
            guard let config = try? StoredConfig.read(from: p.dir + "/config.json") else { throw RuntimeError.notFound("\(name)") }
            try Self.unmountAll(under: p.dir)
            if access(p.console, F_OK) != 0 { try Self.freshConsole(p.console, owner: config.idmap) }
            try cgroups.create(leaf, limits: config.limits ?? Limits(), owner: config.idmap)
            // The subgroups the dump recorded, the empty ones included (CRIU makes only those
            // holding tasks, and systemd fails its restore over a watched one that is missing).
            if let text = try? String(contentsOfFile: p.savedState + "/" + CgroupTree.fileName, encoding: .utf8) {
                try cgroups.createSubtree(leaf, paths: CgroupTree.decode(text), owner: config.idmap)
            }
            let sequence = Reaper.shared.sequence
            try await mountRootfs(instance: name)
            let console = try makeRestoreConsole(name, owner: config.idmap)
            return RestorePreparation(rootfs: p.rootfs, cgroupDirectories: cgroups.directories(leaf), reapedAfter: sequence,
                                      consoleSlavePath: console.path, consoleSlaveFD: console.slave,
                                      cgroupPath: cgroups.relative(leaf), cgroupControllerGroups: cgroupLayout.controllerGroups)
        } catch {
            try? Self.unmountAll(under: p.dir)
            try? cgroups.remove(leaf)
            releaseBusy(name)
            throw error
        }
    }

    /// A restored tree cannot get its console from its own devpts (CRIU mounts that afresh,
    /// empty): it gets a pty of the host's devpts instead, owned by the container's root and
    /// tty group, bound on its /dev/console by CRIU. Documented in docs/images.md.
    private func makeRestoreConsole(_ name: InstanceRef, owner: IDMap?) throws(RuntimeError) -> (path: String, slave: Int32) {
        let pty = try PseudoTerminal.open(rows: 0, columns: 0)
        let path: String
        do throws(RuntimeError) {
            path = try pty.slavePath()
            if fchown(pty.slave, owner?.hostBase ?? 0, owner.flatMap { $0.hostID(5) } ?? 5) != 0 {
                throw .system("chown the console pty", on: path, errno)
            }
        } catch {
            pty.close()
            throw error
        }
        table.withLock { $0.restoreConsoles.updateValue(pty, forKey: name) }?.close()
        return (path, pty.slave)
    }

    /// Hands a restore's console master to a monitor for `pid` (see lxd-start's ConsoleMonitor).
    private func startRestoredConsole(_ name: InstanceRef, pid: pid_t) {
        guard let console = table.withLock({ $0.restoreConsoles.removeValue(forKey: name) }) else { return }
        defer { console.close() }
        let null = open("/dev/null", O_RDWR | O_CLOEXEC)
        defer { if null >= 0 { close(null) } }
        do {
            _ = try Spawner.spawn(helperPath, arguments: HelperInvocation.monitor(helper: helperPath, initPid: pid, paths: paths(name)),
                                  fds: [0: null, 1: null, 2: null, 3: null, HelperInvocation.monitorMasterFD: console.master])
        } catch {
            logger.error("cannot start the console monitor of a restored container; its console is detached",
                         metadata: ["instance": "\(name)", "error": "\(error)"])
        }
    }

    private func dropRestoreConsole(_ name: InstanceRef) {
        table.withLock { $0.restoreConsoles.removeValue(forKey: name) }?.close()
    }

    /// Takes a restored init (our child once criu exited, as we are a subreaper) as the
    /// running container `name`: watched, signalled and cleaned up like a started one.
    public func registerRestored(instance name: InstanceRef, pid: pid_t, reapedAfter: UInt64) throws(RuntimeError) -> RunningContainer {
        let p = paths(name)
        guard table.withLock({ $0.busy.contains(name) }) else {
            throw .invalid("register restored \(name): call mountForRestore first")
        }
        defer { releaseBusy(name); dropRestoreConsole(name) }
        guard let config = try? StoredConfig.read(from: p.dir + "/config.json") else { throw .notFound("\(name)") }
        let exit = Reaper.shared.exit(of: pid, reapedAfter: reapedAfter)
        guard let startTime = Self.startTime(of: pid), exit.status == nil else {
            throw .startFailed("\(name)", "restored init \(pid) is not running")
        }
        let dirs = cgroups.directories(hostName(name))
        let record = Running(pid: pid, startTime: startTime, exit: exit, cgroupDirs: dirs, idmap: config.idmap, signalFD: nil)
        table.withLock { $0.running[name] = record }
        try? StoredState(pid: pid, pidStartTime: startTime, cgroupDirs: dirs, idmap: config.idmap).write(to: p.stateFile)
        startRestoredConsole(name, pid: pid)
        watch(name, record)
        return RunningContainer(instance: name, pid: pid, pidStartTime: startTime)
    }

    /// Undoes `mountForRestore` after a failed restore.
    public func releaseRestore(instance name: InstanceRef) {
        guard table.withLock({ $0.running[name] == nil && $0.busy.contains(name) }) else { return }
        dropRestoreConsole(name)
        try? Self.unmountAll(under: paths(name).dir)
        try? cgroups.remove(hostName(name))
        releaseBusy(name)
    }

    /// Waits until the container's init ended and its cleanup finished (true), or `timeout`
    /// passed (false). True at once when it is not running.
    public func awaitStopped(instance name: InstanceRef, timeout: Duration) async -> Bool {
        guard let r = record(name) else { return true }
        guard await r.exit.wait(timeout: timeout) != nil else { return false }
        await r.cleaned.wait()
        return true
    }

    // MARK: small effects

    static func startTime(of pid: pid_t) -> UInt64? {
        guard let stat = try? readString("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return nil }
        // Fields after "comm)": state is field 3; starttime is field 22.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 19, fields[0] != "Z" else { return nil }
        return UInt64(fields[19])
    }

    static func makeDir(_ path: String, mode: mode_t, owner: UInt32? = nil) throws(RuntimeError) {
        if mkdir(path, mode) != 0 && errno != EEXIST { throw .system("mkdir", on: path, errno) }
        if chmod(path, mode) != 0 { throw .system("chmod", on: path, errno) }
        if let owner, chown(path, owner, owner) != 0 { throw .system("chown", on: path, errno) }
    }

    static func freshConsole(_ path: String, owner: IDMap?) throws(RuntimeError) {
        let fd = open(path, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0o600)
        if fd < 0 { throw .system("create console log", on: path, errno) }
        defer { close(fd) }
        let id = owner?.hostBase ?? 0
        if fchown(fd, id, id) != 0 { throw .system("chown console log", on: path, errno) }
    }

    /// Unmounts every mount at or below `dir`, deepest first.
    static func unmountAll(under dir: String) throws(RuntimeError) {
        for target in Mounts.under(dir).sorted(by: { $0.count > $1.count }) {
            if umount2(target, 0) != 0 {
                let e = errno
                if e == EINVAL || e == ENOENT { continue }
                if umount2(target, Int32(MNT_DETACH)) != 0 { throw .system("umount", on: target, errno) }
            }
        }
    }
}

/// Mount points from /proc/self/mountinfo.
enum Mounts {
    static func all() -> [String] {
        guard let text = try? readString("/proc/self/mountinfo") else { return [] }
        return text.split(separator: "\n").compactMap { line in
            let f = line.split(separator: " ", maxSplits: 5)
            return f.count > 4 ? String(f[4]) : nil
        }
    }

    static func under(_ dir: String) -> [String] {
        all().filter { $0 == dir || $0.hasPrefix(dir + "/") }
    }

    static func isMountPoint(_ path: String) -> Bool { all().contains(path) }
}

/// containers/<name>/config.json: what `create` was given that later steps need.
struct StoredConfig: Codable {
    let layerRootfs: String
    let idmap: IDMap?
    var limits: Limits?
    /// The overlay's lower directory: the image layer, or its shifted copy.
    var lower: String?
    /// Whether the lower is idmapped at mount time (false: privileged, or a shifted copy).
    var idmappedLower: Bool?

    var lowerDirectory: String { lower ?? layerRootfs }
    var idmapLower: Bool { idmappedLower ?? (idmap != nil) }

    func write(to path: String) throws(RuntimeError) { try writeJSON(self, to: path) }
    static func read(from path: String) throws -> StoredConfig {
        try JSONDecoder().decode(StoredConfig.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
    }
}

/// A rename a host began: the container's directory is at `at` (one of the two names) and the
/// database decides which name it keeps.
public struct UnfinishedRename: Sendable, Equatable {
    public let from: InstanceRef
    public let to: InstanceRef
    public let at: InstanceRef

    public init(from: InstanceRef, to: InstanceRef, at: InstanceRef) {
        (self.from, self.to, self.at) = (from, to, at)
    }
}

/// containers/<name>/rename.json: a rename in flight (host names), until `finishRename`.
struct RenameMarker: Codable {
    static let file = "rename.json"
    let from: String
    let to: String

    func write(to path: String) throws(RuntimeError) { try writeJSON(self, to: path) }
    static func read(from path: String) throws -> RenameMarker {
        try JSONDecoder().decode(RenameMarker.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
    }
}

/// containers/<name>/state.json: the per-member runtime facts of a running container.
struct StoredState: Codable {
    let pid: Int32
    let pidStartTime: UInt64
    let cgroupDirs: [String]
    let idmap: IDMap?

    func write(to path: String) throws(RuntimeError) { try writeJSON(self, to: path) }
    static func read(from path: String) throws -> StoredState {
        try JSONDecoder().decode(StoredState.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
    }
}

/// Write to a temporary file and rename, so a crash never leaves half a file.
private func writeJSON<T: Encodable>(_ value: T, to path: String) throws(RuntimeError) {
    do {
        let data = try JSONEncoder().encode(value)
        try data.write(to: URL(fileURLWithPath: path), options: .atomic)
    } catch {
        throw .invalid("write \(path): \(error)")
    }
}
