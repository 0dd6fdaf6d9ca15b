import Foundation
import Glibc
import Runtime
import Testing
@testable import Migration

/// Checkpoint and restore with the real CRIU on this host: a shell counter in its own pid and
/// mount namespace is dumped, must be gone, is restored, and must count on from where it
/// stopped. Processes are spawned with Runtime's Spawner, so the Reaper (as in the agent)
/// collects every exit, including the restored tree that criu -d leaves to this subreaper.
/// Skipped with its reason where it cannot run, never under `make test` (CRIUHost).
@Suite(.serialized,
       .enabled(if: CRIUHost.runs(if: getuid() == 0), "needs root to checkpoint processes"),
       .enabled(if: CRIUHost.runs(if: CRIUHost.installed), "no criu at /usr/local/sbin/criu; run scripts/install-criu"))
struct RealCRIUTests {
    /// nil when criu is usable; else why not (CRIUHost.usableCRIU skips or fails with it).
    static func unusable(_ criu: CRIU) async -> String? {
        do {
            let check = try await SpawnerCommandRunner().run(executable: criu.path, arguments: ["check"], environment: CRIU.environment)
            return check.exitStatus == 0 ? nil : "criu check fails: \(check.output.suffix(300))"
        } catch {
            return "cannot run criu: \(error)"
        }
    }

    /// A counter in a fresh pid+mount namespace; init re-opens stdio inside the namespace
    /// (fds on the host's /dev mount are not dumpable) and writes a number every 0.1 s.
    struct Counter {
        let dir: String
        let unshare: SpawnedProcess
        let initPid: Int32

        static func start(in dir: String) async throws -> Counter {
            let script = dir + "/counter.sh"
            try """
            exec </dev/null >/dev/null 2>&1
            i=0
            while :; do i=$((i+1)); echo $i > \(dir)/counter.tmp; mv \(dir)/counter.tmp \(dir)/counter; sleep 0.1; done
            """.write(toFile: script, atomically: true, encoding: .utf8)
            let null = open("/dev/null", O_RDWR | O_CLOEXEC)
            defer { close(null) }
            let unshare = try Spawner.spawn("/usr/bin/unshare",
                                            arguments: ["unshare", "--fork", "--pid", "--mount-proc", "setsid", "/bin/bash", script],
                                            environment: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], fds: [0: null, 1: null, 2: null])
            let deadline = ContinuousClock.now + .seconds(30)
            while ContinuousClock.now < deadline {
                if let text = try? String(contentsOfFile: "/proc/\(unshare.pid)/task/\(unshare.pid)/children", encoding: .utf8),
                   let pid = text.split(separator: " ").first.flatMap({ Int32($0) }) {
                    return Counter(dir: dir, unshare: unshare, initPid: pid)
                }
                try await Task.sleep(for: .milliseconds(10))
            }
            kill(unshare.pid, SIGKILL)
            throw RuntimeError.invalid("unshare \(unshare.pid) started no init within 30 s")
        }
    }

    static func read(_ dir: String) -> Int? {
        (try? String(contentsOfFile: dir + "/counter", encoding: .utf8)).flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    /// The timeout only catches a hang: a loaded machine may be slow, never wrong.
    static func waitFor(_ what: String, timeout: Duration = .seconds(30), _ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while !condition() {
            guard ContinuousClock.now < deadline else { throw RuntimeError.invalid("timed out waiting for \(what)") }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    static func alive(_ pid: Int32) -> Bool {
        // A zombie still has /proc/PID but is gone for CRIU's purposes only once reaped.
        access("/proc/\(pid)", F_OK) == 0
    }

    static func nspid(_ pid: Int32) -> [Int32] {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("NSpid:") }) else { return [] }
        return line.split(whereSeparator: \.isWhitespace).dropFirst().compactMap { Int32($0) }
    }

    static func tempDir() throws -> String {
        var template = Array("/tmp/lxd-migration-test-XXXXXX".utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw RuntimeError.system("mkdtemp", on: "/tmp", errno)
        }
        return template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    @Test func dumpRestoreContinuesTheCounterAndImagesParse() async throws {
        let criu = try await CRIUHost.usableCRIU()
        let driver = CRIUDriver(criu: criu, runner: SpawnerCommandRunner())
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }

        let counter = try await Counter.start(in: dir)
        var restoredPid: Int32?
        defer {
            kill(counter.unshare.pid, SIGKILL)
            kill(counter.initPid, SIGKILL)
            if let restoredPid { kill(restoredPid, SIGKILL) }
        }
        try await Self.waitFor("the counter to reach 15") { (Self.read(dir) ?? 0) >= 15 }

        // Dump: the tree is killed by criu after a good dump.
        let images = dir + "/images"
        let dumped = try await driver.dump(DumpRequest(pid: counter.initPid, imagesDirectory: images))
        let atDump = try #require(Self.read(dir))
        // Prompt reaping (we are unshare's parent; it reaps init): the pids must be gone before
        // restoring, else "Can't fork for PID: File exists".
        #expect(await counter.unshare.exit.wait(timeout: .seconds(30)) != nil, "unshare did not exit after the dump")
        try await Self.waitFor("the dumped init to be gone") { !Self.alive(counter.initPid) }
        try await Task.sleep(for: .milliseconds(300))
        #expect(Self.read(dir) == atDump, "the counter moved after the dump: the tree was not stopped")

        // The real images as the reader sees them.
        let img = dumped.image
        #expect(img.inventory.imageVersion == 2)
        let initEntry = try #require(img.processes.first)
        #expect(initEntry.pid == 1 && initEntry.ppid == 0, "init of its own pid namespace")
        #expect(initEntry.sid == 1, "init is a session leader (setsid)")
        let stats = try #require(img.dumpStats)
        #expect(stats.frozenTime > 0)
        #expect(stats.pagesWritten > 0)
        #expect(img.storedMemoryBytes == stats.pagesWritten * 4096)
        #expect(!img.pagemaps.isEmpty)
        print("criu dump: \(dumped.elapsed), frozen \(stats.frozenTime) µs, freezing \(stats.freezingTime) µs, "
              + "\(img.processes.count) processes, \(img.storedMemoryBytes / 1024) KiB of pages")

        // A corrupt copy is refused before criu runs.
        let broken = dir + "/broken"
        try FileManager.default.copyItem(atPath: images, toPath: broken)
        let pages = try #require(img.pagemaps.first { $0.presentPages > 0 }).pagesFile
        #expect(truncate(broken + "/" + pages, off_t((img.pagemaps.first { $0.pagesFile == pages }!.presentPages - 1) * 4096)) == 0)
        await #expect(throws: CRIUError.self) {
            _ = try await driver.restore(RestoreRequest(imagesDirectory: broken, root: "/", pidFile: broken + "/pid"))
        }

        // Restore: the counter continues from where it was.
        // The restored tree runs before criu returns (longer under load): count from the call.
        let restoredAt = ContinuousClock.now
        let restored = try await driver.restore(RestoreRequest(imagesDirectory: images, root: "/", pidFile: images + "/restore.pid"))
        restoredPid = restored.pid
        #expect(Self.alive(restored.pid))
        #expect(Self.nspid(restored.pid).last == 1, "restored init is pid 1 in a new pid namespace")
        try await Self.waitFor("the restored counter to move") { (Self.read(dir) ?? atDump) != atDump }
        let next = try #require(Self.read(dir))
        // From the dumped value on (a fresh start counts from 1), at most one tick per 100 ms
        // since the restore plus two: it did not run on while dumped.
        let ticksSinceRestore = Int((ContinuousClock.now - restoredAt) / .milliseconds(100))
        #expect(next > atDump && next <= atDump + 2 + ticksSinceRestore, "counter went from \(atDump) to \(next): it did not continue")
        print("criu restore: \(restored.elapsed), pid \(restored.pid), counter \(atDump) -> \(next)"
              + (restored.stats.map { ", restore_time \($0.restoreTime) µs" } ?? ""))

        // Clean up through the Reaper: the restored tree was reparented to us (subreaper).
        kill(restored.pid, SIGKILL)
        try await Self.waitFor("the restored init to be reaped") { !Self.alive(restored.pid) }
        restoredPid = nil
    }

    @Test func checkpointWithLeaveRunningKeepsTheSourceCounting() async throws {
        let criu = try await CRIUHost.usableCRIU()
        let driver = CRIUDriver(criu: criu, runner: SpawnerCommandRunner())
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let counter = try await Counter.start(in: dir)
        defer {
            kill(counter.unshare.pid, SIGKILL)
            kill(counter.initPid, SIGKILL)
        }
        try await Self.waitFor("the counter to start") { (Self.read(dir) ?? 0) >= 3 }
        var request = DumpRequest(pid: counter.initPid, imagesDirectory: dir + "/images")
        request.leaveRunning = true
        let dumped = try await driver.dump(request)
        let atDump = try #require(Self.read(dir))
        try await Self.waitFor("the source to keep counting") { (Self.read(dir) ?? 0) > atDump + 2 }
        #expect(Self.alive(counter.initPid))
        #expect(dumped.image.processes.first?.pid == 1)
        print("criu checkpoint (leave running): \(dumped.elapsed), frozen \(dumped.image.dumpStats?.frozenTime ?? 0) µs")
    }

    @Test func probeOfThisHost() async throws {
        let criu = try await CRIUHost.usableCRIU()
        let f = try await criu.probe(runner: SpawnerCommandRunner())
        #expect(f.checkPassed)
        #expect(f.version >= .minimum)
        #expect(f.pipeMaxSize == CRIU.readPipeMaxSize() && f.pipeMaxSize > 0)
        print("criu probe: \(f)")
    }
}
