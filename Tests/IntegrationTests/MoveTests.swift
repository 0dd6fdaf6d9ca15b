import APITypes
import Foundation
import Synchronization
import Testing

/// Moves between three real members on loopback: live (CRIU), stateless and cold, with every
/// member's cgroups sampled from the host so that an instance running on two members at once,
/// even for 50 ms, fails the test.
@Suite(.serialized, .enabled(if: Prerequisites.criuAvailable,
                             "needs root, busybox, the built binaries and CRIU (scripts/install-criu)"))
final class MoveTests {
    var agents: [TestAgent] = []

    deinit {
        for a in agents.reversed() { a.destroy() }
    }

    func cluster(_ prefix: String) throws -> [TestAgent] { try MoveCluster.form(prefix, into: &agents) }
    func location(_ a: TestAgent, _ name: String) throws -> String { try MoveCluster.location(a, name) }
    func counter(_ a: TestAgent, _ name: String) throws -> Int { try MoveCluster.counter(a, name) }

    @Test func liveMovesRoundThreeMembersKeepProcessesAndFiles() throws {
        let members = try cluster("mv")
        let m1 = members[0]
        try m1.importBusybox(alias: "counter", initKind: "counter")
        try m1.ok(["launch", "counter", "c1", "--target", m1.name])
        // A second process whose pid must survive, appending init's counter to a file of the
        // root filesystem every 100 ms (the file moves with the upper layer).
        try m1.ok(["exec", "c1", "--", "sh", "-c",
                   "while :; do cat /run/counter >> /root/log; usleep 100000; done </dev/null >/dev/null 2>&1 &"])
        usleep(1_000_000)
        let pidsBefore = try m1.ok(["exec", "c1", "--", "ps", "-o", "pid,args"])

        let sampler = RunningSampler(members: members.map(\.name), leaf: "default_c1")
        sampler.start()
        defer { sampler.stop() }
        var lastCounter = try counter(m1, "c1")
        var lastLines = 0
        for (from, to) in [(0, 1), (1, 2), (2, 0)] {
            let started = Date()
            let move = try members[(from + 1) % 3].ctl(["move", "c1", "--target", members[to].name])
            #expect(move.status == 0, "move \(members[from].name) -> \(members[to].name): \(move.stderr)\n\(members[from].logTail())\n\(members[to].logTail())")
            print("move \(members[from].name) -> \(members[to].name): \(String(format: "%.0f", Date().timeIntervalSince(started) * 1000)) ms (whole lxdctl)\n\(move.stdout)")
            #expect(try location(m1, "c1") == members[to].name)
            let now = try counter(m1, "c1")
            #expect(now >= lastCounter, "counter continues: \(lastCounter) -> \(now)")
            lastCounter = now
            let log = try m1.ok(["exec", "c1", "--", "cat", "/root/log"]).split(separator: "\n")
            #expect(log.count >= lastLines && log.count > 0, "the log keeps its earlier lines: \(lastLines) -> \(log.count)")
            lastLines = log.count
            let pids = try m1.ok(["exec", "c1", "--", "ps", "-o", "pid,args"])
            // init and the appending shell (its usleep children come and go).
            let sleepers = { (s: String) in
                s.split(separator: "\n").filter { ($0.contains("while") && !$0.contains("{usleep}")) || $0.contains("/sbin/init") }
                    .map { $0.trimmingCharacters(in: .whitespaces) }
            }
            #expect(Set(sleepers(pidsBefore)).isSubset(of: Set(sleepers(pids))), "pids inside unchanged:\n\(pidsBefore)\n->\n\(pids)")
            // Nothing of it left on the member it left.
            #expect(!FileManager.default.fileExists(atPath: "\(members[from].dataDir)/containers/default_c1"), "source copy removed")
        }
        sampler.stop()
        #expect(sampler.twice.isEmpty, "running on two members at once: \(sampler.twice.prefix(5))")
        #expect(sampler.samples > 20, "the sampler ran: \(sampler.samples) samples")
        print("samples: \(sampler.samples), none running twice")
        try m1.ok(["delete", "--force", "c1"])
    }

    /// Post-copy: the target runs the instance before its memory arrived; pages come on fault
    /// from the source, whose frozen tree must never run again.
    @Test func postCopyMoveRunsOnTheTargetBeforeTheMemoryArrived() throws {
        let members = try cluster("pc")
        let m1 = members[0]
        try m1.importBusybox(alias: "counter", initKind: "counter")
        try m1.ok(["launch", "counter", "c1", "--target", m1.name])
        // 32 MiB of memory the shell keeps, so there is something to fault in.
        try m1.ok(["exec", "c1", "--", "sh", "-c",
                   "x=$(head -c 33554432 /dev/zero | tr '\\0' a); while :; do echo ${#x} > /run/size; sleep 1; done </dev/null >/dev/null 2>&1 &"])
        usleep(2_000_000)
        let before = try counter(m1, "c1")
        let sampler = RunningSampler(members: members.map(\.name), leaf: "default_c1")
        sampler.start()
        defer { sampler.stop() }
        let move = try m1.ctl(["move", "c1", "--target", members[1].name, "--mode", "post-copy"])
        #expect(move.status == 0, "post-copy move: \(move.stderr)\n\(m1.logTail())\n\(members[1].logTail())")
        print(move.stdout)
        #expect(try location(m1, "c1") == members[1].name)
        #expect(try counter(m1, "c1") >= before)
        usleep(1_500_000)
        #expect(try m1.ok(["exec", "c1", "--", "cat", "/run/size"]).trimmingCharacters(in: .whitespacesAndNewlines) == "33554432",
                "the shell's memory came over")
        #expect(!FileManager.default.fileExists(atPath: "\(m1.dataDir)/containers/default_c1"), "source copy removed")
        // And it moves on, stop-and-copy, once every page is there.
        let back = try m1.ctl(["move", "c1", "--target", m1.name])
        #expect(back.status == 0, "move back: \(back.stderr)\n\(members[1].logTail())")
        sampler.stop()
        #expect(sampler.twice.isEmpty, "running on two members at once: \(sampler.twice.prefix(5))")
        try m1.ok(["delete", "--force", "c1"])
    }

    @Test func stoppedInstanceMovesColdWithItsChangesAndDeletions() throws {
        let members = try cluster("cm")
        let (m1, m2) = (members[0], members[1])
        try m1.importBusybox(alias: "bb")
        try m1.ok(["launch", "bb", "c2", "--target", m1.name])
        // Added, changed and deleted (a whiteout over the image's file), a hard link, a fifo.
        try m1.ok(["exec", "c2", "--", "sh", "-c", """
            echo added > /root/new && echo changed >> /etc/hostname && rm /etc/group /bin/ed && mkdir -p /srv/d/e \
            && echo deep > /srv/d/e/f && ln /srv/d/e/f /srv/link && mkfifo /srv/fifo && chmod 4711 /root/new \
            && chown 1234:5678 /srv/d/e/f && rm -rf /usr/sbin && mkdir /usr/sbin && echo fresh > /usr/sbin/only \
            && dd if=/dev/zero of=/srv/sparse bs=1 count=1 seek=100000000 2>/dev/null
            """])
        let checksum = "find / -xdev \\( -path /proc -o -path /sys -o -path /dev -o -path /run \\) -prune -o -exec stat -c '%n %a %u %g %s %h %F %Y' {} + | sort; cat /root/new /etc/hostname /srv/d/e/f"
        try m1.ok(["stop", "c2"])
        try m1.ok(["start", "c2"])
        let before = try m1.ok(["exec", "c2", "--", "sh", "-c", checksum])
        try m1.ok(["stop", "c2"])
        let move = try m2.ctl(["move", "c2", "--target", m2.name])
        #expect(move.status == 0, "cold move: \(move.stderr)\n\(m1.logTail())")
        #expect(try location(m1, "c2") == m2.name)
        #expect(try m1.ok(["list", "--format", "csv"]).contains("c2,STOPPED"))
        try m1.ok(["start", "c2"])
        let after = try m1.ok(["exec", "c2", "--", "sh", "-c", checksum])
        #expect(before == after, "the root filesystem reads back identical")
        #expect(!after.contains("/etc/group ") && !after.contains("/bin/ed "), "the deletions moved as whiteouts")
        #expect(try m1.ok(["exec", "c2", "--", "ls", "/usr/sbin"]).trimmingCharacters(in: .whitespacesAndNewlines) == "only",
                "the recreated directory stays opaque: none of the image's /usr/sbin shows through")
        let links = try m1.ok(["exec", "c2", "--", "stat", "-c", "%i %h", "/srv/link", "/srv/d/e/f"]).split(separator: "\n")
        #expect(links.count == 2 && links[0] == links[1] && links[0].hasSuffix(" 2"), "the hard link is one inode: \(links)")
        #expect(!FileManager.default.fileExists(atPath: "\(m1.dataDir)/containers/default_c2"), "source copy removed")
        try m1.ok(["delete", "--force", "c2"])
    }

    @Test func statelessMoveRestartsOnTheTarget() throws {
        let members = try cluster("sm")
        let (m1, m3) = (members[0], members[2])
        try m1.importBusybox(alias: "counter", initKind: "counter")
        try m1.ok(["launch", "counter", "c3", "--target", m1.name])
        try m1.ok(["exec", "c3", "--", "sh", "-c", "echo kept > /root/file"])
        let move = try m1.ctl(["move", "c3", "--target", m3.name, "--stateless"])
        #expect(move.status == 0, "stateless move: \(move.stderr)\n\(m1.logTail())")
        #expect(try location(m1, "c3") == m3.name)
        #expect(try m1.ok(["list", "--format", "csv"]).contains("c3,RUNNING"))
        #expect(try m1.ok(["exec", "c3", "--", "cat", "/root/file"]).contains("kept"))
        try m1.ok(["delete", "--force", "c3"])
    }

    /// A Debian container with systemd, moved live m1→m2→m3→m1 after a unit restart (its empty,
    /// watched slices and the timezone watch of a new logind must come along): still `running`,
    /// same processes, after every move, each from a restored tree (logind's own mount namespace
    /// holds a bind of the console, which must survive each restore). Then moved statelessly.
    @Test(.enabled(if: DebianImage.skipReason == nil, Comment(rawValue: DebianImage.skipReason ?? "")))
    func debianWithSystemdMovesLiveAndKeepsRunning() throws {
        let image = try #require(DebianImage.path)
        let members = try cluster("dm")
        let m1 = members[0]
        try m1.ok(["image", "import", image, "--alias", "debian12"])
        try m1.ok(["launch", "debian12", "d1", "--target", m1.name])
        let state = { (try? m1.ctl(["exec", "d1", "--", "systemctl", "is-system-running"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? "" }
        let deadline = Date().addingTimeInterval(60)
        while state() != "running", Date() < deadline { usleep(200_000) }
        try #require(state() == "running", "systemd did not reach running")
        try m1.ok(["exec", "d1", "--", "systemctl", "restart", "systemd-logind"])
        let sleeper = try m1.ok(["exec", "d1", "--", "sh", "-c", "setsid sleep 1000 >/dev/null 2>&1 < /dev/null & echo $!"])
            .trimmingCharacters(in: .whitespacesAndNewlines)
        try m1.ok(["exec", "d1", "--", "sh", "-c", "echo kept > /root/mark"])
        let sampler = RunningSampler(members: members.map(\.name), leaf: "default_d1")
        sampler.start()
        for (target, live) in [(members[1], true), (members[2], true), (members[0], true), (members[1], false)] {
            let move = try m1.ctl(["move", "d1", "--target", target.name] + (live ? [] : ["--stateless"]))
            #expect(move.status == 0, "move to \(target.name): \(move.stderr)")
            print("debian move to \(target.name): \(move.stdout.split(separator: "\n").last ?? "")")
            #expect(try location(m1, "d1") == target.name)
            if live { #expect(state() == "running", "systemd after the move: \(state())") }
            if live {
                #expect(try m1.ctl(["exec", "d1", "--", "kill", "-0", sleeper]).status == 0, "sleep \(sleeper) keeps its pid")
            } else {
                // A fresh boot: wait for systemd again.
                let booted = Date().addingTimeInterval(60)
                while state() != "running", Date() < booted { usleep(200_000) }
                #expect(state() == "running", "systemd after the stateless move: \(state())")
            }
            #expect(try m1.ok(["exec", "d1", "--", "cat", "/root/mark"]).contains("kept"))
        }
        sampler.stop()
        #expect(sampler.twice.isEmpty, "ran twice: \(sampler.twice.prefix(3))")
        try m1.ok(["delete", "--force", "d1"])
    }

    @Test func badMovesAreRefusedAndChangeNothing() throws {
        let members = try cluster("bm")
        let m1 = members[0]
        try m1.importBusybox(alias: "bb")
        try m1.ok(["launch", "bb", "c4", "--target", m1.name])
        for (args, expected) in [
            (["move", "c4", "--target", "nosuch"], "not found"),
            (["move", "c4", "--target", m1.name], "already on"),
        ] {
            let r = try m1.ctl(args)
            #expect(r.status != 0 && r.stderr.contains(expected), "\(args): \(r.stderr)")
        }
        #expect(try location(m1, "c4") == m1.name)
        #expect(try m1.ok(["list", "--format", "csv"]).contains("c4,RUNNING"))
        try m1.ok(["delete", "--force", "c4"])
    }
}

extension MoveTests {
    /// `GET /1.0/cluster/members/NAME` through `a`'s unix socket, once `NAME` has published its
    /// migration capabilities (a background job at agent start).
    func publishedMigration(_ a: TestAgent, of name: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> MemberMigration {
        struct Envelope: Decodable { var metadata: ClusterMemberInfo }
        let deadline = Date().addingTimeInterval(60)
        var last = ""
        while Date() < deadline {
            let r = try run("/usr/bin/curl", ["-s", "--unix-socket", a.socket, "http://lxd/1.0/cluster/members/\(name)"])
            last = r.stdout
            if let member = try? JSONDecoder().decode(Envelope.self, from: Data(r.stdout.utf8)).metadata, let m = member.migration,
               m.modes["stop-and-copy"]?.reason?.contains("has not published") != true {
                return m
            }
            usleep(300_000)
        }
        Issue.record("member \(name) published no migration capabilities in 60 s: \(last)\n\(a.logTail())", sourceLocation: sourceLocation)
        throw CancellationError()
    }

    /// The instance's host pid as `lxdctl info` shows it (0 when it shows none).
    func hostPID(_ a: TestAgent, _ name: String) throws -> Int {
        let line = try a.ok(["info", name]).split(separator: "\n").first { $0.hasPrefix("PID: ") }
        return line.flatMap { Int($0.dropFirst(5)) } ?? 0
    }

    @Test func membersShowTheirMigrationModesWithTheProbesReasons() throws {
        let members = try cluster("mm")
        let (m1, m2, m3) = (members[0], members[1], members[2])
        for member in members {
            let m = try publishedMigration(m1, of: member.name)
            print("\(member.name): criu \(m.criuVersion ?? "none"), modes \(m.modes), live moves \(m.liveMoves)")
            #expect(m.criuVersion != nil, "CRIU is installed here, so \(member.name) publishes its version")
            #expect(m.modes["stop-and-copy"] == MigrationModeAvailability(available: true))
            // Post-copy: available where userfaultfd works and the agent may raise fs.pipe-max-size
            // (root here), else unavailable with the probe's reason.
            let post = try #require(m.modes["post-copy"])
            #expect(post.available || !(post.reason ?? "").isEmpty)
            let pre = try #require(m.modes["pre-copy"])
            #expect(!pre.available && !(pre.reason ?? "").isEmpty)
            #expect(Set(m.liveMoves.keys) == Set(members.map(\.name)).subtracting([member.name]))
            #expect(m.liveMoves.values.allSatisfy { $0 == LiveMoveAvailability(possible: true, mode: "stop-and-copy") })
        }
        // The CLI prints the same, reasons included.
        let m2Info = try publishedMigration(m1, of: m2.name)
        let show = try m1.ok(["cluster", "show", m2.name])
        #expect(show.contains("migration:") && show.contains("criu: \(m2Info.criuVersion ?? "-")"), "\(show)")
        #expect(show.contains("stop-and-copy: available"), "\(show)")
        #expect(show.contains("pre-copy: unavailable (\(m2Info.modes["pre-copy"]?.reason ?? "-"))"), "\(show)")
        let postLine = m2Info.modes["post-copy"]?.available == true ? "post-copy: available"
            : "post-copy: unavailable (\(m2Info.modes["post-copy"]?.reason ?? "-"))"
        #expect(show.contains(postLine), "\(show)")
        #expect(show.contains("to \(m1.name): possible (stop-and-copy)") && show.contains("to \(m3.name): possible (stop-and-copy)"), "\(show)")

        try m1.importBusybox(alias: "bb")
        try m1.ok(["launch", "bb", "c5", "--target", m2.name])
        let info = try m3.ok(["info", "c5"])
        #expect(info.contains("Migration (member \(m2.name)):") && info.contains("stop-and-copy: available"), "\(info)")
        #expect(info.contains("to \(m1.name): possible (stop-and-copy)") && info.contains("to \(m3.name): possible (stop-and-copy)"), "\(info)")
        try m1.ok(["delete", "--force", "c5"])
    }

    @Test func aModeTheMembersCannotDoIsRefusedBeforeAnythingIsFrozen() throws {
        let members = try cluster("mr")
        let (m1, m2) = (members[0], members[1])
        let source = try publishedMigration(m1, of: m1.name)
        _ = try publishedMigration(m1, of: m2.name)
        try m1.importBusybox(alias: "counter", initKind: "counter")
        try m1.ok(["launch", "counter", "c6", "--target", m1.name])
        usleep(500_000)
        let pid = try hostPID(m1, "c6")
        #expect(pid > 0)

        /// The move is refused with `expected` and c6 runs on, untouched: same member, same init,
        /// its counter going on, nothing of a move left in its directory.
        func expectRefusedUntouched(_ args: [String], _ expected: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
            let before = try counter(m1, "c6")
            let r = try m1.ctl(args)
            #expect(r.status != 0 && r.stderr.contains(expected), "\(args): \(r.stderr)", sourceLocation: sourceLocation)
            usleep(400_000)
            #expect(try counter(m1, "c6") > before, "c6 kept running (never frozen)", sourceLocation: sourceLocation)
            #expect(try location(m1, "c6") == m1.name, sourceLocation: sourceLocation)
            #expect(try hostPID(m1, "c6") == pid, "c6's init is the same process", sourceLocation: sourceLocation)
            let dir = "\(m1.dataDir)/containers/default_c6"
            #expect(!FileManager.default.fileExists(atPath: dir + "/move-outgoing.json") && !FileManager.default.fileExists(atPath: dir + "/move-out"),
                    "no move was claimed", sourceLocation: sourceLocation)
            #expect(!FileManager.default.fileExists(atPath: "\(m2.dataDir)/containers/default_c6"), "nothing prepared on the target",
                    sourceLocation: sourceLocation)
        }

        try expectRefusedUntouched(["move", "c6", "--target", m2.name, "--mode", "warp"], "Invalid migration mode")
        // A mode is for live moves only (the server says so too, for LXD's clients).
        try expectRefusedUntouched(["move", "c6", "--target", m2.name, "--stateless", "--mode", "stop-and-copy"], "applies to a live move")
        let raw = try run("/usr/bin/curl", ["-s", "--unix-socket", m1.socket, "-X", "POST", "-H", "Content-Type: application/json",
                                           "--data-binary", #"{"migration": true, "live": false, "migration_mode": "stop-and-copy"}"#,
                                           "http://lxd/1.0/instances/c6?target=\(m2.name)"])
        #expect(raw.stdout.contains("400") && raw.stdout.contains("applies to a live move only"), "\(raw.stdout)")

        // Stop-and-copy asked for by name moves, and the operation says which mode it used.
        let moved = try m1.ctl(["move", "c6", "--target", m2.name, "--mode", "stop-and-copy"])
        #expect(moved.status == 0 && moved.stdout.contains("stop-and-copy, downtime"), "\(moved.stdout)\(moved.stderr)")
        #expect(try location(m1, "c6") == m2.name)
        let back = try m1.ctl(["move", "c6", "--target", m1.name])
        #expect(back.status == 0, "\(back.stderr)")
        let movedPID = try hostPID(m1, "c6")

        // Pre-copy needs soft-dirty tracking: refused with the probe's reason where it is missing.
        let preCopy = source.modes["pre-copy"]?.reason ?? ""
        guard preCopy.contains("soft-dirty") else {
            let why = "the probe says this kernel has soft-dirty tracking (pre-copy: \(preCopy.isEmpty ? "available" : preCopy)), so the refusal for its lack cannot be shown here"
            print("SKIP aModeTheMembersCannotDoIsRefusedBeforeAnythingIsFrozen (pre-copy part): \(why)")
            try m1.ok(["delete", "--force", "c6"])
            try Test.cancel(Comment(rawValue: why))
        }
        let before = try counter(m1, "c6")
        let r = try m1.ctl(["move", "c6", "--target", m2.name, "--mode", "pre-copy"])
        #expect(r.status != 0 && r.stderr.contains("pre-copy impossible on the source: the kernel has no soft-dirty memory tracking (mem_dirty_track)"),
                "\(r.stderr)")
        usleep(400_000)
        #expect(try counter(m1, "c6") > before, "c6 kept running (never frozen)")
        #expect(try location(m1, "c6") == m1.name)
        #expect(try hostPID(m1, "c6") == movedPID)
        print("pre-copy refused: \(r.stderr.trimmingCharacters(in: .whitespacesAndNewlines))")
        print("SKIP pre-copy move itself: \(preCopy)")
        try m1.ok(["delete", "--force", "c6"])
    }
}

/// Samples every member's cgroup of one instance every 50 ms: an instance counts as running on
/// a member when its group holds a task that is not stopped (CRIU leaves the source's tasks
/// stopped until the target took over).
final class RunningSampler: @unchecked Sendable {
    // @unchecked: the state is behind `state`'s lock; `thread` is touched by the test only.
    let members: [String]
    let leaf: String
    private let state = Mutex<(stop: Bool, samples: Int, twice: [String])>((false, 0, []))
    private var thread: Thread?

    init(members: [String], leaf: String) {
        self.members = members
        self.leaf = leaf
    }

    var samples: Int { state.withLock { $0.samples } }
    var twice: [String] { state.withLock { $0.twice } }

    func start() {
        let t = Thread { [self] in
            while !state.withLock({ $0.stop }) {
                let running = members.filter(runs)
                state.withLock { s in
                    s.samples += 1
                    if running.count > 1 { s.twice.append("\(Date()): \(running)") }
                }
                usleep(50_000)
            }
        }
        thread = t
        t.start()
    }

    func stop() {
        state.withLock { $0.stop = true }
        usleep(60_000)
    }

    private func runs(on member: String) -> Bool {
        // A frozen cgroup (a post-copy source) runs no instruction of its tasks.
        let freezer = (try? String(contentsOfFile: "/sys/fs/cgroup/freezer/lxd-swift/\(member)/\(leaf)/freezer.state", encoding: .utf8)) ?? ""
        if freezer.hasPrefix("FROZEN") { return false }
        let procs = (try? String(contentsOfFile: "/sys/fs/cgroup/pids/lxd-swift/\(member)/\(leaf)/cgroup.procs", encoding: .utf8)) ?? ""
        for pid in procs.split(separator: "\n") {
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { continue }
            let state = stat[stat.index(close, offsetBy: 2)]
            guard state != "T" && state != "t" && state != "Z" && state != "X" else { continue }
            // A killed task of the source's copy (SIGKILL pending, or PF_EXITING 0x4 in the
            // flags, field 9) shows R while it exits, but never runs its own code again.
            let fields = stat[stat.index(close, offsetBy: 2)...].split(separator: " ")
            if fields.count > 6, let flags = UInt64(fields[6]), flags & 0x4 != 0 { continue }
            if let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
               status.split(separator: "\n").contains(where: { line in
                   (line.hasPrefix("SigPnd:") || line.hasPrefix("ShdPnd:"))
                       && (UInt64(line.split(separator: "\t").last.map(String.init) ?? "", radix: 16) ?? 0) & 0x100 != 0
               }) { continue }
            return true
        }
        return false
    }
}

/// Three members on loopback (127.0.0.1-3) for the move tests, and what they read back.
enum MoveCluster {
    /// `environment[i]` and `dataDirs[i]` for member i (0-based) when given; the agents are
    /// appended to `agents` (destroyed by the suite).
    static func form(_ prefix: String, into agents: inout [TestAgent], environment: [Int: [String: String]] = [:],
                     dataDirs: [Int: String] = [:]) throws -> [TestAgent] {
        var members: [TestAgent] = []
        for i in 0..<3 {
            let a = try TestAgent(name: "\(prefix)\(i + 1)", httpsAddress: "127.0.0.\(i + 1):\(TestAgent.freePort())",
                                  dataDir: dataDirs[i], environment: environment[i] ?? [:])
            agents.append(a)
            members.append(a)
        }
        for joiner in members.dropFirst() {
            let token = try #require(try members[0].ok(["cluster", "add", joiner.name]).split(separator: "\n").last.map(String.init))
            let join = try joiner.ctl(["cluster", "join", token])
            try #require(join.status == 0, "join \(joiner.name): \(join.stderr)")
        }
        return members
    }

    /// The instance's member as `lxdctl list` shows it through `a` ("" when absent).
    static func location(_ a: TestAgent, _ name: String) throws -> String {
        for line in try a.ok(["list", "--format", "csv"]).split(separator: "\n") {
            let fields = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            if fields.first == name { return fields.last ?? "" }
        }
        return ""
    }

    /// The counter image's init count.
    static func counter(_ a: TestAgent, _ name: String) throws -> Int {
        Int(try a.ok(["exec", name, "--", "cat", "/run/counter"]).trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
    }
}
