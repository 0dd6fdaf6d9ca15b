import APITypes
import Foundation
import LXDClient
import Testing

/// Placement groups on three real members: instances naming an anti-affinity group land on
/// different members (a strict group refuses the one too many and creates nothing), an affinity
/// group keeps its instances together, and bad groups and settings are refused.
@Suite(.serialized, .enabled(if: Prerequisites.available, "needs root, busybox and the built binaries"))
final class PlacementGroupIntegrationTests {
    var agents: [TestAgent] = []

    deinit {
        for a in agents.reversed() { a.destroy() }
    }

    /// name → location, from `lxdctl list` through `a` (location is the last column).
    func locations(_ a: TestAgent) throws -> [String: String] {
        var result: [String: String] = [:]
        for line in try a.ok(["list", "--format", "csv"]).split(separator: "\n") {
            let fields = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            if let name = fields.first, let location = fields.last { result[name] = location }
        }
        return result
    }

    @Test func groupsKeepInstancesApartOrTogether() throws {
        let members = try (1...3).map { n in
            let a = try TestAgent(name: "pg\(n)", httpsAddress: "127.0.0.\(n):\(TestAgent.freePort())")
            agents.append(a)
            return a
        }
        let (m1, m2) = (members[0], members[1])
        for joiner in members.dropFirst() {
            let token = try #require(try m1.ok(["cluster", "add", joiner.name]).split(separator: "\n").last.map(String.init))
            let join = try joiner.ctl(["cluster", "join", token])
            try #require(join.status == 0, "join \(joiner.name): \(join.stderr)")
        }
        try m1.importBusybox(alias: "bb")

        // Strict anti-affinity: three instances on three members, a fourth refused with nothing created.
        try m1.ok(["placement-group", "create", "apart", "policy=anti-affinity"])
        #expect(try m2.ok(["placement-group", "list", "--format", "csv"]).contains("apart,anti-affinity,strict,member,0,"))
        for n in 1...3 { try m2.ok(["launch", "bb", "a\(n)", "-c", "placement.group=apart"]) }
        let apart = try locations(m1).filter { $0.key.hasPrefix("a") }
        #expect(apart.count == 3 && Set(apart.values).count == 3, "anti-affinity placed: \(apart)")
        let fourth = try m2.ctl(["launch", "bb", "a4", "-c", "placement.group=apart"])
        #expect(fourth.status != 0 && fourth.stderr.contains("apart"), "a fourth in a strict anti-affinity group: \(fourth.stderr)")
        #expect(try m1.ctl(["info", "a4"]).status != 0, "the refused launch left a4 behind")
        print("refusal: \(fourth.stderr)")

        // Permissive: follows the rule where it can, then places anyway.
        try m1.ok(["placement-group", "create", "soft", "policy=anti-affinity", "rigor=permissive"])
        try m2.ok(["launch", "bb", "--count", "4", "--name-prefix", "s", "--no-start", "-c", "placement.group=soft"])
        let soft = try locations(m1).filter { $0.key.hasPrefix("s") }
        #expect(soft.count == 4 && Set(soft.values).count == 3, "permissive anti-affinity: \(soft)")

        // Affinity: together on one member, whichever member takes the first.
        try m1.ok(["placement-group", "create", "together", "policy=affinity"])
        try m2.ok(["launch", "bb", "--count", "3", "--name-prefix", "t", "--no-start", "-c", "placement.group=together"])
        try m1.ok(["launch", "bb", "t4", "--no-start", "-c", "placement.group=together"])
        let together = try locations(m1).filter { $0.key.hasPrefix("t") }
        #expect(together.count == 4 && Set(together.values).count == 1, "affinity: \(together)")

        // Refused, each with nothing changed.
        let inUse = try m1.ctl(["placement-group", "delete", "apart"])
        #expect(inUse.status != 0 && inUse.stderr.contains("a1"), "deleting a used group: \(inUse.stderr)")
        let unknown = try m1.ctl(["launch", "bb", "u1", "-c", "placement.group=nosuch"])
        #expect(unknown.status != 0 && unknown.stderr.contains("nosuch"), "unknown group: \(unknown.stderr)")
        #expect(try m1.ctl(["info", "u1"]).status != 0)
        for bad in [["policy=sideways"], ["policy=affinity", "colour=red"], []] {
            let r = try m1.ctl(["placement-group", "create", "bad"] + bad)
            #expect(r.status != 0, "created a group with \(bad)")
        }
        #expect(try m1.ctl(["placement-group", "create", "apart", "policy=affinity"]).status != 0, "duplicate group name")
        #expect(!(try m1.ok(["placement-group", "list", "--format", "csv"]).contains("bad,")))

        // Unused, it goes.
        try m1.ok(["placement-group", "create", "spare", "policy=affinity", "scope=failure-domain"])
        try m1.ok(["placement-group", "delete", "spare"])
        #expect(!(try m1.ok(["placement-group", "list", "--format", "csv"]).contains("spare,")))
    }
}
