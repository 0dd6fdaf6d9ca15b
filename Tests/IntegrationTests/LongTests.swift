import Foundation
import Glibc
import Testing

/// Runs of minutes, for `make test-long` only: it sets LXD_SWIFT_LONG=1, and then nothing in
/// these suites may skip (a missing prerequisite is a failure there).
enum LongRun {
    static let enabled = ProcessInfo.processInfo.environment["LXD_SWIFT_LONG"] == "1"
    static let skipReason = "a long run: make test-long sets LXD_SWIFT_LONG=1"
}

/// Many Debian containers with systemd on one member at once: each boots to `running`, then
/// each stops through systemd's own shutdown. The bound (120 s for all) only catches hangs;
/// the figures it prints (time to all running, memory per container) are for the record.
@Suite(.serialized, .enabled(if: LongRun.enabled, Comment(rawValue: LongRun.skipReason)))
final class ManyDebianTests {
    static let count = 20
    static let bootBound: TimeInterval = 120
    /// inotify instances one idle Debian container holds (systemd 5, dbus, logind, agetty),
    /// with room for what boot uses on the way. All are charged to the host user that created
    /// the containers' user namespaces (root), against fs.inotify.max_user_instances.
    static let inotifyPerContainer = 10

    @Test func twentyDebianContainersBootToRunningAndStopCleanly() throws {
        if let missing = Prerequisites.missing { Issue.record("cannot run the long Debian test: \(missing)"); return }
        let image = try #require(DebianImage.path, "LXD_SWIFT_TEST_DEBIAN_IMAGE is not set (make test-long sets it)")
        guard FileManager.default.fileExists(atPath: image) else {
            Issue.record("Debian image \(image) is missing: run scripts/make-debian-image \(image)")
            return
        }
        // Past the limit systemd fails quietly (path units fail, managers exit at start): say so first.
        let limitPath = "/proc/sys/fs/inotify/max_user_instances"
        let limit = (try? String(contentsOfFile: limitPath, encoding: .utf8)).flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 0
        let needed = Self.count * Self.inotifyPerContainer + 64
        guard limit >= needed else {
            Issue.record("""
                fs.inotify.max_user_instances is \(limit): \(Self.count) Debian containers need about \(needed) inotify instances \
                of root (systemd, dbus, logind and agetty hold ~8 each, all charged to the user that created their user \
                namespaces), and past the limit systemd degrades or exits. Raise it: sysctl -w fs.inotify.max_user_instances=1024 \
                (persistent: a file in /etc/sysctl.d; docs/images.md, known limits)
                """)
            return
        }
        // Its own member name: cgroups are named by member, and other tests' agents are "m1".
        let agent = try TestAgent(name: "long\(getpid())")
        defer { agent.destroy() }
        try agent.ok(["image", "import", image, "--alias", "debian12"])
        let names = (1...Self.count).map { "many\($0)" }
        let availableBefore = Self.memAvailableKiB()

        let started = Date()
        for name in names { try agent.ok(["launch", "debian12", name]) }
        var pending = Set(names)
        var states: [String: String] = [:]
        while !pending.isEmpty, Date().timeIntervalSince(started) < Self.bootBound {
            for name in pending.sorted() {
                let state = try agent.ctl(["exec", name, "--", "systemctl", "is-system-running"]).stdout
                    .trimmingCharacters(in: .whitespacesAndNewlines)
                states[name] = state
                if state == "running" || state == "degraded" { pending.remove(name) }
            }
            if !pending.isEmpty { usleep(200_000) }
        }
        let bootSeconds = Date().timeIntervalSince(started)
        #expect(pending.isEmpty, "not running \(Int(Self.bootBound)) s after the first launch: \(pending.sorted().map { "\($0): \(states[$0] ?? "?")" })")
        if !pending.isEmpty {
            // What the agent and the consoles say about them: the data directory goes at the end.
            let list = try agent.ok(["list", "--format", "csv"])
            let log = agent.logTail(400_000).split(separator: "\n")
            for name in pending.sorted() {
                let console = try agent.ctl(["console", name, "--show-log"]).stdout
                let lines = log.filter { $0.contains("=\(name) ") || $0.hasSuffix("=\(name)") }.suffix(8)
                Issue.record("\(name): \(list.split(separator: "\n").first { $0.hasPrefix("\(name),") } ?? "not listed"); agent log: \(lines.joined(separator: "\n")); console: \(console.suffix(1500))")
            }
        }
        for name in names where states[name] == "degraded" {
            let failed = try agent.ctl(["exec", name, "--", "systemctl", "--failed", "--no-legend", "--plain"]).stdout
            Issue.record("\(name): systemd is degraded; failed units: \(failed)")
        }

        // Idle memory once all are up: each container's own cgroup and its console monitor.
        sleep(2)
        var cgroupKiB: [Int] = [], monitorKiB: [Int] = []
        let monitors = Self.monitorPids(dataDir: agent.dataDir)
        for name in names {
            if let bytes = Self.cgroupMemoryBytes(member: agent.name, instance: name) { cgroupKiB.append(bytes / 1024) }
            if let pid = monitors[name], let pss = Self.pssKiB(pid) { monitorKiB.append(pss) }
        }
        #expect(cgroupKiB.count == names.count, "memory cgroups found for \(cgroupKiB.count) of \(names.count) containers")
        #expect(monitorKiB.count == names.count, "console monitors found for \(monitorKiB.count) of \(names.count) containers")
        let hostKiB = availableBefore - Self.memAvailableKiB()

        let stopStarted = Date()
        for name in names { try agent.ok(["stop", name, "--timeout", "60"]) }
        let stopSeconds = Date().timeIntervalSince(stopStarted)
        let list = try agent.ok(["list", "--format", "csv"])
        for name in names { #expect(list.contains("\(name),STOPPED"), "\(name) after stop: \(list)") }
        #expect(!agent.logTail(200_000).contains("did not stop in time"), "a container needed the forced stop")

        print("""
            long: \(names.count) Debian containers on one member: \(pending.isEmpty ? "all" : "\(names.count - pending.count)") \
            running \(String(format: "%.1f", bootSeconds)) s after the first launch; \
            stopped one after another in \(String(format: "%.1f", stopSeconds)) s
            long: idle memory per container: own cgroup \(Self.summary(cgroupKiB)), console monitor PSS \(Self.summary(monitorKiB)); \
            host MemAvailable fell by \(String(format: "%.1f", Double(hostKiB) / 1024 / Double(names.count))) MiB per container
            """)
    }

    /// "median (min-max) MiB" of KiB values.
    static func summary(_ kib: [Int]) -> String {
        guard !kib.isEmpty else { return "-" }
        let s = kib.sorted()
        let mib = { (k: Int) in String(format: "%.1f", Double(k) / 1024) }
        return "\(mib(s[s.count / 2])) MiB (\(mib(s[0]))-\(mib(s[s.count - 1])))"
    }

    static func memAvailableKiB() -> Int {
        let text = (try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8)) ?? ""
        let line = text.split(separator: "\n").first { $0.hasPrefix("MemAvailable:") }
        return line.flatMap { Int($0.split(whereSeparator: \.isWhitespace)[1]) } ?? 0
    }

    /// The container's own memory cgroup (.../lxd-swift/<member>/default_<instance>): v1's
    /// memory controller when the host has one, else cgroup2's.
    static func cgroupMemoryBytes(member: String, instance: String) -> Int? {
        let dir = "lxd-swift/\(member)/default_\(instance)"
        let candidates = ["/sys/fs/cgroup/memory/\(dir)/memory.usage_in_bytes",
                          "/sys/fs/cgroup/unified/\(dir)/memory.current",
                          "/sys/fs/cgroup/\(dir)/memory.current"]
        for path in candidates {
            if let text = try? String(contentsOfFile: path, encoding: .utf8),
               let bytes = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)) { return bytes }
        }
        return nil
    }

    /// Instance name -> pid of its console monitor (`lxd-start start name=...`, console under dataDir).
    static func monitorPids(dataDir: String) -> [String: Int32] {
        var found: [String: Int32] = [:]
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(entry), let data = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { continue }
            let args = data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            guard args.count > 2, args[0].hasSuffix("/lxd-start"), args[1] == "start",
                  args.contains(where: { $0.hasPrefix("console=\(dataDir)/") }),
                  let name = args.first(where: { $0.hasPrefix("name=") })?.dropFirst(5) else { continue }
            found[String(name)] = pid
        }
        return found
    }

    static func pssKiB(_ pid: Int32) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/smaps_rollup", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("Pss:") }) else { return nil }
        return Int(line.split(whereSeparator: \.isWhitespace)[1])
    }
}
