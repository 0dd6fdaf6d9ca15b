import APITypes
import Foundation
import LXDClient
import Testing

/// Three real members on 127.0.0.1-3 with overridden capacities: launches through every member at
/// once are placed by the scheduler inside the inserting transaction, so no member is ever
/// oversubscribed, the policy shapes the distribution, and a launch that cannot fit is refused
/// with every member's reason and leaves nothing behind.
@Suite(.serialized, .enabled(if: Prerequisites.available, "needs root, busybox and the built binaries"))
final class SchedulerIntegrationTests {
    var agents: [TestAgent] = []

    deinit {
        for a in agents.reversed() { a.destroy() }
    }

    static let mib: Int64 = 1 << 20
    /// Every test instance asks for this much: 300 of them fill 3 × 3200MiB exactly.
    static let limits = ["limits.memory": "32MiB", "limits.cpu": "0.1"]

    func formCluster() throws -> [TestAgent] {
        let members = try (1...3).map { n in
            let a = try TestAgent(name: "m\(n)", httpsAddress: "127.0.0.\(n):\(TestAgent.freePort())")
            agents.append(a)
            return a
        }
        for joiner in members.dropFirst() {
            let out = try members[0].ok(["cluster", "add", joiner.name])
            let token = try #require(out.split(separator: "\n").last.map(String.init))
            let join = try joiner.ctl(["cluster", "join", token])
            try #require(join.status == 0, "join \(joiner.name): \(join.stderr)\n\(joiner.logTail())")
        }
        try members[0].importBusybox(alias: "bb")
        return members
    }

    func client(_ a: TestAgent) -> LXDClient { LXDClient.unixSocket(a.socket) }

    /// Sets member config keys (`PATCH /1.0/cluster/members/NAME`).
    func setMember(_ via: LXDClient, _ name: String, _ config: [String: String]) async throws {
        try await via.send(.PATCH, "/1.0/cluster/members/\(name)", json: ClusterMemberPatch(config: config))
    }

    /// name → location of every instance, from the database (through `m`).
    func locations(_ c: LXDClient) async throws -> [String: String] {
        let list = try await c.get([Instance].self, "/1.0/instances", query: [QueryItem("recursion", "1")])
        return Dictionary(uniqueKeysWithValues: list.map { ($0.name, $0.location) })
    }

    /// Every member's allocation within its capacity (cpu with the overcommit ratio).
    func expectNoneOversubscribed(_ c: LXDClient, sourceLocation: SourceLocation = #_sourceLocation) async throws -> [MemberResources] {
        let resources = try await c.clusterResources()
        for m in resources {
            #expect(m.allocated.memory <= m.capacity.memory, "\(m.serverName) memory \(m.allocated.memory) > \(m.capacity.memory)",
                    sourceLocation: sourceLocation)
            #expect(m.allocated.cpu <= m.capacity.cpu * m.cpuOvercommit + 1e-6, "\(m.serverName) cpu \(m.allocated.cpu)",
                    sourceLocation: sourceLocation)
        }
        return resources
    }

    static func batch(_ prefix: String, count: Int, start: Bool = false, policy: String? = nil) -> InstancesBatchPost {
        InstancesBatchPost(source: .init(alias: "bb"), config: Self.limits, start: start, count: count, namePrefix: prefix,
                           schedulerPolicy: policy)
    }

    @Test func concurrentLaunchesThroughAllMembersNeverOversubscribe() async throws {
        let members = try formCluster()
        let clients = members.map(client)
        let c1 = clients[0]
        // Capacity overrides: the members share this host, each reports all of it.
        for m in members {
            try await setMember(c1, m.name, ["scheduler.cpu": "4", "scheduler.memory": "3200MiB", "scheduler.disk": "1TiB",
                                              "scheduler.processes": "100000"])
        }
        let reported = try await c1.clusterResources()
        #expect(reported.count == 3 && reported.allSatisfy { $0.reported != nil && $0.capacity.cpu == 4 && $0.capacity.memory == 3200 * Self.mib },
                "capacities: \(reported)")

        // Ids come from the harness's range, not the host's /etc/subuid (which may hold only 152
        // isolated instances, fewer than these 300): each member knows its own, `cluster info` shows it.
        let shown = try members[1].ok(["cluster", "info"])
        #expect(shown.contains("uid/gid range of m2: \(TestAgent.idmapRange), room for 15258 isolated instances"), "\(shown)")
        let seenByM3 = try await clients[2].clusterResources()
        #expect(seenByM3.compactMap(\.idmap) == [IDMapSummary(start: 1_000_000_000, size: 1_000_000_000, instances: 15258)]
                && seenByM3.first { $0.idmap != nil }?.serverName == "m3", "\(seenByM3)")

        // 300 instances at once through all three members, exactly filling their memory (so a lost
        // race would oversubscribe one): one batch of 98 per member plus two
        // started single launches per member, all concurrent.
        let began = Date()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, c) in clients.enumerated() {
                group.addTask {
                    let op = try await c.startCreatingInstances(Self.batch("b\(index + 1)-", count: 98))
                    try await c.wait(operation: op.id)
                }
                for single in 1...2 {
                    group.addTask {
                        let post = InstancesPost(name: "s\(index + 1)-\(single)", source: .init(alias: "bb"), config: Self.limits, start: true)
                        try await c.createInstance(post)
                    }
                }
            }
            try await group.waitForAll()
        }
        print("scheduler: 300 concurrent launches through 3 members in \(String(format: "%.2f", Date().timeIntervalSince(began))) s")

        let placed = try await locations(c1)
        #expect(placed.count == 300)
        let counts = Dictionary(grouping: placed.values, by: { $0 }).mapValues(\.count)
        // fewest: every placement goes to a member with the fewest, so they end within one.
        #expect(counts.count == 3 && (counts.values.max()! - counts.values.min()!) <= 1, "fewest distribution: \(counts)")
        let resources = try await expectNoneOversubscribed(c1)
        for m in resources {
            #expect(m.instances == counts[m.serverName], "\(m.serverName): \(m.instances) rows vs \(counts[m.serverName] ?? 0) listed")
            #expect(m.allocated.memory == Int64(m.instances) * 32 * Self.mib)
        }
        // The started ones run, wherever they were placed.
        for index in 1...3 {
            for single in 1...2 {
                let state = try await c1.instanceState("s\(index)-\(single)")
                #expect(state.status == "Running", "s\(index)-\(single) on \(placed["s\(index)-\(single)"] ?? "?"): \(state.status)")
            }
        }

        // Capacity shrunk to exactly what is there: nothing more fits, and the refusal names every member.
        for m in resources {
            try await setMember(c1, m.serverName, ["scheduler.memory": "\(Int64(m.instances) * 32)MiB"])
        }
        await #expect {
            _ = try await clients[1].startCreatingInstances(Self.batch("over-", count: 5))
        } throws: { error in
            guard let e = error as? APIError else { return false }
            let text = e.description
            return e.status == 409 && ["memory 100% allocated", "m1", "m2", "m3"].allSatisfy(text.contains)
                && text.contains("none created")
        }
        await #expect {
            try await clients[2].createInstance(InstancesPost(name: "one-more", source: .init(alias: "bb"), config: Self.limits))
        } throws: { error in
            (error as? APIError).map { $0.status == 409 && ["memory 100% allocated", "m1", "m2", "m3"].allSatisfy($0.description.contains) } ?? false
        }
        // A target is capacity-checked too (the request is forwarded to m3, which places it there).
        await #expect {
            try await clients[0].createInstance(InstancesPost(name: "on-m3", source: .init(alias: "bb"), config: Self.limits), target: "m3")
        } throws: { error in (error as? APIError)?.description.contains("memory 100% allocated") ?? false }
        let after = try await locations(c1)
        #expect(after.count == 300 && !after.keys.contains { $0.hasPrefix("over-") || $0 == "one-more" || $0 == "on-m3" })
        _ = try await expectNoneOversubscribed(c1)

        // Unequal room: m1 has 3200MiB free, m2 1600MiB, m3 none (same cpu everywhere).
        let share = Dictionary(uniqueKeysWithValues: resources.map { ($0.serverName, Int64($0.instances) * 32) })
        try await setMember(c1, "m1", ["scheduler.memory": "\(share["m1"]! + 3200)MiB"])
        try await setMember(c1, "m2", ["scheduler.memory": "\(share["m2"]! + 1600)MiB"])
        // binpack fills the fuller member that still fits (m2); spread the emptier one (m1).
        let packed = try await clients[2].startCreatingInstances(Self.batch("pack-", count: 10, policy: "binpack"))
        try await clients[2].wait(operation: packed.id)
        let spread = try await clients[1].startCreatingInstances(Self.batch("spread-", count: 10, policy: "spread"))
        try await clients[1].wait(operation: spread.id)
        let now = try await locations(c1)
        let packedOn = Set(now.filter { $0.key.hasPrefix("pack-") }.values)
        let spreadOn = Set(now.filter { $0.key.hasPrefix("spread-") }.values)
        #expect(packedOn == ["m2"], "binpack placed on \(packedOn)")
        #expect(spreadOn == ["m1"], "spread placed on \(spreadOn)")

        // A cluster group target goes through the scheduler: only m3's group, and m3 is full.
        try await setMember(c1, "m3", ["scheduler.groups": "edge"])
        await #expect {
            try await clients[0].createInstance(InstancesPost(name: "edge-1", source: .init(alias: "bb"), config: Self.limits), target: "@edge")
        } throws: { error in (error as? APIError)?.description.contains("m3: memory 100% allocated") ?? false }
        try await setMember(c1, "m2", ["scheduler.groups": "edge"])
        try await clients[0].createInstance(InstancesPost(name: "edge-2", source: .init(alias: "bb"), config: Self.limits), target: "@edge")
        #expect(try await locations(c1)["edge-2"] == "m2")

        // Cluster-wide policy through the server config; unknown policies are refused.
        try await c1.updateServerConfig(["scheduler.policy": "spread"])
        #expect(try await clients[2].serverConfig()["scheduler.policy"] == "spread")
        await #expect(throws: APIError.self) { try await c1.updateServerConfig(["scheduler.policy": "random"]) }
        await #expect {
            _ = try await c1.startCreatingInstances(Self.batch("bad-", count: 2, policy: "random"))
        } throws: { error in (error as? APIError)?.status == 400 }
        // The CLI shows the same figures.
        let info = try members[1].ok(["cluster", "info", "--format", "csv"])
        #expect(info.split(separator: "\n").count == 3 && info.contains("m3,ONLINE,all,100,"), "cluster info: \(info)")
        _ = try await expectNoneOversubscribed(c1)

        try await deleteAll(c1)
    }

    /// `lxdd --idmap-range` is checked before anything is created.
    @Test func badIDMapRangesAreRefusedBeforeStarting() throws {
        for (range, expected) in [("100000", "use START:COUNT"), ("0:1000000000", "START must be at least 65536"),
                                  ("1000000:1000", "COUNT must be at least 65536"), ("4000000000:1000000000", "ends past 4294967294")] {
            let dir = "/tmp/lxd-swift-it-\(getpid())-\(UUID().uuidString.prefix(8))"
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let r = try run(Paths.lxdd, ["--data-dir", dir, "--idmap-range", range])
            #expect(r.status != 0 && r.stderr.contains("--idmap-range") && r.stderr.contains(expected), "\(range): \(r.stderr)")
            #expect(!FileManager.default.fileExists(atPath: dir), "a refused range created \(dir)")
        }
    }

    @Test func cliLaunchCountShowsProgressAndOfflineMembersAreSkipped() async throws {
        let members = try formCluster()
        let c1 = client(members[0])
        for m in members { try await setMember(c1, m.name, ["scheduler.cpu": "2", "scheduler.memory": "2GiB"]) }
        let out = try members[2].ctl(["launch", "bb", "--count", "12", "--name-prefix", "web-", "-c", "limits.memory=16MiB"])
        #expect(out.status == 0, "launch --count: \(out.stderr)")
        #expect(out.stdout.contains("Created 12 instances in") && out.stdout.contains("m1 4, m2 4, m3 4"), "summary: \(out.stdout)")
        #expect(out.stderr.contains("instances: 12/12"), "progress: \(out.stderr)")
        let placed = try await locations(c1)
        #expect(Set(placed.keys) == Set((1...12).map { String(format: "web-%02d", $0) }))
        for name in ["web-01", "web-07", "web-12"] {
            #expect(try await c1.instanceState(name).status == "Running", "\(name) not running")
        }
        // Names taken: 409, nothing created.
        let again = try members[0].ctl(["launch", "bb", "--count", "13", "--name-prefix", "web-"])
        #expect(again.status != 0 && again.stderr.contains("already exist"), "\(again.stderr)")
        #expect(try await locations(c1).count == 12)
        try await deleteAll(c1)

        // An offline member is skipped, and named as such when nothing fits.
        members[0].waitForVoters(["m1", "m2", "m3"])
        members[2].kill9()
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline, try await c1.clusterResources().first(where: { $0.serverName == "m3" })?.status != .offline {
            try await Task.sleep(for: .milliseconds(200))
        }
        let viaM2 = client(members[1])
        let op = try await viaM2.startCreatingInstances(Self.batch("up-", count: 4))
        try await viaM2.wait(operation: op.id)
        #expect(Set(try await locations(c1).values) == ["m1", "m2"])
        await #expect {
            try await viaM2.createInstance(InstancesPost(name: "huge", source: .init(alias: "bb"), config: ["limits.memory": "100GiB"]))
        } throws: { error in
            let text = (error as? APIError)?.description ?? ""
            return text.contains("m1, m2: memory") && text.contains("m3: offline")
        }
        try await deleteAll(c1)
    }

    /// Deletes every instance, a few at a time (stopping the running ones).
    func deleteAll(_ c: LXDClient) async throws {
        let names = try await locations(c).keys.sorted()
        try await withThrowingTaskGroup(of: Void.self) { group in
            var next = 0
            func add() {
                let name = names[next]
                next += 1
                group.addTask { try await c.deleteInstance(name, force: true) }
            }
            while next < names.count, next < 8 { add() }
            while try await group.next() != nil { if next < names.count { add() } }
        }
        #expect(try await locations(c).isEmpty)
    }
}
