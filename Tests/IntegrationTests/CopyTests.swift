import Foundation
import Testing

/// Copies between three real members on loopback: a stopped instance to its own member and to
/// another, a running one from a freeze, and the refusals, each checked on the hosts' files.
@Suite(.serialized, .enabled(if: Prerequisites.available, "needs root, busybox and the built binaries"))
final class CopyTests {
    var agents: [TestAgent] = []

    deinit {
        for a in agents.reversed() { a.destroy() }
    }

    func location(_ a: TestAgent, _ name: String) throws -> String { try MoveCluster.location(a, name) }

    /// The host owner ("uid:gid") of a path in the instance's upper directory on `member`.
    func hostOwner(_ member: TestAgent, _ instance: String, _ path: String) -> String? {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: "\(member.dataDir)/containers/default_\(instance)/upper\(path)"),
              let uid = attributes[.ownerAccountID] as? NSNumber, let gid = attributes[.groupOwnerAccountID] as? NSNumber else { return nil }
        return "\(uid):\(gid)"
    }

    static let checksum = "find / -xdev \\( -path /proc -o -path /sys -o -path /dev -o -path /run \\) -prune -o -exec stat -c '%n %a %u %g %s %h %F %Y' {} + | sort; cat /root/new /etc/hostname /srv/d/e/f"

    @Test func aStoppedInstanceCopiesToItsMemberAndAnotherWithOwnersShifted() throws {
        let members = try MoveCluster.form("cp", into: &agents)
        let (m1, m2, m3) = (members[0], members[1], members[2])
        try m1.importBusybox(alias: "bb")
        try m1.ok(["launch", "bb", "c1", "--target", m1.name])
        // Added, changed and deleted (whiteouts, an opaque directory), a hard link, a fifo, a
        // sparse file, a setuid file and an owner other than root.
        try m1.ok(["exec", "c1", "--", "sh", "-c", """
            echo added > /root/new && echo changed >> /etc/hostname && rm /etc/group /bin/ed && mkdir -p /srv/d/e \
            && echo deep > /srv/d/e/f && ln /srv/d/e/f /srv/link && mkfifo /srv/fifo && chmod 4711 /root/new \
            && chown 1234:5678 /srv/d/e/f && rm -rf /usr/sbin && mkdir /usr/sbin && echo fresh > /usr/sbin/only \
            && dd if=/dev/zero of=/srv/sparse bs=1 count=1 seek=100000000 2>/dev/null
            """])
        let before = try m1.ok(["exec", "c1", "--", "sh", "-c", Self.checksum])
        try m1.ok(["stop", "c1"])
        let sourceBase = try #require(Int(try m1.ok(["config", "get", "c1", "volatile.idmap.base"]).trimmingCharacters(in: .whitespacesAndNewlines)))

        // Sent to m2, which does not hold c1: forwarded to m1, the copy stays on m1.
        let here = try m2.ctl(["copy", "c1", "c2"])
        #expect(here.status == 0, "copy on the source's member: \(here.stderr)\n\(m1.logTail())")
        #expect(try location(m1, "c2") == m1.name)
        let other = try m1.ctl(["copy", "c1", "c3", "--target", m3.name])
        #expect(other.status == 0, "copy to m3: \(other.stderr)\n\(m1.logTail())\n\(m3.logTail())")
        #expect(try location(m1, "c3") == m3.name)
        print("\(here.stdout)\(other.stdout)", terminator: "")
        #expect(try m1.ok(["list", "--format", "csv"]).contains("c3,STOPPED"))

        for (name, member) in [("c2", m1), ("c3", m3)] {
            let config = try m1.ok(["config", "show", name])
            let base = try #require(Int(try m1.ok(["config", "get", name, "volatile.idmap.base"]).trimmingCharacters(in: .whitespacesAndNewlines)))
            #expect(base != sourceBase, "\(name) has an id block of its own")
            #expect(!config.contains("volatile.apply_template: create"), "\(name): \(config)")
            // On the host: the container's root and uid 1234 are the copy's, a whiteout stays host root's.
            #expect(hostOwner(member, name, "/root/new") == "\(base):\(base)", "\(name) /root/new")
            #expect(hostOwner(member, name, "/srv/d/e/f") == "\(base + 1234):\(base + 5678)", "\(name) /srv/d/e/f")
            #expect(hostOwner(member, name, "/etc/group") == "0:0", "\(name) whiteout")
            print("\(name) on \(member.name): block \(base) (source \(sourceBase)); /srv/d/e/f host owner \(hostOwner(member, name, "/srv/d/e/f") ?? "-")")
            try m1.ok(["start", name])
            let after = try m1.ok(["exec", name, "--", "sh", "-c", Self.checksum])
            #expect(after == before, "\(name) reads back identical")
            #expect(try m1.ok(["exec", name, "--", "ls", "/usr/sbin"]).trimmingCharacters(in: .whitespacesAndNewlines) == "only")
        }
        // Independent: a change in one is not in the others.
        try m1.ok(["exec", "c2", "--", "sh", "-c", "echo mine > /root/own"])
        #expect(try m1.ctl(["exec", "c3", "--", "cat", "/root/own"]).status != 0)
        try m1.ok(["start", "c1"])
        #expect(try m1.ctl(["exec", "c1", "--", "cat", "/root/own"]).status != 0)
        try m1.ok(["stop", "--force", "c1"])

        // Refusals: LXD's error shape, nothing created anywhere.
        let names = { (a: TestAgent) in try a.ok(["list", "--format", "csv"]).split(separator: "\n").compactMap { $0.split(separator: ",").first.map(String.init) }.sorted() }
        let namesBefore = try names(m1)
        for (args, message) in [
            (["copy", "nope", "c9"], "not found"),
            (["copy", "c1", "c2"], "already exists"),
            (["copy", "c1", "9bad"], "Invalid instance name"),
            (["copy", "c1", "c9", "--target", "nosuch"], "nosuch"),
            (["copy", "c2", "c9", "--stateless"], "running"),
        ] {
            let r = try m2.ctl(args)
            #expect(r.status != 0 && r.stderr.contains(message), "\(args): \(r.stderr)")
            print("refused \(args.joined(separator: " ")): \(r.stderr.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        // A copy that fails midway leaves nothing: a file of c1's upper owned outside its block
        // (made from the host) is refused by the applier, here and on m3.
        let stray = "\(m1.dataDir)/containers/default_c1/upper/root/stray"
        try "x".write(toFile: stray, atomically: false, encoding: .utf8)
        #expect(chown(stray, 1000, 1000) == 0)
        for args in [["copy", "c1", "c9"], ["copy", "c1", "c9", "--target", m3.name]] {
            let r = try m1.ctl(args)
            #expect(r.status != 0 && r.stderr.contains("outside"), "\(args): \(r.stderr)")
            print("failed \(args.joined(separator: " ")): \(r.stderr.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        unlink(stray)
        usleep(500_000)   // the target drops its part asynchronously
        #expect(try names(m1) == namesBefore)
        for member in [m1, m3] {
            #expect(!FileManager.default.fileExists(atPath: "\(member.dataDir)/containers/default_c9"), "no c9 on \(member.name)")
        }
        m2.stop()
        try eventually("m2 OFFLINE", timeout: 60) { try self.memberStatus(m1, m2.name) == "OFFLINE" }
        let offline = try m1.ctl(["copy", "c1", "c9", "--target", m2.name])
        #expect(offline.status != 0 && offline.stderr.lowercased().contains("offline"), "\(offline.stderr)")
        print("refused copy to an OFFLINE member: \(offline.stderr.trimmingCharacters(in: .whitespacesAndNewlines))")
        #expect(try names(m1) == namesBefore)
        for member in [m1, m3] {
            #expect(!FileManager.default.fileExists(atPath: "\(member.dataDir)/containers/default_c9"), "no c9 on \(member.name)")
        }
        for name in ["c1", "c2", "c3"] { try m1.ok(["delete", "--force", name]) }
    }

    @Test func aRunningInstanceIsCopiedFromAFreezeAndKeepsRunning() throws {
        let members = try MoveCluster.form("cl", into: &agents)
        let (m1, m2) = (members[0], members[1])
        try m1.importBusybox(alias: "counter", initKind: "counter")
        try m1.ok(["launch", "counter", "r1", "--target", m1.name])
        // A writer that keeps changing files while the copy runs.
        try m1.ok(["exec", "r1", "--", "sh", "-c",
                   "while :; do cat /run/counter >> /root/log; usleep 20000; done </dev/null >/dev/null 2>&1 &"])
        try m1.ok(["exec", "r1", "--", "sh", "-c", "echo kept > /root/file"])
        usleep(300_000)
        let counterBefore = try MoveCluster.counter(m1, "r1")
        for (copy, target) in [("r2", m1), ("r3", m2)] {
            let r = try m1.ctl(["copy", "r1", copy, "--target", target.name])
            #expect(r.status == 0, "live copy to \(target.name): \(r.stderr)\n\(m1.logTail())")
            print(r.stdout, terminator: "")
            #expect(try m1.ok(["list", "--format", "csv"]).contains("\(copy),STOPPED"), "the copy is created stopped")
            let markers = (try? FileManager.default.contentsOfDirectory(atPath: "\(m1.dataDir)/containers/default_r1")) ?? []
            #expect(!markers.contains { $0.hasPrefix("copy-source-") }, "the copy's marker is gone: \(markers)")
            try m1.ok(["start", copy])
            #expect(try m1.ok(["exec", copy, "--", "cat", "/root/file"]).contains("kept"))
            // Every line of the copied log is whole: the last round was taken frozen.
            let log = try m1.ok(["exec", copy, "--", "cat", "/root/log"]).split(separator: "\n", omittingEmptySubsequences: false)
            #expect(log.dropLast().allSatisfy { Int($0) != nil } && log.last == "", "whole lines: \(log.suffix(3))")
            try m1.ok(["stop", "--force", copy])
        }
        // The source kept running and counting.
        #expect(try m1.ok(["list", "--format", "csv"]).contains("r1,RUNNING"))
        usleep(300_000)
        #expect(try MoveCluster.counter(m1, "r1") > counterBefore)
        for name in ["r1", "r2", "r3"] { try m1.ok(["delete", "--force", name]) }
    }

    /// Copies cut by a crash: the target's agent killed mid-transfer (it removes its half copy
    /// when it restarts; the source removed the row), then the source's (the target's watchdog
    /// removes the row and its files after 45 s of silence); a source an agent left frozen for
    /// a copy is thawed when that agent restarts. The source runs on throughout.
    @Test func copiesCutByACrashLeaveNothing() throws {
        let members = try MoveCluster.form("cf", into: &agents)
        let (m1, m2, m3) = (members[0], members[1], members[2])
        m1.waitForVoters(members.map(\.name))
        try m1.importBusybox(alias: "counter", initKind: "counter")
        try m1.ok(["launch", "counter", "c1", "--target", m1.name])
        // A large root filesystem change, so the copy lasts long enough to be cut.
        try m1.ok(["exec", "c1", "--", "dd", "if=/dev/zero", "of=/root/big", "bs=1M", "count=400"])
        let dir = { (a: TestAgent, name: String) in "\(a.dataDir)/containers/default_\(name)" }
        let gone = { (name: String) -> Bool in
            (try? self.location(m3, name)) == "" && !FileManager.default.fileExists(atPath: dir(m1, name))
                && !FileManager.default.fileExists(atPath: dir(m2, name))
        }

        // The target dies mid-transfer.
        var result = background(m3, ["copy", "c1", "c2", "--target", m2.name])
        #expect(waitFor(seconds: 60) { FileManager.default.fileExists(atPath: dir(m2, "c2") + "/upper/root/big") }, "the copy reached m2")
        m2.kill9()
        let cut = result()
        #expect(cut?.status != 0, "the copy fails: \(cut?.stdout ?? "no result")")
        print("target killed: \(cut?.stderr.trimmingCharacters(in: .whitespacesAndNewlines) ?? "no result")")
        try m2.start()
        #expect(waitFor(seconds: 30) { gone("c2") }, "no c2 row nor files:\n\(m2.logTail())")

        // The source's agent dies mid-transfer: the target's watchdog cleans up.
        result = background(m3, ["copy", "c1", "c3", "--target", m2.name])
        #expect(waitFor(seconds: 60) { FileManager.default.fileExists(atPath: dir(m2, "c3") + "/upper/root/big") }, "the copy reached m2")
        m1.kill9()
        _ = result()
        #expect(waitFor(seconds: 90) { (try? self.location(m3, "c3")) == "" && !FileManager.default.fileExists(atPath: dir(m2, "c3")) },
                "m2 dropped the copy whose source died:\n\(m2.logTail())")
        try m1.start()
        #expect(waitFor(seconds: 30) { gone("c3") }, "no c3 anywhere")
        #expect(try m3.ok(["list", "--format", "csv"]).contains("c1,RUNNING"), "the source runs on")

        // An agent that dies while a copy's source is frozen thaws it at its restart.
        let freezer = "/sys/fs/cgroup/freezer/lxd-swift/\(m1.name)/default_c1/freezer.state"
        if FileManager.default.fileExists(atPath: freezer) {
            let marker = #"{"token":"0123456789abcdef0123456789abcdef","project":"default","source":"c1","copy":"c4","target":"cf2"}"#
            let markerPath = dir(m1, "c1") + "/copy-source-0123456789abcdef0123456789abcdef.json"
            try marker.write(toFile: markerPath, atomically: true, encoding: .utf8)
            m1.kill9()
            try "FROZEN".write(toFile: freezer, atomically: false, encoding: .utf8)
            #expect(waitFor(seconds: 10) { (try? String(contentsOfFile: freezer, encoding: .utf8))?.hasPrefix("FROZEN") == true })
            try m1.start()
            #expect(waitFor(seconds: 30) { (try? String(contentsOfFile: freezer, encoding: .utf8))?.hasPrefix("THAWED") == true },
                    "thawed at the restart:\n\(m1.logTail())")
            // Thawed first; the marker goes once the row is settled and the target told, which
            // waits for the database after the restart.
            #expect(waitFor(seconds: 30) { !FileManager.default.fileExists(atPath: markerPath) }, "the marker is settled:\n\(m1.logTail())")
            let first = try MoveCluster.counter(m1, "c1")
            usleep(400_000)
            #expect(try MoveCluster.counter(m1, "c1") > first, "c1 counts again")
        } else {
            print("skipped the thaw-at-restart part: no v1 freezer at \(freezer)")
        }
        try m1.ok(["delete", "--force", "c1"])
    }

    static let lxc = "/usr/bin/lxc"

    /// Debian's `lxc` 5.0.2 (package lxd-client) sends its own copy request (the source's
    /// config with the `cluster_internal_copy` local-copy shape): to the source's member, to
    /// another with --target, live from a running source; --stateless on it is refused.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: lxc), "needs LXD's client at /usr/bin/lxc (apt-get install lxd-client)"))
    func lxcCopyWorksAgainstTheCluster() throws {
        let members = try MoveCluster.form("lx", into: &agents)
        let (m1, m2, m3) = (members[0], members[1], members[2])
        try m1.importBusybox(alias: "bb")
        try m1.ok(["launch", "bb", "s1", "--target", m1.name])
        try m1.ok(["exec", "s1", "--", "sh", "-c", "echo from-s1 > /root/mark"])
        let home = m2.dataDir + "/lxc-home"
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
        let environment = ["LXD_DIR": m2.dataDir, "HOME": home]
        for (args, member) in [(["copy", "s1", "l1"], m1), (["copy", "s1", "l2", "--target", m3.name], m3)] {
            let (r, timedOut) = try run(Self.lxc, args, environment: environment, timeout: 120)
            #expect(!timedOut && r.status == 0, "lxc \(args): \(r.stdout) \(r.stderr)\n\(m1.logTail())")
            let name = args[2]
            #expect(try location(m1, name) == member.name)
            try m1.ok(["start", name])
            #expect(try m1.ok(["exec", name, "--", "cat", "/root/mark"]) == "from-s1\n")
        }
        let (stateless, _) = try run(Self.lxc, ["copy", "s1", "l3", "--stateless"], environment: environment, timeout: 60)
        #expect(stateless.status != 0 && stateless.stderr.contains("running"), "lxc copy --stateless: \(stateless.stderr)")
        print("lxc copy --stateless of a running instance: \(stateless.stderr.trimmingCharacters(in: .whitespacesAndNewlines))")
        #expect(try location(m1, "l3") == "")
        #expect(try m1.ok(["list", "--format", "csv"]).contains("s1,RUNNING"))
        for name in ["s1", "l1", "l2"] { try m1.ok(["delete", "--force", name]) }
    }

    func memberStatus(_ a: TestAgent, _ name: String) throws -> String {
        for line in try a.ok(["cluster", "list", "--format", "csv"]).split(separator: "\n") {
            let fields = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            if fields.first == name, fields.count > 3 { return fields[3] }
        }
        return ""
    }

    func eventually(_ what: String, timeout: Double, _ body: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if (try? body()) == true { return }
            usleep(250_000)
        }
        Issue.record("timed out waiting for \(what)")
    }
}
