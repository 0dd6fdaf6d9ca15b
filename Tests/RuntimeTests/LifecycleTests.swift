import Foundation
import Glibc
import Testing
@testable import Runtime

@Suite(.serialized, .enabled(if: Host.canRunContainers, Comment(rawValue: Host.containersMissing ?? "")))
struct LifecycleTests {
    @Test func stopKillsAnInitThatIgnoresSignalsAfterTheTimeout() async throws {
        let f = try Fixture("deaf")
        defer { f.tearDown() }
        var spec = f.spec("deaf", base: 3_000_000)
        // Signals from the host reach a pid namespace's init only if it handles them.
        spec.initCommand = ["/bin/sh", "-c", "trap '' TERM PWR; while true; do sleep 1; done"]
        let c = try await f.runtime.start(spec)
        let clock = ContinuousClock()
        let took = try await clock.measure { try await f.runtime.stop(instance: "deaf", force: false, timeout: .milliseconds(300)) }
        // It waited the timeout out; the upper bound only catches a hang.
        #expect(took >= .milliseconds(300) && took < .seconds(30), "stop took \(took)")
        try expectNothingLeft(f, "deaf", pid: c.pid)
        try f.runtime.delete(instance: "deaf")
    }

    @Test func initEndingOnItsOwnIsCleanedUp() async throws {
        let f = try Fixture("selfexit")
        defer { f.tearDown() }
        let c = try await f.runtime.start(f.spec("s1", base: 3_100_000))
        _ = try await run(f.runtime, "s1", ["kill", "-TERM", "1"])
        // The exit watcher cleans up without anyone calling stop; wait for it (bounded: 30 s).
        for _ in 0..<3000 where f.runtime.state(instance: "s1")?.running == true || !Mounts.under(f.dataDir + "/containers/default_s1").isEmpty {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(f.runtime.state(instance: "s1") == .stopped)
        try await Task.sleep(for: .milliseconds(50))
        try expectNothingLeft(f, "s1", pid: c.pid)
        await #expect(throws: RuntimeError.notRunning("s1")) { try await f.runtime.stop(instance: "s1", force: true) }
        try f.runtime.delete(instance: "s1")
    }

    @Test func execWithTerminal() async throws {
        let f = try Fixture("pty")
        defer { f.tearDown() }
        _ = try await f.runtime.start(f.spec("t1", base: 3_200_000))
        let pty = try PseudoTerminal.open(rows: 33, columns: 101)
        let master = pty.master, slave = pty.slave
        defer { close(master) }
        let p = try await f.runtime.exec(instance: "t1", command: ["sh", "-c", "test -t 0 && test -t 1 && echo tty-ok"],
                                         stdio: .terminal(slave))
        close(slave)
        let code = await p.wait()
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = read(master, &buf, buf.count)
        let out = n > 0 ? String(decoding: buf[0..<n], as: UTF8.self) : ""
        #expect(code == 0)
        #expect(out.contains("tty-ok"), "terminal output: \(out)")
        try await f.runtime.stop(instance: "t1", force: true)
        try f.runtime.delete(instance: "t1")
    }

    /// The fallback for kernels without idmapped mounts, forced here: same container view.
    @Test func shiftedLayerFallback() async throws {
        let f = try Fixture("shift", shiftLayers: true)
        defer { f.tearDown() }
        // A setuid file and a device node in the image must survive the shift.
        chmod(f.layer + "/bin/busybox", 0o4755)
        _ = mknod(f.layer + "/dev/null0", S_IFCHR | 0o666, dev_t((1 << 8) | 3))   // 1:3, old-style encoding
        defer { chmod(f.layer + "/bin/busybox", 0o755) }
        let base: UInt32 = 3_600_000
        let c = try await f.runtime.start(f.spec("sh1", base: base))
        var st = stat()
        #expect(stat(f.dataDir + "/containers/default_sh1/lower/bin/busybox", &st) == 0 && st.st_uid == base && st.st_mode & 0o7777 == 0o4755)
        #expect(stat(f.layer + "/bin/busybox", &st) == 0 && st.st_uid == 0, "the shared layer was changed")
        #expect(try await run(f.runtime, "sh1", ["stat", "-c", "%u %g %a", "/bin/busybox"]).output == "0 0 4755\n")
        #expect(try await run(f.runtime, "sh1", ["stat", "-c", "%F %t,%T", "/dev/null0"]).output.isEmpty == false)
        #expect(squeezed(try await run(f.runtime, "sh1", ["cat", "/proc/self/uid_map"]).output) == "0 \(base) 65536")
        // Stopped-container files use the shifted lower too.
        try await f.runtime.stop(instance: "sh1", force: true)
        #expect(try await f.runtime.readFile(instance: "sh1", path: "/sbin/init").uid == 0)
        try expectNothingLeft(f, "sh1", pid: c.pid)
        try f.runtime.delete(instance: "sh1")
    }

    @Test func memoryLimitIsEnforced() async throws {
        let f = try Fixture("oom")
        defer { f.tearDown() }
        _ = try await f.runtime.start(f.spec("m1", base: 3_300_000, limits: Limits(memoryBytes: 32 << 20)))
        // Fill 64 MiB of tmpfs-backed memory in a 32 MiB container: the writer must fail or die.
        let r = try await run(f.runtime, "m1", ["sh", "-c", "head -c 67108864 /dev/zero > /dev/shm/fill; echo wrote"])
        #expect(r.code != 0 || !r.output.contains("wrote"), "64 MiB fit in a 32 MiB container: \(r.output)")
        try await f.runtime.stop(instance: "m1", force: true)
        try f.runtime.delete(instance: "m1")
    }
}

@Suite struct SpawnerAndProbeTests {
    @Test func spawnPassesOnlyChosenFdsAndReportsExit() async throws {
        var out: [Int32] = [-1, -1]
        #expect(pipe(&out) == 0)
        let leak = open("/dev/null", O_RDONLY)   // not close-on-exec: must still not reach the child
        defer { close(leak) }
        let p = try Spawner.spawn("/bin/sh", arguments: ["sh", "-c", "ls /proc/self/fd; readlink /proc/self/fd/0 /proc/self/fd/2; exit 3"], fds: [1: out[1]])
        close(out[1])
        let text = String(decoding: await ContainerRuntime.readToEOF(out[0]), as: UTF8.self)
        let status = await p.wait()
        #expect(status.code == 3)
        // 0 and 2 on /dev/null, 1 the pipe, 3 is ls's own directory fd; not the leaked fd.
        #expect(squeezed(text) == "0 1 2 3 /dev/null /dev/null", "child fds: \(text)")
        let killed = try Spawner.spawn("/bin/sh", arguments: ["sh", "-c", "kill -9 $$"], fds: [:])
        #expect(await killed.wait().signal == 9)
    }

    @Test func hostFacts() throws {
        let cap = HostProbe.capacity(dataDir: "/")
        #expect(cap.cpuCores >= 1 && cap.memoryBytes > 64 << 20)
        let k = try HostProbe.kernelFeatures()
        #expect(k.pidfd)
        print("RuntimeTests host: \(cap.cpuCores) cores, \(cap.memoryBytes >> 20) MiB, kernel \(k.release), cgroups \(k.cgroups.version), idmapped overlay lower: \(k.idmappedOverlayLower)")
    }
}

@Suite(.serialized, .enabled(if: Host.canRunContainers, Comment(rawValue: Host.containersMissing ?? "")))
struct RestoreBookkeepingTests {
    /// The runtime side of a CRIU restore, without CRIU: the "restored init" is a plain child.
    @Test func mountRegisterStopAndRelease() async throws {
        let f = try Fixture("restore")
        defer { f.tearDown() }
        let rt = f.runtime
        let spec = f.spec("r1", base: 3_400_000, limits: Limits(memoryBytes: 96 << 20))
        try rt.create(spec)
        let prep = try await rt.mountForRestore(instance: "r1")
        #expect(Mounts.isMountPoint(prep.rootfs))
        // The lower layer is idmapped: image files owned by 0 show as the mapped root.
        var st = stat()
        #expect(stat(prep.rootfs + "/sbin/init", &st) == 0 && st.st_uid == 3_400_000)
        let mem = rt.cgroupLayout.directory(of: "memory", relative: "lxd-swift/\(f.member)/default_r1")!
        #expect(hostFile(mem + (rt.cgroupLayout.usesV2 ? "/memory.max" : "/memory.limit_in_bytes")) == "\(96 << 20)\n")
        await #expect(throws: RuntimeError.self) { _ = try await rt.start(spec) }   // reserved

        // A failed restore is undone completely.
        rt.releaseRestore(instance: "r1")
        #expect(Mounts.under(f.dataDir + "/containers/default_r1").isEmpty)
        #expect(access(mem, F_OK) != 0)

        let again = try await rt.mountForRestore(instance: "r1")
        let stand_in = try Spawner.spawn("/bin/sleep", arguments: ["sleep", "100"], fds: [:])
        let c = try rt.registerRestored(instance: "r1", pid: stand_in.pid, reapedAfter: again.reapedAfter)
        #expect(rt.state(instance: "r1")?.running == true && c.pid == stand_in.pid)
        #expect(await rt.awaitStopped(instance: "r1", timeout: .milliseconds(50)) == false)
        try await rt.stop(instance: "r1", force: true)
        #expect(await rt.awaitStopped(instance: "r1", timeout: .seconds(30)))
        try expectNothingLeft(f, "r1", pid: c.pid)
        try rt.delete(instance: "r1")
    }
}
