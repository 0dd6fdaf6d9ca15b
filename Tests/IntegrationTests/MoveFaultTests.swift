import Foundation
import Testing

/// Live moves (stop-and-copy) that go wrong on purpose. Each ends with the instance running
/// exactly once (every member's cgroups sampled from the host every 50 ms) and nothing of it
/// left on the side that lost.
@Suite(.serialized, .enabled(if: Prerequisites.criuAvailable,
                             "needs root, busybox, the built binaries and CRIU (scripts/install-criu)"))
final class MoveFaultTests {
    var agents: [TestAgent] = []
    var cleanups: [() -> Void] = []

    deinit {
        for a in agents.reversed() { a.destroy() }
        for c in cleanups.reversed() { c() }
    }

    func cluster(_ prefix: String, environment: [Int: [String: String]] = [:], dataDirs: [Int: String] = [:]) throws -> [TestAgent] {
        let members = try MoveCluster.form(prefix, into: &agents, environment: environment, dataDirs: dataDirs)
        // Killing a member must not take the quorum with it.
        members[0].waitForVoters(members.map(\.name))
        return members
    }

    func location(_ a: TestAgent, _ name: String) throws -> String { try MoveCluster.location(a, name) }
    func counter(_ a: TestAgent, _ name: String) throws -> Int { try MoveCluster.counter(a, name) }

    func containerDir(_ a: TestAgent, _ name: String) -> String { "\(a.dataDir)/containers/default_\(name)" }

    /// The instance runs on `member` and counts on.
    func expectRunningOn(_ member: TestAgent, via a: TestAgent, _ name: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        #expect(try location(a, name) == member.name, sourceLocation: sourceLocation)
        #expect(try a.ok(["list", "--format", "csv"]).contains("\(name),RUNNING"), sourceLocation: sourceLocation)
        let first = try counter(a, name)
        usleep(400_000)
        let second = try counter(a, name)
        #expect(second > first, "the counter runs: \(first) -> \(second)", sourceLocation: sourceLocation)
    }

    /// c1 on the first member with 400 MB of root filesystem changes, moved to the second
    /// through the third in the background; returns once the copy reached the target.
    func startLongMove(_ members: [TestAgent]) throws -> (RunningSampler, () -> CommandResult?) {
        let (m1, m2, m3) = (members[0], members[1], members[2])
        try m1.importBusybox(alias: "counter", initKind: "counter")
        try m1.ok(["launch", "counter", "c1", "--target", m1.name])
        // A large root filesystem change, so the copy lasts long enough to be cut.
        try m1.ok(["exec", "c1", "--", "dd", "if=/dev/zero", "of=/root/big", "bs=1M", "count=400"])
        let sampler = RunningSampler(members: members.map(\.name), leaf: "default_c1")
        sampler.start()
        let result = background(m3, ["move", "c1", "--target", m2.name])
        let partial = "\(containerDir(m2, "c1"))/upper/root/big"
        #expect(waitFor(seconds: 60) { FileManager.default.fileExists(atPath: partial) }, "the copy reached the target")
        return (sampler, result)
    }

    /// Post-copy too: its source is frozen (cgroup) and its dump still serving when the restore
    /// fails, and must come back running.
    @Test(arguments: ["stop-and-copy", "post-copy"])
    func restoreFailingOnTheTargetResumesTheSource(mode: String) throws {
        let criu = access("/usr/local/sbin/criu", X_OK) == 0 ? "/usr/local/sbin/criu" : "criu"
        let wrapper = "/tmp/lxd-swift-it-criu-no-restore-\(getpid())"
        try "#!/bin/sh\ncase \"$1\" in restore) echo 'restore refused by the test' >&2; exit 1;; esac\nexec \(criu) \"$@\"\n"
            .write(toFile: wrapper, atomically: true, encoding: .utf8)
        chmod(wrapper, 0o755)
        cleanups.append { unlink(wrapper) }
        let members = try cluster("fr", environment: [1: ["LXD_CRIU": wrapper]])
        let (m1, m2) = (members[0], members[1])
        try m1.importBusybox(alias: "counter", initKind: "counter")
        try m1.ok(["launch", "counter", "c1", "--target", m1.name])
        let sampler = RunningSampler(members: members.map(\.name), leaf: "default_c1")
        sampler.start()
        let move = try m1.ctl(["move", "c1", "--target", m2.name, "--mode", mode])
        sampler.stop()
        #expect(move.status != 0, "the move should fail")
        #expect(move.stderr.contains("restore"), "the error names the failed restore: \(move.stderr)")
        print("refusal: \(move.stderr)")
        try expectRunningOn(m1, via: m1, "c1")
        #expect(!FileManager.default.fileExists(atPath: containerDir(m2, "c1")), "the target's copy is gone")
        #expect(sampler.twice.isEmpty, "ran twice: \(sampler.twice.prefix(3))")
        let counted = try MoveCluster.counter(m1, "c1")
        usleep(500_000)
        #expect(try MoveCluster.counter(m1, "c1") > counted, "the source runs again (not frozen, not stopped)")
        // And it still moves once the target can restore (plain criu on m3).
        try m1.ok(["move", "c1", "--target", members[2].name, "--mode", mode])
        try expectRunningOn(members[2], via: m1, "c1")
    }

    @Test func targetKilledMidTransfer() throws {
        let members = try cluster("fk")
        let (m1, m2, m3) = (members[0], members[1], members[2])
        let (sampler, result) = try startLongMove(members)
        m2.kill9()
        let move = result()
        #expect(move?.status != 0, "the move should fail: \(move?.stdout ?? "no result")")
        print("refusal: \(move?.stderr ?? "none")")
        try expectRunningOn(m1, via: m3, "c1")
        try m2.start()
        #expect(waitFor(seconds: 30) { !FileManager.default.fileExists(atPath: containerDir(m2, "c1")) },
                "the restarted target removed its half copy:\n\(m2.logTail())")
        sampler.stop()
        #expect(sampler.twice.isEmpty, "ran twice: \(sampler.twice.prefix(3))")
    }

    @Test func sourceKilledAfterTheFreezeAndRestarted() throws {
        let members = try cluster("fs")
        let (m1, m2, m3) = (members[0], members[1], members[2])
        try m1.importBusybox(alias: "counter", initKind: "counter")
        try m1.ok(["launch", "counter", "c1", "--target", m1.name])
        // 150 MB of memory, so the images take a while to send after the freeze.
        try m1.ok(["exec", "c1", "--", "sh", "-c",
                   "sh -c 'x=$(head -c 150000000 /dev/zero | tr \"\\\\0\" a); sleep 100000' </dev/null >/dev/null 2>&1 &"])
        usleep(3_000_000)
        let sampler = RunningSampler(members: members.map(\.name), leaf: "default_c1")
        sampler.start()
        let result = background(m3, ["move", "c1", "--target", m2.name])
        // Images arriving on the target: the source is frozen and sending.
        let images = "\(containerDir(m2, "c1"))/state"
        #expect(waitFor(seconds: 60) { ((try? FileManager.default.contentsOfDirectory(atPath: images)) ?? []).contains { $0.hasPrefix("pages-") } },
                "images reached the target")
        m1.kill9()
        _ = result()
        try m1.start()
        // Settled either way: running exactly once, the other side empty.
        var owner = ""
        #expect(waitFor(seconds: 60) {
            owner = (try? self.location(m3, "c1")) ?? ""
            let other = owner == m1.name ? m2 : m1
            return (owner == m1.name || owner == m2.name)
                && ((try? m3.ok(["list", "--format", "csv"]))?.contains("c1,RUNNING") ?? false)
                && !FileManager.default.fileExists(atPath: containerDir(other, "c1"))
        }, "settled: owner \(owner)\n\(m1.logTail())\n\(m2.logTail())")
        print("after the source's crash the instance is on \(owner)")
        try expectRunningOn(owner == m1.name ? m1 : m2, via: m3, "c1")
        sampler.stop()
        #expect(sampler.twice.isEmpty, "ran twice: \(sampler.twice.prefix(3))")
    }

    @Test(.enabled(if: access("/usr/sbin/nft", X_OK) == 0, "needs nft (apt-get install nftables)"))
    func linkCutMidTransfer() throws {
        let members = try cluster("fl")
        let (m1, m2, m3) = (members[0], members[1], members[2])
        let (sampler, result) = try startLongMove(members)
        // Every packet to or from the target's address is dropped (its database link too).
        let table = "lxdswift_it_\(getpid())"
        let cut = try run("/usr/sbin/nft", ["-f", "-"], stdin: """
            table inet \(table) {
              chain out { type filter hook output priority -300; ip daddr 127.0.0.2 drop; ip saddr 127.0.0.2 drop; }
            }
            """)
        try #require(cut.status == 0, "nft: \(cut.stderr)")
        cleanups.append { _ = try? run("/usr/sbin/nft", ["delete", "table", "inet", table]) }
        let move = result()
        _ = try? run("/usr/sbin/nft", ["delete", "table", "inet", table])
        #expect(move?.status != 0, "the move should fail")
        print("refusal: \(move?.stderr ?? "none")")
        try expectRunningOn(m1, via: m3, "c1")
        #expect(waitFor(seconds: 90) { !FileManager.default.fileExists(atPath: containerDir(m2, "c1")) },
                "the target dropped its copy once the link was back:\n\(m2.logTail())")
        sampler.stop()
        #expect(sampler.twice.isEmpty, "ran twice: \(sampler.twice.prefix(3))")
    }

    @Test(.enabled(if: access("/usr/sbin/mkfs.ext4", X_OK) == 0, "needs mkfs.ext4 (apt-get install e2fsprogs)"))
    func targetStorageFull() throws {
        // The target's containers directory on a 64 MiB filesystem of its own; the database
        // stays on the normal disk (dqlite aborts on a full disk).
        let dir = "/tmp/lxd-swift-it-\(getpid())-full"
        let image = "/tmp/lxd-swift-it-\(getpid())-full.img"
        try FileManager.default.createDirectory(atPath: "\(dir)/containers", withIntermediateDirectories: true)
        try #require(try run("/usr/bin/truncate", ["-s", "64M", image]).status == 0)
        try #require(try run("/usr/sbin/mkfs.ext4", ["-q", "-F", image]).status == 0)
        let mount = try run("/bin/mount", ["-o", "loop", image, "\(dir)/containers"])
        try #require(mount.status == 0, "mount: \(mount.stderr)")
        cleanups.append {
            _ = try? run("/bin/umount", ["-l", "\(dir)/containers"])
            unlink(image)
        }
        let members = try cluster("ff", dataDirs: [1: dir])
        let (m1, m2) = (members[0], members[1])
        try m1.importBusybox(alias: "counter", initKind: "counter")
        try m1.ok(["launch", "counter", "c1", "--target", m1.name])
        try m1.ok(["exec", "c1", "--", "dd", "if=/dev/zero", "of=/root/big", "bs=1M", "count=100"])
        let sampler = RunningSampler(members: members.map(\.name), leaf: "default_c1")
        sampler.start()
        let move = try m1.ctl(["move", "c1", "--target", m2.name])
        sampler.stop()
        #expect(move.status != 0, "the move should fail")
        #expect(move.stderr.lowercased().contains("space"), "the error says the target is full: \(move.stderr)")
        print("refusal: \(move.stderr)")
        try expectRunningOn(m1, via: m1, "c1")
        #expect(waitFor(seconds: 30) { !FileManager.default.fileExists(atPath: containerDir(m2, "c1")) }, "the target's copy is gone")
        #expect(sampler.twice.isEmpty, "ran twice: \(sampler.twice.prefix(3))")
    }
}

/// A result handed from a background thread.
/// Runs `lxdctl` on `a` in the background; the result arrives when it ends (at most 180 s).
func background(_ a: TestAgent, _ args: [String]) -> () -> CommandResult? {
    let box = ResultBox()
    let t = Thread { box.set(try? a.ctl(args)) }
    t.start()
    return { box.wait(seconds: 180) }
}

/// Polls `condition` every 20 ms for up to `seconds`; true when it held.
func waitFor(seconds: Double, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if condition() { return true }
        usleep(20_000)
    }
    return false
}

final class ResultBox: @unchecked Sendable {
    // @unchecked: `value` is guarded by `condition`.
    private let condition = NSCondition()
    private var value: CommandResult??

    func set(_ v: CommandResult?) {
        condition.lock()
        value = .some(v)
        condition.broadcast()
        condition.unlock()
    }

    func wait(seconds: Double) -> CommandResult? {
        let deadline = Date().addingTimeInterval(seconds)
        condition.lock()
        defer { condition.unlock() }
        while value == nil, condition.wait(until: deadline) {}
        return value ?? nil
    }
}
