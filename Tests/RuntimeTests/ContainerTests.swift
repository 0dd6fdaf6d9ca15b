import Foundation
import Glibc
import InstanceConfig
import Testing
@testable import Runtime

/// Real containers on this host. Serialized: they share two cores with the timing figures.
@Suite(.serialized, .enabled(if: Host.canRunContainers, Comment(rawValue: Host.containersMissing ?? "")))
struct ContainerTests {
    @Test func unprivilegedContainerIsIsolatedAndConfined() async throws {
        let f = try Fixture("iso")
        defer { f.tearDown() }
        let rt = f.runtime
        let base: UInt32 = 2_000_000
        let spec = f.spec("c1", base: base, limits: Limits(memoryBytes: 64 << 20, cpuCores: 0.5, processes: 200))
        let c = try await rt.start(spec)

        // Init is PID 1 of its own pid namespace and runs as the mapped root.
        #expect(statusField(c.pid, "NSpid") == "\(c.pid)\t1")
        #expect(statusField(c.pid, "Uid")?.hasPrefix("\(base)\t") == true)
        #expect(squeezed(try await run(rt, "c1", ["cat", "/proc/1/cmdline"]).output.replacingOccurrences(of: "\0", with: " ")) == "/bin/sh /sbin/init")
        #expect(try await run(rt, "c1", ["hostname"]).output == "c1\n")
        #expect(squeezed(try await run(rt, "c1", ["cat", "/proc/self/uid_map"]).output) == "0 \(base) 65536")
        #expect(squeezed(try await run(rt, "c1", ["cat", "/proc/self/gid_map"]).output) == "0 \(base) 65536")

        // Seccomp filter and bounding set on init.
        #expect(statusField(c.pid, "Seccomp") == "2")
        let bnd = UInt64(statusField(c.pid, "CapBnd") ?? "", radix: 16) ?? 0
        for (cap, bit) in [("sys_module", 16), ("sys_rawio", 17), ("sys_time", 25), ("mac_override", 32), ("mac_admin", 33)] {
            #expect(bnd & (1 << UInt64(bit)) == 0, "CapBnd still has \(cap)")
        }
        #expect(bnd & (1 << 21) != 0, "CapBnd lost sys_admin")
        // Session leader (CRIU needs it), no inherited fds, stdin /dev/null, console log bound.
        #expect(hostFile("/proc/\(c.pid)/stat").split(separator: " ")[5] == "\(c.pid)" as Substring)
        // (fd 10 is /sbin/init itself, opened by the shell that runs it.)
        let fds = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(c.pid)/fd")
        for fd in fds {
            let target = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(c.pid)/fd/\(fd)")) ?? "?"
            #expect(["/dev/null", "/dev/console", "/sbin/init"].contains(target), "init holds fd \(fd) -> \(target)")
        }
        #expect(try await run(rt, "c1", ["readlink", "/proc/1/fd/0"]).output == "/dev/null\n")
        #expect(String(decoding: try rt.consoleLog(instance: "c1"), as: UTF8.self).contains("init started"))
        // Mounts: /dev as tmpfs with devpts and ptmx; sysfs; lo up.
        let mounts = try await run(rt, "c1", ["cat", "/proc/self/mounts"]).output
        for m in ["proc /proc proc", "sysfs /sys sysfs", "tmpfs /dev tmpfs", "devpts /dev/pts devpts", "tmpfs /dev/shm tmpfs", "mqueue /dev/mqueue mqueue"] {
            #expect(mounts.contains(m), "missing mount \(m)")
        }
        #expect(try await run(rt, "c1", ["readlink", "/dev/ptmx"]).output == "pts/ptmx\n")
        #expect(try await run(rt, "c1", ["cat", "/sys/class/net/lo/operstate"]).output != "down\n")
        // Only its own processes are visible.
        let ps = try await run(rt, "c1", ["ps", "-o", "pid"]).output
        #expect(ps.split(separator: "\n").count <= 5, "ps shows \(ps)")
        // Host devices cannot be created; denied syscalls answer EPERM through the filter.
        #expect(try await run(rt, "c1", ["sh", "-c", "mknod /tmp/sda b 8 0"]).code != 0)

        // Cgroup limits, live update, and figures.
        let memDir = rt.cgroupLayout.directory(of: "memory", relative: "lxd-swift/\(f.member)/default_c1")!
        let limitFile = memDir + (rt.cgroupLayout.usesV2 ? "/memory.max" : "/memory.limit_in_bytes")
        #expect(hostFile(limitFile) == "\(64 << 20)\n")
        try rt.updateLimits(instance: "c1", limits: Limits(memoryBytes: 128 << 20, cpuCores: 1, processes: 300))
        #expect(hostFile(limitFile) == "\(128 << 20)\n")
        let st = try #require(rt.state(instance: "c1"))
        #expect(st.running && st.pid == c.pid)
        #expect(st.processes >= 2)
        #expect(st.memoryUsage > 0 && st.memoryPeak >= st.memoryUsage)
        #expect(st.cpuUsageNanoseconds > 0)
        // state.json holds what adoption needs.
        #expect(hostFile(f.dataDir + "/containers/default_c1/state.json").contains("\"pidStartTime\":\(c.pidStartTime)"))

        // Clean stop: init traps SIGPWR/SIGTERM and exits; then nothing is left. Its console
        // line shows it stopped by itself rather than by the SIGKILL after the timeout; the
        // timeout only bounds a hang (stop figures: scripts/bench/lifecycle).
        try await rt.stop(instance: "c1", force: false, timeout: .seconds(30))
        #expect(String(decoding: try rt.consoleLog(instance: "c1"), as: UTF8.self).contains("init stopping"))
        try expectNothingLeft(f, "c1", pid: c.pid)
        #expect(rt.state(instance: "c1") == .stopped)
        try rt.delete(instance: "c1")
        #expect(access(f.dataDir + "/containers/default_c1", F_OK) != 0)
        #expect(rt.state(instance: "c1") == nil)
    }

    @Test func execExitCodesStdinAndUsers() async throws {
        let f = try Fixture("exec")
        defer { f.tearDown() }
        let rt = f.runtime
        _ = try await rt.start(f.spec("e1", base: 2_100_000))
        #expect(try await run(rt, "e1", ["sh", "-c", "exit 7"]).code == 7)
        #expect(try await run(rt, "e1", ["true"]).code == 0)
        let echo = try await run(rt, "e1", ["cat"], input: "hello through the container\n")
        #expect(echo.code == 0 && echo.output == "hello through the container\n")
        let missing = try await run(rt, "e1", ["no-such-command"])
        #expect(missing.code == 127)
        #expect(missing.failure == "command not found: no-such-command")
        let user = try await run(rt, "e1", ["id"], uid: 1000, gid: 1000)
        #expect(user.output.hasPrefix("uid=1000 gid=1000"))
        // Killed commands report 128+signal.
        #expect(try await run(rt, "e1", ["sh", "-c", "kill -9 $$"]).code == 137)
        // The exec'd process is confined like init.
        let status = try await run(rt, "e1", ["grep", "-E", "^(Seccomp|NoNewPrivs):", "/proc/self/status"]).output
        #expect(squeezed(status) == "NoNewPrivs: 0 Seccomp: 2")
        try await rt.stop(instance: "e1", force: true)
        await #expect(throws: RuntimeError.notRunning("e1")) { _ = try await rt.exec(instance: "e1", command: ["true"], stdio: .pipes(stdin: 0, stdout: 1, stderr: 2)) }
        try rt.delete(instance: "e1")
    }

    @Test func filesResolveInsideTheContainer() async throws {
        let f = try Fixture("files")
        defer { f.tearDown() }
        let rt = f.runtime
        let base: UInt32 = 2_200_000
        _ = try await rt.start(f.spec("f1", base: base))
        try await rt.writeFile(instance: "f1", path: "/root/note", content: Array("pushed\n".utf8), mode: 0o640, uid: 1000, gid: 1001)
        #expect(try await run(rt, "f1", ["stat", "-c", "%u %g %a", "/root/note"]).output == "1000 1001 640\n")
        var hostStat = stat()
        #expect(stat(f.dataDir + "/containers/default_f1/upper/root/note", &hostStat) == 0)
        #expect(hostStat.st_uid == base + 1000)
        _ = try await run(rt, "f1", ["sh", "-c", "echo inside > /root/made; ln -s /../../../../../etc/hostname /escape"])
        let made = try await rt.readFile(instance: "f1", path: "/root/made")
        #expect(made.content == Array("inside\n".utf8) && made.uid == 0 && made.gid == 0)
        #expect(try await rt.readFile(instance: "f1", path: "/bin").entries?.contains("busybox") == true)
        // The symlink resolves inside the container (which has no /etc/hostname), never to the host's.
        await #expect(throws: RuntimeError.self) { _ = try await rt.readFile(instance: "f1", path: "/escape") }
        await #expect(throws: RuntimeError.self) { _ = try await rt.readFile(instance: "f1", path: "/../../../../etc/passwd") }

        // Stopped: the root is mounted just for the operation.
        try await rt.stop(instance: "f1", force: true)
        let again = try await rt.readFile(instance: "f1", path: "/root/note")
        #expect(again.content == Array("pushed\n".utf8) && again.uid == 1000 && again.mode == 0o640)
        let image = try await rt.readFile(instance: "f1", path: "/sbin/init")
        #expect(image.uid == 0 && image.mode == 0o755)
        try await rt.writeFile(instance: "f1", path: "/root/offline", content: [1, 2, 3], uid: 5, gid: 5)
        #expect(Mounts.under(f.dataDir + "/containers/default_f1").isEmpty)
        _ = try await rt.start(f.spec("f1", base: base))
        #expect(try await run(rt, "f1", ["stat", "-c", "%u %s", "/root/offline"]).output == "5 3\n")
        try await rt.stop(instance: "f1", force: true)
        try rt.delete(instance: "f1")
    }

    @Test func twoIdmapsAndPrivileged() async throws {
        let f = try Fixture("maps")
        defer { f.tearDown() }
        let rt = f.runtime
        let a = try await rt.start(f.spec("a", base: 2_300_000))
        let b = try await rt.start(f.spec("b", base: 2_400_000))
        let p = try await rt.start(f.spec("p", base: nil))
        #expect(statusField(a.pid, "Uid")?.hasPrefix("2300000\t") == true)
        #expect(statusField(b.pid, "Uid")?.hasPrefix("2400000\t") == true)
        #expect(squeezed(try await run(rt, "a", ["cat", "/proc/self/uid_map"]).output) == "0 2300000 65536")
        #expect(squeezed(try await run(rt, "b", ["cat", "/proc/self/uid_map"]).output) == "0 2400000 65536")
        // Privileged: host ids, but still its own namespaces and the same confinement.
        #expect(squeezed(try await run(rt, "p", ["cat", "/proc/self/uid_map"]).output) == "0 0 4294967295")
        #expect(statusField(p.pid, "NSpid") == "\(p.pid)\t1")
        #expect(statusField(p.pid, "Seccomp") == "2")
        #expect(try await run(rt, "p", ["hostname"]).output == "p\n")
        #expect(try await run(rt, "p", ["sh", "-c", "echo 1 > /proc/sys/kernel/ns_last_pid"]).code != 0)
        // Privileged root may create device nodes (in /dev: the root filesystem is nodev), but
        // the devices cgroup keeps host devices (here /dev/mem, 1:1) closed; allowed ones work.
        let dev = try await run(rt, "p", ["sh", "-c", "mknod /dev/mem c 1 1 && head -c 1 /dev/mem; echo rc=$?; head -c 1 /dev/zero | wc -c"])
        if rt.cgroupLayout.v1["devices"] != nil {
            #expect(dev.output.contains("Operation not permitted") && dev.output.contains("rc=1") && dev.output.hasSuffix("1\n"), "\(dev.output)")
        }
        // Files written in "a" are owned by a's ids on the host, not b's.
        _ = try await run(rt, "a", ["touch", "/root/mine"])
        var st = stat()
        #expect(stat(f.dataDir + "/containers/default_a/upper/root/mine", &st) == 0 && st.st_uid == 2_300_000)
        for n: InstanceRef in ["a", "b", "p"] { try await rt.stop(instance: n, force: true) }
        try expectNothingLeft(f, "a", pid: a.pid)
        try expectNothingLeft(f, "p", pid: p.pid)
        for n: InstanceRef in ["a", "b", "p"] { try rt.delete(instance: n) }
    }

    @Test func adoptionAfterRestartAndStaleState() async throws {
        let f = try Fixture("adopt")
        defer { f.tearDown() }
        let c = try await f.runtime.start(f.spec("d1", base: 2_500_000))
        // A second runtime on the same directory stands for the restarted agent.
        let restarted = try ContainerRuntime(dataDir: f.dataDir, memberName: f.member, helperPath: Host.helperPath!, logger: .init(label: "t"))
        // A stale entry: a state file whose process is gone.
        try f.runtime.create(f.spec("gone", base: 2_600_000))
        try StoredState(pid: c.pid, pidStartTime: c.pidStartTime + 1, cgroupDirs: [], idmap: nil)
            .write(to: f.dataDir + "/containers/default_gone/state.json")
        #expect(restarted.adopt() == ["d1"])
        #expect(access(f.dataDir + "/containers/default_gone/state.json", F_OK) != 0)
        #expect(restarted.state(instance: "d1")?.pid == c.pid)
        #expect(try await run(restarted, "d1", ["hostname"]).output == "d1\n")
        try await restarted.stop(instance: "d1", force: true)
        try expectNothingLeft(f, "d1", pid: c.pid)
        try restarted.delete(instance: "d1")
        try restarted.delete(instance: "gone")
    }

    /// An agent restarted on the layout before projects: a stopped container moves at once, a
    /// running one is adopted at its old directory and cgroups and moves when it stops.
    @Test func upgradeFromTheLayoutBeforeProjects() async throws {
        let f = try Fixture("legacy")
        defer { f.tearDown() }
        let containers = f.dataDir + "/containers"
        let c: RunningContainer
        do {
            // The old agent: a runtime that runs "d1" under the old names. A live state.json makes
            // upgradeLayout leave the directory where it is, so the start then uses the old names.
            let old = try ContainerRuntime(dataDir: f.dataDir, memberName: f.member, helperPath: Host.helperPath!, logger: .init(label: "t"))
            try FileManager.default.createDirectory(atPath: containers + "/d1", withIntermediateDirectories: true)
            let me = getpid()
            try StoredState(pid: me, pidStartTime: ContainerRuntime.startTime(of: me)!, cgroupDirs: [], idmap: nil)
                .write(to: containers + "/d1/state.json")
            #expect(old.upgradeLayout().deferred == ["d1"])
            unlink(containers + "/d1/state.json")
            c = try await old.start(f.spec("d1", base: 3_100_000))
            #expect(access(containers + "/d1/state.json", F_OK) == 0)
            #expect(old.cgroupDirectory("pids", of: "d1")?.hasSuffix("/\(f.member)/d1") == true)
            // A stopped container of the old layout: created, then moved back to its old name.
            try old.create(f.spec("s1", base: 3_200_000))
            #expect(rename(containers + "/default_s1", containers + "/s1") == 0)
            // One stopped with a saved state: the dump names the old paths, so it stays there.
            try old.create(f.spec("t1", base: 3_300_000))
            #expect(rename(containers + "/default_t1", containers + "/t1") == 0)
            try FileManager.default.createDirectory(atPath: containers + "/t1/state", withIntermediateDirectories: true)
            #expect(FileManager.default.createFile(atPath: containers + "/t1/state/inventory.img", contents: Data()))
        }   // the old runtime goes: its exit watcher must not clean up what the new one adopts

        let restarted = try ContainerRuntime(dataDir: f.dataDir, memberName: f.member, helperPath: Host.helperPath!, logger: .init(label: "t"))
        let step = restarted.upgradeLayout()
        #expect(step.moved == ["s1"] && step.deferred == ["d1", "t1"])
        #expect(restarted.savedStateDirectory(of: "t1") == containers + "/t1/state")
        #expect(access(containers + "/default_s1/config.json", F_OK) == 0 && access(containers + "/s1", F_OK) != 0)
        #expect(restarted.adopt() == ["d1"])
        #expect(restarted.state(instance: "d1")?.pid == c.pid)
        #expect(restarted.directory(of: "d1") == containers + "/d1")
        #expect(try await run(restarted, "d1", ["hostname"]).output == "d1\n")

        try await restarted.stop(instance: "d1", force: true)
        try expectNothingLeft(f, "d1", pid: c.pid)
        for dir in restarted.cgroupLayout.directories(relative: "lxd-swift/\(f.member)/d1") {
            #expect(access(dir, F_OK) != 0, "old cgroup \(dir) left behind")
        }
        #expect(access(containers + "/d1", F_OK) != 0 && access(containers + "/default_d1/config.json", F_OK) == 0)
        #expect(restarted.directory(of: "d1") == containers + "/default_d1")

        // Both start again under the new names, with their files.
        for name: InstanceRef in ["d1", "s1"] {
            let again = try await restarted.start(f.spec(name.name, base: name == "d1" ? 3_100_000 : 3_200_000))
            #expect(restarted.cgroupDirectory("pids", of: name)?.hasSuffix("/\(f.member)/\(name.hostName)") == true)
            try await restarted.stop(instance: name, force: true)
            try expectNothingLeft(f, name, pid: again.pid)
            try restarted.delete(instance: name)
        }
        try restarted.delete(instance: "t1")
        #expect(access(containers + "/t1", F_OK) != 0)
    }

    /// A rename moves a stopped container's directory, its shifted layer path in config.json
    /// with it, and refuses what it cannot carry: a running container, a saved state, a taken name.
    @Test func aStoppedContainerIsRenamedWithItsFiles() async throws {
        let f = try Fixture("rename", shiftLayers: true)
        defer { f.tearDown() }
        let containers = f.dataDir + "/containers"
        let c = try await f.runtime.start(f.spec("r1", base: 3_400_000))
        #expect(try await run(f.runtime, "r1", ["sh", "-c", "echo kept > /root/note"]).code == 0)
        #expect(throws: RuntimeError.alreadyRunning("r1")) { try f.runtime.renameContainer(from: "r1", to: "r2") }
        try await f.runtime.stop(instance: "r1", force: true)
        try expectNothingLeft(f, "r1", pid: c.pid)

        try FileManager.default.createDirectory(atPath: containers + "/default_taken", withIntermediateDirectories: true)
        #expect(throws: RuntimeError.self) { try f.runtime.renameContainer(from: "r1", to: "taken") }
        try FileManager.default.createDirectory(atPath: containers + "/default_r1/state", withIntermediateDirectories: true)
        #expect(FileManager.default.createFile(atPath: containers + "/default_r1/state/inventory.img", contents: Data()))
        #expect { try f.runtime.renameContainer(from: "r1", to: "r2") } throws: { "\($0)".contains("saved state") }
        try FileManager.default.removeItem(atPath: containers + "/default_r1/state")
        #expect(access(containers + "/default_r1/config.json", F_OK) == 0, "a refused rename leaves the directory")

        try f.runtime.renameContainer(from: "r1", to: "r2")
        #expect(f.runtime.unfinishedRenames() == [UnfinishedRename(from: "r1", to: "r2", at: "r2")], "unfinished until the owner says so")
        try f.runtime.finishRename(of: "r2")
        #expect(f.runtime.unfinishedRenames().isEmpty)
        #expect(access(containers + "/default_r1", F_OK) != 0)
        #expect(try StoredConfig.read(from: containers + "/default_r2/config.json").lower == containers + "/default_r2/lower")
        #expect(throws: RuntimeError.notFound("r1")) { try f.runtime.renameContainer(from: "r1", to: "r3") }

        let again = try await f.runtime.start(f.spec("r2", base: 3_400_000))
        #expect(try await run(f.runtime, "r2", ["cat", "/root/note"]).output == "kept\n")
        #expect(try await run(f.runtime, "r2", ["hostname"]).output == "r2\n")
        #expect(f.runtime.cgroupDirectory("pids", of: "r2")?.hasSuffix("/\(f.member)/default_r2") == true)
        try await f.runtime.stop(instance: "r2", force: true)
        try expectNothingLeft(f, "r2", pid: again.pid)
        try f.runtime.delete(instance: "r2")
    }

    @Test func startFailureLeavesNothingBehind() async throws {
        let f = try Fixture("fail")
        defer { f.tearDown() }
        var spec = f.spec("bad", base: 2_700_000)
        spec.initCommand = ["/sbin/missing-init"]
        await #expect { _ = try await f.runtime.start(spec) } throws: { error in
            "\(error)".contains("command not found: /sbin/missing-init")
        }
        #expect(Mounts.under(f.dataDir + "/containers/default_bad").isEmpty)
        for dir in f.runtime.cgroupLayout.directories(relative: "lxd-swift/\(f.member)/default_bad") {
            #expect(access(dir, F_OK) != 0, "cgroup \(dir) left behind")
        }
        try f.runtime.delete(instance: "bad")
    }

    @Test func timingSummary() async throws {
        let f = try Fixture("timing", logLevel: ProcessInfo.processInfo.environment["RUNTIME_TIMING_LOG"] == nil ? .warning : .info)
        defer { f.tearDown() }
        let rt = f.runtime
        let clock = ContinuousClock()
        var starts: [Double] = [], stops: [Double] = [], execs: [Double] = []
        for i in 0..<7 {
            let spec = f.spec("t\(i)", base: 2_800_000)
            var started: RunningContainer?
            starts.append(milliseconds(try await clock.measure { started = try await rt.start(spec) }))
            execs.append(milliseconds(try await clock.measure { _ = try await run(rt, spec.instance, ["true"]) }))
            stops.append(milliseconds(try await clock.measure { try await rt.stop(instance: spec.instance, force: true) }))
            try expectNothingLeft(f, spec.instance, pid: started!.pid)
            try rt.delete(instance: spec.instance)
        }
        // state() over many running containers.
        let n = 100
        for i in 0..<n { _ = try await rt.start(f.spec("s\(i)", base: 2_900_000)) }
        var perList: [Double] = []
        for _ in 0..<5 {
            perList.append(milliseconds(await clock.measure {
                for i in 0..<n { _ = rt.state(instance: "s\(i)") }
            }))
        }
        for i in 0..<n { try await rt.stop(instance: "s\(i)", force: true); try rt.delete(instance: "s\(i)") }
        func ms(_ x: Double) -> String { String(format: "%.1f", x) }
        let line = "RuntimeTests timing: start median \(ms(median(starts))) ms, stop --force median \(ms(median(stops))) ms, "
            + "exec `true` median \(ms(median(execs))) ms, state() of \(n) running containers median \(String(format: "%.2f", median(perList))) ms total "
            + "[runs: start \(starts.map(ms).joined(separator: ",")); stop \(stops.map(ms).joined(separator: ","))]"
        // Figures only: a loaded machine must not fail a test on speed. scripts/bench/lifecycle
        // measures the same through the API (stop --force, list with 100 running).
        print(line)
    }
}

/// After stop: no mount under the container directory, no cgroup directory, no process.
func expectNothingLeft(_ f: Fixture, _ name: InstanceRef, pid: pid_t, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let dir = f.dataDir + "/containers/" + name.hostName
    #expect(Mounts.under(dir).isEmpty, "mounts left under \(dir)", sourceLocation: sourceLocation)
    for cg in f.runtime.cgroupLayout.directories(relative: "lxd-swift/\(f.member)/\(name.hostName)") {
        #expect(access(cg, F_OK) != 0, "cgroup \(cg) left behind", sourceLocation: sourceLocation)
    }
    #expect(kill(pid, 0) != 0 && errno == ESRCH, "process \(pid) still exists", sourceLocation: sourceLocation)
    #expect(access(dir + "/state.json", F_OK) != 0, "state.json left behind", sourceLocation: sourceLocation)
}
