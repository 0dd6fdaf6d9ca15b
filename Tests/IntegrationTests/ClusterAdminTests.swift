import APITypes
import Foundation
import LXDClient
import Testing

/// The operator side of clustering with real agents on 127.0.0.1-3: enabling, preseeds, member
/// settings, forced removal and recovery from quorum loss (docs/clustering.md).
@Suite(.serialized, .enabled(if: Prerequisites.available, "needs root, busybox and the built binaries"))
final class ClusterAdminTests {
    var agents: [TestAgent] = []

    deinit {
        for a in agents.reversed() { a.destroy() }
    }

    func agent(_ n: Int, name: String, preseed: String? = nil) throws -> TestAgent {
        let address = "127.0.0.\(n):\(TestAgent.freePort())"
        return try agent(n, name: name, address: address, preseed: preseed.map { $0.replacingOccurrences(of: "ADDRESS", with: address) })
    }

    /// An agent whose first start applies `preseed` (written into its fresh data directory).
    func agent(_ n: Int, name: String, address: String, preseed: String?) throws -> TestAgent {
        let dir = "/tmp/lxd-swift-it-\(getpid())-\(UUID().uuidString.prefix(8))"
        var extra: [String] = []
        if let preseed {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try preseed.write(toFile: "\(dir)/preseed.yaml", atomically: true, encoding: .utf8)
            extra = ["--preseed", "\(dir)/preseed.yaml"]
        }
        let a = try TestAgent(name: name, httpsAddress: address, extraArguments: extra, dataDir: dir)
        agents.append(a)
        return a
    }

    func token(from issuer: TestAgent, for name: String) throws -> String {
        try #require(try issuer.ok(["cluster", "add", name]).split(separator: "\n").last.map(String.init))
    }

    /// name -> csv fields of `cluster list` on `a` (name, url, database, status, failure domain, message).
    func members(_ a: TestAgent) throws -> [String: [String]] {
        var result: [String: [String]] = [:]
        for line in try a.ok(["cluster", "list", "--format", "csv"]).split(separator: "\n") {
            let f = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            result[f[0]] = f
        }
        return result
    }

    func eventually(_ what: String, timeout: Double = 20, _ body: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if (try? body()) == true { return }
            usleep(100_000)
        }
        Issue.record("timed out waiting for: \(what)\n\(logs())")
    }

    /// Every member's recent log: the cause of a failure seen on one member is often on another.
    func logs() -> String {
        agents.map { "==== log of \($0.name)\n\($0.logTail(20000))" }.joined(separator: "\n")
    }

    func clusterInfo(_ a: TestAgent) async throws -> ClusterInfo {
        let client = LXDClient.unixSocket(a.socket)
        defer { Task { await client.transport.shutdown() } }
        return try await client.clusterInfo()
    }

    /// Runs lxdd with `args` and a private data directory; returns its result and whether it created member.json.
    func lxddOnce(_ args: [String]) throws -> (CommandResult, created: Bool) {
        let dir = "/tmp/lxd-swift-it-\(getpid())-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try run(Paths.lxdd, ["--data-dir", dir] + args)
        return (r, FileManager.default.fileExists(atPath: "\(dir)/member.json"))
    }

    @Test func enableNamesTheMemberAndIsRefusedWithoutHTTPS() async throws {
        // No HTTPS listener: refused, telling the operator what to do.
        let plain = try TestAgent(name: "plain")
        agents.append(plain)
        let refused = try plain.ctl(["cluster", "enable", "plain"])
        #expect(refused.status != 0 && refused.stderr.contains("--https-address"), "\(refused.stderr)")
        #expect(try await clusterInfo(plain).enabled == false)

        // Enabling under another name renames the member (the agent restarts under it), but not
        // while it has instances (their cgroups carry the member's name).
        let a = try agent(1, name: "first")
        #expect(try await clusterInfo(a) == ClusterInfo(serverName: "first", enabled: false))
        try a.importBusybox(alias: "bb")
        try a.ok(["launch", "bb", "c1"])
        let busy = try a.ctl(["cluster", "enable", "boot"])
        #expect(busy.status != 0 && busy.stderr.contains("while it has instances"), "\(busy.stderr)")
        #expect(try await clusterInfo(a) == ClusterInfo(serverName: "first", enabled: false))
        try a.ok(["delete", "--force", "c1"])
        let bad = try a.ctl(["cluster", "enable", "no/slashes"])
        #expect(bad.status != 0 && bad.stderr.contains("Invalid member name"), "\(bad.stderr)")
        try a.ok(["cluster", "enable", "boot"])
        #expect(try await clusterInfo(a) == ClusterInfo(serverName: "boot", enabled: true))
        #expect(try Set(members(a).keys) == ["boot"])
        // Again with the same name: nothing to do; another name: refused.
        try a.ok(["cluster", "enable", "boot"])
        let rename = try a.ctl(["cluster", "enable", "other"])
        #expect(rename.status != 0 && rename.stderr.contains("already enabled"), "\(rename.stderr)")

        // The renamed member admits a new one under the new name.
        let b = try agent(2, name: "second")
        let join = try b.ctl(["cluster", "join", try token(from: a, for: "second")])
        #expect(join.status == 0, "join: \(join.stderr)\n\(b.logTail())")
        try eventually("two members seen from the joiner") { try Set(members(b).keys) == ["boot", "second"] }
        #expect(try await clusterInfo(b) == ClusterInfo(serverName: "second", enabled: true))
    }

    @Test func badPreseedsAreRefusedNamingTheKeyAndCreateNothing() throws {
        let cases: [(yaml: String, expect: String)] = [
            ("cluster:\n  server_name: m1\n  enabled: maybe\nconfig:\n  core.https_address: 127.0.0.1:8443\n", "cluster.enabled must be true or false"),
            ("cluster:\n  server_name: m1\n  enabled: true\n  colour: blue\nconfig:\n  core.https_address: 127.0.0.1:8443\n", "cluster.colour is not a known key"),
            ("clusters:\n  enabled: true\n", "clusters is not a known key"),
            ("config:\n  core.https_address: 127.0.0.1\ncluster:\n  server_name: m1\n  enabled: true\n", "config.core.https_address \"127.0.0.1\" is not a host:port address"),
            ("config:\n  core.https_address: [1, 2]\n", "config.core.https_address must be text"),
            ("cluster:\n  server_name: m1\n  enabled: true\n", "config.core.https_address is required"),
            ("config:\n  core.https_address: 127.0.0.1:8443\ncluster:\n  enabled: true\n", "cluster.server_name is required"),
            ("config:\n  core.https_address: 127.0.0.1:8443\ncluster:\n  server_name: m1\n  enabled: true\n  cluster_token: not-a-token\n", "cluster.cluster_token"),
            ("config:\n  core.https_address: 127.0.0.1:8443\ncluster:\n  server_name: m1\n  enabled: true\n  member_config:\n    bogus.key: 1\n", "cluster.member_config Unknown configuration key: bogus.key"),
            ("config:\n  core.https_address: 127.0.0.1:8443\ncluster:\n  server_name: m1\n  enabled: true\n  failure_domain: two words\n", "cluster.failure_domain"),
            ("config: [unclosed\n", "not valid YAML"),
        ]
        for (yaml, expected) in cases {
            let file = "/tmp/lxd-swift-it-preseed-\(getpid()).yaml"
            try yaml.write(toFile: file, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(atPath: file) }
            let (r, created) = try lxddOnce(["--preseed", file])
            #expect(r.status != 0, "accepted: \(yaml)")
            #expect(r.stderr.contains(expected), "for \(yaml.debugDescription): \(r.stderr)")
            #expect(!created, "a refused preseed created member.json: \(yaml)")
        }
        // A flag that contradicts the preseed is refused too.
        let file = "/tmp/lxd-swift-it-preseed-\(getpid()).yaml"
        try "config:\n  core.https_address: 127.0.0.1:8443\ncluster:\n  server_name: m1\n  enabled: true\n".write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        let (r, created) = try lxddOnce(["--preseed", file, "--https-address", "127.0.0.2:8443"])
        #expect(r.status != 0 && r.stderr.contains("differs from --https-address"), "\(r.stderr)")
        #expect(!created)
    }

    @Test func preseedBootstrapJoinMemberSettingsAndForcedRemoval() async throws {
        let m1 = try agent(1, name: "m1", preseed: """
            config:
              core.https_address: ADDRESS
            cluster:
              server_name: m1
              enabled: true
              failure_domain: rack1
              member_config:
                user.note: first
            """)
        #expect(try await clusterInfo(m1) == ClusterInfo(serverName: "m1", enabled: true))
        #expect(try members(m1)["m1"]?[4] == "rack1")
        #expect(try m1.ok(["cluster", "show", "m1"]).contains("user.note: first"))

        // m2 joins from a preseed on its first start: it comes up already a member.
        let m1Address = try #require(m1.httpsAddress)
        let m2 = try agent(2, name: "m2", preseed: """
            config:
              core.https_address: ADDRESS
            cluster:
              server_name: m2
              enabled: true
              failure_domain: rack2
              cluster_token: \(try token(from: m1, for: "m2"))
              cluster_address: \(m1Address)
            """)
        try eventually("m2 sees both members") { try Set(members(m2).keys) == ["m1", "m2"] }
        #expect(try members(m1)["m2"]?[4] == "rack2")
        // Restarting with the same preseed does not apply it again.
        m2.stop()
        try m2.start()
        #expect(try Set(members(m2).keys) == ["m1", "m2"])
        // A used token in a preseed is refused, and nothing is created.
        let used = try lxddOnce(["--preseed", "\(m2.dataDir)/preseed.yaml"])
        #expect(used.0.status != 0 && used.0.stderr.contains("join failed"), "\(used.0.stderr)")
        #expect(!used.created)

        let m3 = try agent(3, name: "m3")
        let join = try m3.ctl(["cluster", "join", try token(from: m2, for: "m3")])
        #expect(join.status == 0, "join m3: \(join.stderr)\n\(m3.logTail())")
        try eventually("three members") { try Set(members(m1).keys) == ["m1", "m2", "m3"] }

        // Failure domains and member config: set, shown by every member, validated.
        try m1.ok(["cluster", "set", "m3", "failure_domain=rack3", "user.owner=ops"])
        for a in [m1, m2, m3] { #expect(try members(a)["m3"]?[4] == "rack3") }
        #expect(try m2.ok(["cluster", "show", "m3"]).contains("user.owner: ops"))
        for (pair, message) in [("bogus.key=1", "Unknown configuration key: bogus.key"), ("scheduler.memory=lots", "scheduler.memory"),
                                ("scheduler.instance=sometimes", "scheduler.instance"), ("failure_domain=two words", "failure_domain")] {
            let r = try m1.ctl(["cluster", "set", "m3", pair])
            #expect(r.status != 0 && r.stderr.contains(message), "\(pair): \(r.stderr)")
        }
        #expect(try members(m1)["m3"]?[4] == "rack3")
        #expect(!(try m1.ok(["cluster", "show", "m3"]).contains("bogus")))
        try m1.ok(["cluster", "unset", "m3", "user.owner"])
        #expect(!(try m1.ok(["cluster", "show", "m3"]).contains("user.owner")))

        // m3 owns an instance and dies: removal needs --force (and, without a terminal, --yes).
        try m1.importBusybox(alias: "bb")
        let launched = try m1.ctl(["launch", "bb", "c3", "--target", "m3"])
        #expect(launched.status == 0, "launch on m3 through m1: \(launched.stderr)\n\(logs())")
        // m3 dies a voter: killed while raft still promotes it, the promotion would hold raft's
        // membership-change slot for a minute and more (docs/clustering.md), past the removal's wait.
        try eventually("m3 a voter", timeout: 30) { try members(m1)["m3"]?[2] == "VOTER" }
        m3.kill9()
        try eventually("m3 OFFLINE") { try members(m1)["m3"]?[3] == "OFFLINE" }
        let plain = try m1.ctl(["cluster", "remove", "m3"])
        #expect(plain.status != 0 && plain.stderr.contains("still owns instances"), "\(plain.stderr)")
        let unconfirmed = try m1.ctl(["cluster", "remove", "m3", "--force"])
        #expect(unconfirmed.status != 0 && unconfirmed.stderr.contains("--yes"), "\(unconfirmed.stderr)")
        // --force on an ONLINE member is refused.
        let online = try m1.ctl(["cluster", "remove", "m2", "--force", "--yes"])
        #expect(online.status != 0 && online.stderr.contains("only an OFFLINE member"), "\(online.stderr)")
        let forced = try m1.ctl(["cluster", "remove", "m3", "--force", "--yes"])
        #expect(forced.status == 0, "forced removal: \(forced.stderr)\n\(logs())")
        for a in [m1, m2] {
            try eventually("m3 gone from \(a.name)") { try Set(members(a).keys) == ["m1", "m2"] }
            #expect(!(try a.ok(["list", "--format", "csv"]).contains("c3,")))
        }
    }

    /// Raft runs one membership change at a time and refuses another meanwhile: joins arriving
    /// together, and the promotions the first ones start, each wait for the slot instead of
    /// failing ("dqlite ADD 3 failed: a configuration change is already in progress", issue 8).
    @Test func joinsArrivingTogetherWaitForEachOther() async throws {
        let m1 = try agent(1, name: "m1")
        let joiners = try (2...5).map { try agent($0, name: "m\($0)") }
        let tokens = try joiners.map { try token(from: m1, for: $0.name) }
        let results = try await withThrowingTaskGroup(of: (String, CommandResult).self) { group in
            for (a, t) in zip(joiners, tokens) {
                group.addTask { (a.name, try a.ctl(["cluster", "join", t])) }
            }
            return try await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
        }
        for (name, r) in results.sorted(by: { $0.key < $1.key }) {
            #expect(r.status == 0, "join \(name): \(r.stderr)\n\(logs())")
        }
        try eventually("five members, three voters", timeout: 60) {
            let m = try members(m1)
            return m.count == 5 && m.values.filter { $0[2] == "VOTER" }.count == 3
        }
    }

    @Test func recoverFromQuorumLossOnTheSurvivor() async throws {
        let m1 = try agent(1, name: "m1"), m2 = try agent(2, name: "m2"), m3 = try agent(3, name: "m3")
        for (a, issuer) in [(m2, m1), (m3, m1)] {
            let join = try a.ctl(["cluster", "join", try token(from: issuer, for: a.name)])
            #expect(join.status == 0, "join \(a.name): \(join.stderr)\n\(a.logTail())")
        }
        try eventually("three voters", timeout: 30) { try members(m1).values.filter { $0[2] == "VOTER" }.count == 3 }

        // Refused while the agent runs.
        let running = try run(Paths.lxdd, ["cluster", "recover-from-quorum-loss", "--data-dir", m1.dataDir, "--yes"])
        #expect(running.status != 0 && running.stderr.contains("stop lxdd first"), "\(running.stderr)")

        m2.kill9()
        m3.kill9()
        m1.stop()
        let started = Date()
        let recovered = try run(Paths.lxdd, ["cluster", "recover-from-quorum-loss", "--data-dir", m1.dataDir, "--yes"])
        #expect(recovered.status == 0, "recover: \(recovered.stderr)")
        #expect(recovered.stdout.contains("only voter"), "\(recovered.stdout)")
        try m1.start()
        print("quorum recovery: agent serving \(String(format: "%.2f", Date().timeIntervalSince(started))) s after recover started")

        // Writes work on the survivor; the lost members go OFFLINE and are removed with --force.
        try m1.ok(["cluster", "set", "m1", "user.recovered=yes"])
        #expect(try m1.ok(["cluster", "show", "m1"]).contains("user.recovered: yes"))
        try eventually("m2 and m3 OFFLINE") {
            let m = try members(m1)
            return m["m2"]?[3] == "OFFLINE" && m["m3"]?[3] == "OFFLINE"
        }
        try m1.ok(["cluster", "remove", "m2", "--force", "--yes"])
        try m1.ok(["cluster", "remove", "m3", "--force", "--yes"])
        let left = try members(m1)
        #expect(Set(left.keys) == ["m1"] && left["m1"]?[2] == "VOTER" && left["m1"]?[3] == "ONLINE", "\(left)")
        try m1.importBusybox(alias: "after")
        #expect(try m1.ok(["image", "list", "--format", "csv"]).contains("after,"))
    }

    @Test func wholeClusterRestartsTogether() async throws {
        let m1 = try agent(1, name: "m1"), m2 = try agent(2, name: "m2"), m3 = try agent(3, name: "m3")
        for a in [m2, m3] {
            let join = try a.ctl(["cluster", "join", try token(from: m1, for: a.name)])
            #expect(join.status == 0, "join \(a.name): \(join.stderr)\n\(a.logTail())")
        }
        try eventually("three voters", timeout: 30) { try members(m1).values.filter { $0[2] == "VOTER" }.count == 3 }
        try m2.ok(["cluster", "set", "m2", "user.before=restart"])
        for a in [m1, m2, m3] { a.stop() }

        // All at once, as after a power cut: none can open its database before a quorum runs.
        let started = Date()
        for a in [m1, m2, m3] { try a.launch() }
        do {
            for a in [m1, m2, m3] { try a.waitUntilUp() }
        } catch {
            // Which member waited for what shows only in the others' logs too.
            print(logs())
            throw error
        }
        print("whole-cluster restart: all three members answering \(String(format: "%.2f", Date().timeIntervalSince(started))) s after launch")
        try eventually("three ONLINE members") { try members(m3).values.filter { $0[3] == "ONLINE" }.count == 3 }
        #expect(try m3.ok(["cluster", "show", "m2"]).contains("user.before: restart"))
        try m3.ok(["cluster", "set", "m1", "user.after=restart"])
        #expect(try m1.ok(["cluster", "show", "m1"]).contains("user.after: restart"))
    }
}
