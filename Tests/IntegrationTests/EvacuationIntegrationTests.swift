import APITypes
import Foundation
import Gateway
import LXDClient
import Testing

/// Whether instances can move between members: the move (LXD's `POST /1.0/instances/NAME?target=`,
/// backed by `InstanceLifecycle.moveNow`) is in the endpoint table on a build that has it; on one
/// without, an evacuation can only stop instances, so the moving tests are skipped with this reason.
enum ColdMove {
    static var built: Bool { Endpoints.all.contains { $0.method == "POST" && $0.path == "/1.0/instances/{name}" } }
    static let reason: Comment = "instances cannot move yet: no POST /1.0/instances/{name} (LXD's move) in the endpoint table, InstanceLifecycle.moveNow is a stub"
}

/// `lxdctl cluster evacuate` and `restore` on three real members: the member turns EVACUATED
/// (through heartbeats), the scheduler never places on it, its instances are stopped or moved per
/// `cluster.evacuate` and reported, a second evacuation is refused, and restore brings the member
/// back ONLINE with what it stopped running again and what it moved back home.
@Suite(.serialized, .enabled(if: Prerequisites.available, "needs root, busybox and the built binaries"))
final class EvacuationIntegrationTests {
    var agents: [TestAgent] = []

    deinit {
        for a in agents.reversed() { a.destroy() }
    }

    /// name → (state, location), from `lxdctl list` through `a`.
    func instances(_ a: TestAgent) throws -> [String: (state: String, location: String)] {
        var result: [String: (String, String)] = [:]
        for line in try a.ok(["list", "--format", "csv"]).split(separator: "\n") {
            let fields = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            if fields.count >= 5 { result[fields[0]] = (fields[1], fields[fields.count - 1]) }
        }
        return result
    }

    func memberStatus(_ a: TestAgent, _ member: String) throws -> String? {
        for line in try a.ok(["cluster", "list", "--format", "csv"]).split(separator: "\n") {
            let fields = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            if fields.first == member, fields.count >= 4 { return fields[3] }
        }
        return nil
    }

    func cluster(_ prefix: String) throws -> [TestAgent] {
        let members = try (1...3).map { n in
            let a = try TestAgent(name: "\(prefix)\(n)", httpsAddress: "127.0.0.\(n):\(TestAgent.freePort())")
            agents.append(a)
            return a
        }
        for joiner in members.dropFirst() {
            let token = try #require(try members[0].ok(["cluster", "add", joiner.name]).split(separator: "\n").last.map(String.init))
            let join = try joiner.ctl(["cluster", "join", token])
            try #require(join.status == 0, "join \(joiner.name): \(join.stderr)")
        }
        try members[0].importBusybox(alias: "bb")
        return members
    }

    @Test func evacuateStopsAndRestoreRestartsAndNothingLandsMeanwhile() throws {
        let members = try cluster("ev")
        let (m1, m2) = (members[0], members[1])
        // On ev2: one running instance to stop, one stopped that stays; both cluster.evacuate=stop.
        try m1.ok(["launch", "bb", "r1", "--target", "ev2", "-c", "cluster.evacuate=stop"])
        try m1.ok(["launch", "bb", "--count", "1", "--name-prefix", "q", "--no-start", "--target", "ev2", "-c", "cluster.evacuate=stop"])
        #expect(try instances(m1)["r1"]?.state == "RUNNING")
        let q = try #require(try instances(m1).keys.first { $0.hasPrefix("q") })
        // A strict anti-affinity group, one running instance per member: the one on ev2 has
        // nowhere to go, so (auto) it is stopped, and the report says why.
        try m1.ok(["placement-group", "create", "apart", "policy=anti-affinity"])
        for n in 1...3 { try m1.ok(["launch", "bb", "a\(n)", "-c", "placement.group=apart"]) }
        let stuck = try #require(try instances(m1).first { $0.key.hasPrefix("a") && $0.value.location == "ev2" }?.key)

        // Asked through ev1: forwarded to ev2, which runs it.
        let out = try m1.ok(["cluster", "evacuate", "ev2", "--force"])
        print(out)
        #expect(out.contains("r1: stopped (cluster.evacuate=stop)"), "evacuate output: \(out)")
        #expect(out.contains("\(q): left"), "evacuate output: \(out)")
        #expect(out.contains("\(stuck): stopped (no member can take it") && out.contains("anti-affinity"), "evacuate output: \(out)")
        #expect(try instances(m1)[stuck]?.state == "STOPPED")
        #expect(try memberStatus(m1, "ev2") == "EVACUATED")
        #expect(try instances(m1)["r1"]?.state == "STOPPED")

        // Nothing new lands on an EVACUATED member, whoever launches.
        try m2.ok(["launch", "bb", "--count", "6", "--name-prefix", "n", "--no-start"])
        let placed = try instances(m1).filter { $0.key.hasPrefix("n") }
        #expect(placed.count == 6 && !placed.values.contains { $0.location == "ev2" }, "placed during evacuation: \(placed)")
        let pinned = try m1.ctl(["launch", "bb", "p1", "--target", "ev2"])
        #expect(pinned.status != 0 && pinned.stderr.contains("evacuated"), "--target an evacuated member: \(pinned.stderr)")

        // Refused with the reason: evacuating twice, restoring a member that is not evacuated.
        let twice = try m1.ctl(["cluster", "evacuate", "ev2", "--force"])
        #expect(twice.status != 0 && twice.stderr.contains("already evacuated"), "second evacuation: \(twice.stderr)")
        let notEvacuated = try m1.ctl(["cluster", "restore", "ev3", "--force"])
        #expect(notEvacuated.status != 0 && notEvacuated.stderr.contains("not evacuated"), "restore of ev3: \(notEvacuated.stderr)")
        // Heartbeats do not undo it.
        Thread.sleep(forTimeInterval: 3)
        #expect(try memberStatus(m1, "ev2") == "EVACUATED")

        let back = try m2.ok(["cluster", "restore", "ev2", "--force"])
        print(back)
        #expect(back.contains("r1: started") && back.contains("\(stuck): started"), "restore output: \(back)")
        #expect(try memberStatus(m1, "ev2") == "ONLINE")
        let after = try instances(m1)
        #expect(after["r1"]?.state == "RUNNING" && after["r1"]?.location == "ev2")
        #expect(after[q]?.state == "STOPPED" && after[q]?.location == "ev2")
        #expect(after[stuck]?.state == "RUNNING" && after[stuck]?.location == "ev2")
        // And it takes instances again.
        try m1.ok(["launch", "bb", "--count", "1", "--name-prefix", "p", "--no-start", "--target", "ev2"])
    }

    /// Polls `body` every 100 ms for up to `timeout` seconds.
    func eventually(_ what: String, timeout: Double = 30, _ body: () throws -> Bool) {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if (try? body()) == true { return }
            usleep(100_000)
        }
        let logs = agents.map { "==== \($0.name)\n\($0.logTail(6000))" }.joined(separator: "\n")
        Issue.record("timed out waiting for: \(what)\n\(logs)")
    }

    @Test func anOfflineMemberIsNotEvacuatedAndAnEvacuatedOneStaysSoThroughAnOutage() throws {
        let members = try cluster("of")
        let (m1, m2, m3) = (members[0], members[1], members[2])
        try m1.ok(["launch", "bb", "x1", "--target", "of3"])

        // Stopping a member must not take the quorum with it: all three vote first.
        m1.waitForVoters(members.map(\.name))
        // of3 down: evacuating it is refused, and its instance is left where it is.
        m3.stop()
        eventually("of3 OFFLINE") { try memberStatus(m1, "of3") == "OFFLINE" }
        let refused = try m1.ctl(["cluster", "evacuate", "of3", "--force"])
        #expect(refused.status != 0 && refused.stderr.contains("OFFLINE"), "evacuating an OFFLINE member: \(refused.stderr)")
        #expect(try instances(m1)["x1"]?.location == "of3")
        try m3.start()
        eventually("of3 ONLINE again") { try memberStatus(m1, "of3") == "ONLINE" }

        // of3 votes again before of2 goes (a member back from an outage may be promoted late).
        m1.waitForVoters(members.map(\.name))
        // of2 evacuated (nothing on it), then down and back: still EVACUATED until restored.
        try m1.ok(["cluster", "evacuate", "of2", "--force"])
        m2.stop()
        // Two thresholds (5 s each): the leader has judged it OFFLINE by then, and wrote nothing.
        Thread.sleep(forTimeInterval: 10)
        #expect(try memberStatus(m1, "of2") == "EVACUATED")
        try m2.start()
        Thread.sleep(forTimeInterval: 3)
        #expect(try memberStatus(m1, "of2") == "EVACUATED")
        try m1.ok(["cluster", "restore", "of2", "--force"])
        #expect(try memberStatus(m1, "of2") == "ONLINE")
    }

    @Test(.enabled(if: ColdMove.built, ColdMove.reason))
    func evacuateMovesStoppedInstancesAndRestoreBringsThemBack() throws {
        let members = try cluster("mv")
        let m1 = members[0]
        try m1.ok(["launch", "bb", "--count", "3", "--name-prefix", "s", "--no-start", "--target", "mv2"])
        let out = try m1.ok(["cluster", "evacuate", "mv2", "--force"])
        print(out)
        let moved = try instances(m1).filter { $0.key.hasPrefix("s") }
        #expect(moved.count == 3 && moved.values.allSatisfy { $0.location != "mv2" && $0.state == "STOPPED" }, "after evacuate: \(moved)")
        #expect(try memberStatus(m1, "mv2") == "EVACUATED")
        try m1.ok(["cluster", "restore", "mv2", "--force"])
        let home = try instances(m1).filter { $0.key.hasPrefix("s") }
        #expect(home.values.allSatisfy { $0.location == "mv2" && $0.state == "STOPPED" }, "after restore: \(home)")
        #expect(try memberStatus(m1, "mv2") == "ONLINE")
    }

    @Test(.enabled(if: ColdMove.built, ColdMove.reason), .enabled(if: Prerequisites.criuAvailable, "needs CRIU at /usr/local/sbin/criu (scripts/install-criu)"))
    func evacuateMovesARunningInstanceLiveAndRestoreBringsItBackRunning() throws {
        let members = try cluster("lv")
        let m1 = members[0]
        try m1.ok(["launch", "bb", "r1", "--target", "lv2"])
        let out = try m1.ok(["cluster", "evacuate", "lv2", "--force"])
        print(out)
        #expect(out.contains("r1: moved-live to lv"), "evacuate output: \(out)")
        let away = try #require(try instances(m1)["r1"])
        #expect(away.state == "RUNNING" && away.location != "lv2", "after evacuate: \(away)")
        let back = try m1.ok(["cluster", "restore", "lv2", "--force"])
        print(back)
        #expect(back.contains("r1: moved-live to lv2"), "restore output: \(back)")
        let home = try #require(try instances(m1)["r1"])
        #expect(home.state == "RUNNING" && home.location == "lv2", "after restore: \(home)")
    }

    /// The acceptance case: a member holding 30 instances, one of a strict anti-affinity group
    /// held on both other members, and room elsewhere for 5 instances on each (scheduler.memory
    /// overrides: 64 MiB default footprints). 10 move, the rest are left, each with its reason.
    @Test(.enabled(if: ColdMove.built, ColdMove.reason))
    func thirtyInstancesThatCannotAllFitElsewhere() throws {
        let members = try cluster("th")
        let m1 = members[0]
        try m1.ok(["placement-group", "create", "apart", "policy=anti-affinity"])
        for (name, member) in [("a1", "th1"), ("a2", "th3"), ("a3", "th2")] {
            try m1.ok(["launch", "bb", "--count", "1", "--name-prefix", name, "--no-start", "--target", member, "-c", "placement.group=apart"])
        }
        try m1.ok(["launch", "bb", "--count", "29", "--name-prefix", "t", "--no-start", "--target", "th2"])
        let before = try instances(m1)
        let onTwo = before.filter { $0.value.location == "th2" }
        try #require(onTwo.count == 30, "th2 holds \(onTwo.count): \(before)")
        let groupOnTwo = try #require(onTwo.keys.first { $0.hasPrefix("a") })
        // Room for 6 default footprints each: the group's instance there plus 5.
        for member in ["th1", "th3"] { try m1.ok(["cluster", "set", member, "scheduler.memory=384MiB"]) }

        let out = try m1.ok(["cluster", "evacuate", "th2", "--force"])
        print(out)
        let after = try instances(m1)
        let moved = onTwo.keys.filter { after[$0]?.location != "th2" }
        #expect(moved.count == 10, "moved \(moved.count): \(out)")
        #expect(!moved.contains(groupOnTwo))
        #expect(out.contains("\(groupOnTwo): left (no member can take it") && out.contains("anti-affinity"), "evacuate output: \(out)")
        #expect(out.components(separatedBy: ": left (no member can take it").count - 1 == 20, "evacuate output: \(out)")
        #expect(out.contains("memory"), "evacuate output: \(out)")
        #expect(try memberStatus(m1, "th2") == "EVACUATED")

        let back = try m1.ok(["cluster", "restore", "th2", "--force"])
        print(back)
        #expect(try instances(m1).filter { $0.value.location == "th2" }.count == 30)
        #expect(try memberStatus(m1, "th2") == "ONLINE")
    }
}
