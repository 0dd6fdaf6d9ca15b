import APITypes
import Foundation
import IdentityGenerator
import LXDClient
import Testing

/// Faults of a real three-member cluster: the database leader's agent dies with SIGKILL while
/// every member runs a container. Timings are printed, never asserted (a loaded machine is slow,
/// not wrong): scripts/bench/cluster measures them ("leader kill -> first write", offline
/// detection). The bounds here only catch a hang.
@Suite(.serialized, .enabled(if: Prerequisites.available, "needs root, busybox and the built binaries"))
final class ClusterFaultTests {
    var agents: [TestAgent] = []

    deinit {
        for a in agents.reversed() { a.destroy() }
    }

    /// Own member names: cgroups are per member name, and other suites use m1-m3.
    func agent(_ n: Int) throws -> TestAgent {
        let a = try TestAgent(name: "kf\(n)", httpsAddress: "127.0.0.\(n):\(TestAgent.freePort())")
        agents.append(a)
        return a
    }

    func join(_ a: TestAgent, via issuer: TestAgent) throws {
        let token = try #require(try issuer.ok(["cluster", "add", a.name]).split(separator: "\n").last.map(String.init))
        let r = try a.ctl(["cluster", "join", token])
        #expect(r.status == 0, "join \(a.name): \(r.stderr)\n\(a.logTail())")
    }

    func members(_ a: TestAgent) async throws -> [ClusterMemberInfo] {
        try await LXDClient.unixSocket(a.socket).clusterMembers()
    }

    func status(_ name: String, from a: TestAgent) async -> MemberStatus? {
        try? await members(a).first { $0.serverName == name }?.status
    }

    /// Waits until `body` holds; false (and an issue recorded) after `timeout` seconds.
    @discardableResult
    func eventually(_ what: String, timeout: Double = 30, _ body: () async throws -> Bool) async -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if (try? await body()) == true { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        Issue.record("timed out after \(timeout) s waiting for: \(what)")
        return false
    }

    @Test func leaderKillWritesGoOnAndTheMemberCatchesUp() async throws {
        let all = [try agent(1), try agent(2), try agent(3)]
        try join(all[1], via: all[0])
        try join(all[2], via: all[0])
        guard await eventually("three online voters", timeout: 30, {
            try await members(all[0]).filter { $0.database == "voter" && $0.status == .online }.count == 3
        }) else { return }

        // A container on every member (the image comes from the first; the others fetch it).
        try all[0].importBusybox(alias: "bb")
        for a in all { try all[0].ok(["launch", "bb", "c-\(a.name)", "--target", a.name]) }

        let view = try await members(all[0])
        let leaderName = try #require(view.first { $0.roles.contains("database-leader") }?.serverName,
                                      "no member reports the database-leader role: \(view)")
        let leader = try #require(all.first { $0.name == leaderName })
        let survivors = all.filter { $0 !== leader }
        let pidBefore = try #require(await Self.containerPID(of: "c-\(leader.name)", from: leader))

        leader.kill9()
        let killed = Date()
        // Writes through the others: each member changes its own container's config (a database
        // write, nothing forwarded), retried every 20 ms.
        var firstWrite: Double?
        while Date().timeIntervalSince(killed) < 30 {
            if try survivors[0].ctl(["config", "set", "c-\(survivors[0].name)", "user.fault", "1"]).status == 0 {
                firstWrite = Date().timeIntervalSince(killed)
                break
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        let written = try #require(firstWrite, "no write through \(survivors[0].name) within 30 s of killing the leader:\n\(survivors[0].logTail())")
        try survivors[1].ok(["config", "set", "c-\(survivors[1].name)", "user.fault", "1"])
        try survivors[1].ok(["launch", "bb", "late", "--target", survivors[0].name])
        let writesDone = Date().timeIntervalSince(killed)
        // A write only the restarted member's own database copy can show it.
        let pem = "\(survivors[1].dataDir)/down.crt"
        try IdentityGenerator.generate(commonName: "down").certificatePEM.write(toFile: pem, atomically: true, encoding: .utf8)
        try survivors[1].ok(["config", "trust", "add-certificate", pem, "--name", "while-leader-is-down"])

        await eventually("\(leader.name) OFFLINE seen from \(survivors[0].name)", timeout: 30) {
            await status(leader.name, from: survivors[0]) == .offline
        }
        let offline = Date().timeIntervalSince(killed)
        print("leader kill: first write after \(String(format: "%.2f", written)) s, launch done after \(String(format: "%.2f", writesDone)) s, OFFLINE after \(String(format: "%.2f", offline)) s")

        // Restart on the same data directory: it catches up, shows ONLINE, and re-adopts its
        // container (same process, still running).
        let restarted = Date()
        try leader.start()
        await eventually("\(leader.name) ONLINE seen from \(survivors[0].name)") {
            await status(leader.name, from: survivors[0]) == .online
        }
        await eventually("\(leader.name) ONLINE in its own view") { await status(leader.name, from: leader) == .online }
        print("restart: ONLINE after \(String(format: "%.2f", Date().timeIntervalSince(restarted))) s")
        #expect(try leader.ok(["config", "trust", "list", "--format", "csv"]).contains("while-leader-is-down"))
        let rows = try leader.ok(["list", "--format", "csv"])
        #expect(rows.contains("late,"), "the instance launched while \(leader.name) was down: \(rows)")
        #expect(await Self.containerPID(of: "c-\(leader.name)", from: leader) == pidBefore, "container not re-adopted:\n\(leader.logTail())")
        let exec = try leader.ctl(["exec", "c-\(leader.name)", "--", "true"])
        #expect(exec.status == 0, "exec in the re-adopted container: \(exec.stderr)")
        let seen = try leader.ok(["config", "get", "c-\(survivors[0].name)", "user.fault"])
        #expect(seen.trimmingCharacters(in: .whitespacesAndNewlines) == "1", "user.fault seen from \(leader.name): \(seen)")
        await eventually("three online voters again", timeout: 30) {
            try await members(leader).filter { $0.database == "voter" && $0.status == .online }.count == 3
        }
    }

    /// The container's init PID as its owner reports it.
    static func containerPID(of name: String, from a: TestAgent) async -> Int? {
        guard let state = try? await LXDClient.unixSocket(a.socket).instanceState(name), state.pid > 0 else { return nil }
        return Int(state.pid)
    }
}
