import APITypes
import Foundation
import Identity
import LXDClient
import Testing

/// A remote that is a cluster: `remote add` learns every member's address and certificate, clients
/// spread over the members and fail over when one is down.
@Suite(.serialized, .enabled(if: Prerequisites.available, "needs root, busybox and the built binaries"))
final class RemoteClusterTests {
    var agents: [TestAgent] = []
    let conf = "/tmp/lxd-swift-it-conf-\(getpid())-\(UUID().uuidString.prefix(8))"

    deinit {
        for a in agents.reversed() { a.destroy() }
        try? FileManager.default.removeItem(atPath: conf)
    }

    func client(_ args: [String]) throws -> CommandResult {
        // No LXD_DIR: anything not addressed to the remote would go to the default socket and fail.
        try run(Paths.lxdctl, args, environment: ["LXDCTL_CONF": conf, "LXD_DIR": "/nonexistent"])
    }

    @Test func remoteOfAClusterSpreadsAndFailsOver() async throws {
        for n in 1...3 {
            agents.append(try TestAgent(name: "rc\(n)", httpsAddress: "127.0.0.\(n):\(TestAgent.freePort())"))
        }
        let (m1, m2, m3) = (agents[0], agents[1], agents[2])
        for joiner in [m2, m3] {
            let token = try #require(try m1.ok(["cluster", "add", joiner.name]).split(separator: "\n").last.map(String.init))
            let joined = try joiner.ctl(["cluster", "join", token])
            #expect(joined.status == 0, "join \(joiner.name): \(joined.stderr)")
        }

        // Three voters first: stopping one member below must leave a quorum.
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline, try m1.ok(["cluster", "list", "--format", "csv"]).components(separatedBy: ",VOTER,").count != 4 {
            usleep(100_000)
        }

        // The trust token names m1 only; the remote learns the other members over the pinned link.
        let trust = try #require(try m1.ok(["config", "trust", "add", "laptop"]).split(separator: "\n").last.map(String.init))
        let add = try client(["remote", "add", "rc", "--token", trust])
        #expect(add.status == 0, "remote add: \(add.stderr)")
        let saved = try JSONDecoder().decode(SavedConfig.self, from: Data(contentsOf: URL(fileURLWithPath: "\(conf)/config.json")))
        let remote = try #require(saved.remotes["rc"])
        #expect(Set(remote.addresses) == Set(agents.map { $0.httpsAddress! }), "addresses: \(remote.addresses)")
        let certificates = try agents.map { try Fingerprint.of(certificate: String(contentsOfFile: "\($0.dataDir)/server.crt", encoding: .utf8)) }
        #expect(Set([remote.fingerprint] + (remote.memberFingerprints ?? [])) == Set(certificates))

        // Spread: independent clients (as separate lxdctl runs are) land on different members.
        let identity = try TLSIdentity.load(certPath: "\(conf)/client.crt", keyPath: "\(conf)/client.key")
        var servedBy: [String: Int] = [:]
        for _ in 0..<30 {
            let api = try LXDClient.https(addresses: remote.addresses, serverFingerprint: remote.fingerprint,
                                          otherFingerprints: remote.memberFingerprints ?? [], identity: identity)
            let info = try await api.get(Server.self, "/1.0")
            #expect(info.auth == "trusted")
            servedBy[info.environment.serverName, default: 0] += 1
            await api.transport.shutdown()
        }
        print("FIGURE remote of a cluster: 30 clients served by \(servedBy)")
        #expect(servedBy.count == 3, "30 clients should reach all three members: \(servedBy)")

        // Fail over: with the member whose certificate the token pinned stopped, every run still works.
        m1.stop()
        for _ in 0..<6 {
            let listed = try client(["list", "rc:", "--format", "csv"])
            #expect(listed.status == 0, "list with rc1 down: \(listed.stderr)\nrc2's log: \(m2.logTail())")
            if listed.status != 0 { break }
        }
    }

    /// The part of lxdctl's config.json this test reads.
    struct SavedConfig: Decodable {
        struct Remote: Decodable {
            var addresses: [String]
            var fingerprint: String
            var memberFingerprints: [String]?
            enum CodingKeys: String, CodingKey {
                case addresses, fingerprint
                case memberFingerprints = "member_fingerprints"
            }
        }
        var remotes: [String: Remote]
    }
}
