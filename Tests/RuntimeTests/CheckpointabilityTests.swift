import Foundation
import Glibc
import Testing
@testable import Runtime

/// Containers are built to be checkpointable (NOTES-criu.md): prove it with the host's CRIU
/// and the runtime's restore bookkeeping. Migration owns the real driver; this only checks
/// that what the runtime builds is dumpable and restorable.
/// Skipped with the reason where containers or CRIU are missing, except under `make test`
/// (Host.criuRequired), where a missing CRIU is a failure.
@Suite(.serialized,
       .enabled(if: Host.canRunContainers, Comment(rawValue: Host.containersMissing ?? "")),
       .enabled(if: Host.criuRequired || Host.criuMissing == nil, Comment(rawValue: Host.criuMissing ?? "")))
struct CheckpointabilityTests {
    static func criu(_ args: [String], log dir: String, inherited: [Int32: Int32] = [:]) async throws -> Int32 {
        let out = open(dir + "/criu.out", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        defer { close(out) }
        let p = try Spawner.spawn(Host.criuPath, arguments: ["criu"] + args,
                                  environment: ["PATH=/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"],
                                  fds: [1: out, 2: out].merging(inherited) { a, _ in a })
        return await p.wait().shellCode
    }

    @Test(arguments: [UInt32?.some(3_500_000), nil])
    func dumpAndRestore(base: UInt32?) async throws {
        if let missing = Host.criuMissing { Issue.record("\(missing) (LXD_SWIFT_REQUIRE_CRIU=1)"); return }
        let f = try Fixture(base == nil ? "criu-priv" : "criu")
        defer { f.tearDown() }
        let rt = f.runtime
        var spec = f.spec("k1", base: base)
        // A counter in init's memory shows the process state came back, not a restart. Written
        // in place (`1<>`, no truncation; the number only grows): `>` let a reader on a loaded
        // machine catch the file empty between truncate and write ("counter 7 -> 0").
        spec.initCommand = ["/bin/sh", "-c", "trap 'exit 0' TERM PWR; i=0; while true; do i=$((i+1)); echo $i 1<>/tmp/count; sleep 0.05; done"]
        let c = try await rt.start(spec)
        try await Task.sleep(for: .milliseconds(300))
        let images = f.root + "/images"
        // Restored tasks of an unprivileged container probe optional images (tty-info.img)
        // as the mapped root: the directory must be searchable, or ENOENT turns into EACCES.
        mkdir(images, 0o711)
        // The console is a pty whose master the runtime's monitor holds: external, as the
        // Checkpointer declares it (the console bind by mount key, the terminal by tty[rdev:dev]).
        var st = stat()
        #expect(stat("/proc/\(c.pid)/root/dev/console", &st) == 0)
        let ttyKey = "tty[\(String(UInt64(st.st_rdev), radix: 16)):\(String(UInt64(st.st_dev), radix: 16))]"
        let dump = try await Self.criu(["dump", "-t", "\(c.pid)", "-D", images, "-o", "dump.log", "--external", "mnt[]",
                                        "--external", "mnt[/dev/console]:console", "--external", ttyKey,
                                        "--network-lock", "nftables"], log: images)
        #expect(dump == 0, "criu dump failed: \(hostFile(images + "/dump.log").suffix(1500))")
        guard dump == 0 else { try? await rt.stop(instance: "k1", force: true); try? rt.delete(instance: "k1"); return }
        #expect(await rt.awaitStopped(instance: "k1", timeout: .seconds(30)))
        let before = Int(hostFile(f.dataDir + "/containers/default_k1/upper/tmp/count").trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0

        let prep = try await rt.mountForRestore(instance: "k1")
        let pidfile = images + "/restored.pid"
        let restore = try await Self.criu(["restore", "-D", images, "-o", "restore.log", "--root", prep.rootfs,
                                           "--external", "mnt[]", "--external", "mnt[console]:\(prep.consoleSlavePath)",
                                           "--inherit-fd", "fd[3]:\(ttyKey)",
                                           "--network-lock", "nftables", "-d", "--pidfile", pidfile],
                                          log: images, inherited: [3: prep.consoleSlaveFD])
        #expect(restore == 0, "criu restore failed: \(hostFile(images + "/restore.log").suffix(1500))")
        // A failed restore is recorded above; a restore that succeeded without telling which
        // process it made is a bug of its own, never a quiet return.
        let pidText = hostFile(pidfile).trimmingCharacters(in: .whitespacesAndNewlines)
        guard restore == 0, let pid = pid_t(pidText) else {
            if restore == 0 { Issue.record("criu restore exited 0 but its pidfile \(pidfile) holds no pid: \"\(pidText)\"") }
            rt.releaseRestore(instance: "k1"); try? rt.delete(instance: "k1"); return
        }
        let restored = try rt.registerRestored(instance: "k1", pid: pid, reapedAfter: prep.reapedAfter)
        #expect(try await run(rt, "k1", ["hostname"]).output == "k1\n")
        try await Task.sleep(for: .milliseconds(200))
        let after = Int(try await run(rt, "k1", ["cat", "/tmp/count"]).output.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        #expect(before > 0 && after > before, "counter \(before) -> \(after)")
        if let base {
            #expect(squeezed(try await run(rt, "k1", ["cat", "/proc/self/uid_map"]).output) == "0 \(base) 65536")
        }
        try await rt.stop(instance: "k1", force: false, timeout: .seconds(5))
        try expectNothingLeft(f, "k1", pid: restored.pid)
        try rt.delete(instance: "k1")
    }
}
