import APITypes
import Foundation
import Identity
import IdentityGenerator
import LXDClient
import Membership
import Testing

/// Three real agents on 127.0.0.1-3 forming a cluster: dqlite travels over their HTTPS
/// listeners (mutual TLS), joins are paid for with single-use tokens.
@Suite(.serialized, .enabled(if: Prerequisites.available, "needs root, busybox and the built binaries"))
final class ClusterIntegrationTests {
    var agents: [TestAgent] = []

    deinit {
        for a in agents.reversed() { a.destroy() }
    }

    func agent(_ n: Int, name: String? = nil) throws -> TestAgent {
        let a = try TestAgent(name: name ?? "m\(n)", httpsAddress: "127.0.0.\(n):\(TestAgent.freePort())")
        agents.append(a)
        return a
    }

    func token(from issuer: TestAgent, for name: String) throws -> String {
        let out = try issuer.ok(["cluster", "add", name])
        return try #require(out.split(separator: "\n").last.map(String.init))
    }

    /// name -> database role, as `cluster list` on `a` reports it.
    func roles(_ a: TestAgent) throws -> [String: String] {
        var result: [String: String] = [:]
        for line in try a.ok(["cluster", "list", "--format", "csv"]).split(separator: "\n") {
            let f = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            result[f[0]] = f[2]
        }
        return result
    }

    func fingerprint(_ a: TestAgent) throws -> String {
        try Fingerprint.of(certificate: String(contentsOfFile: "\(a.dataDir)/server.crt", encoding: .utf8))
    }

    /// Waits until `body` holds (roles settle a moment after a join: the leader promotes).
    func eventually(_ what: String, timeout: Double = 20, _ body: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if (try? body()) == true { return }
            usleep(100_000)
        }
        Issue.record("timed out waiting for: \(what)")
    }

    @Test func threeMembersJoinAgreeAndShareState() async throws {
        let m1 = try agent(1), m2 = try agent(2), m3 = try agent(3)

        var started = Date()
        let join2 = try m2.ctl(["cluster", "join", try token(from: m1, for: "m2")])
        let join2Time = Date().timeIntervalSince(started)
        #expect(join2.status == 0, "join m2: \(join2.stderr)\n\(m2.logTail())")
        // The second token comes from m2: any member can admit.
        started = Date()
        let join3 = try m3.ctl(["cluster", "join", try token(from: m2, for: "m3")])
        let join3Time = Date().timeIntervalSince(started)
        #expect(join3.status == 0, "join m3: \(join3.stderr)\n\(m3.logTail())")
        print("cluster join times: m2 \(String(format: "%.2f", join2Time)) s, m3 \(String(format: "%.2f", join3Time)) s")

        // Every member answers the same: three members, three voters once the leader has promoted them.
        let expected = ["m1": "VOTER", "m2": "VOTER", "m3": "VOTER"]
        for a in [m1, m2, m3] {
            try eventually("three voters seen from \(a.name)") { try roles(a) == expected }
        }
        #expect(try roles(m1) == expected)
        let lists = try [m1, m2, m3].map { try $0.ok(["cluster", "list", "--format", "csv"]) }
        #expect(Set(lists).count == 1, "members disagree: \(lists)")
        #expect(lists[0].contains("m3,https://\(m3.httpsAddress!),VOTER,ONLINE"))
        let shown = try m1.ok(["cluster", "show", "m3"])
        #expect(shown.contains("fingerprint: \(try fingerprint(m3))"))

        // A write through member 3 is visible from members 1 and 2.
        try m3.importBusybox(alias: "bb3")
        for a in [m1, m2] {
            #expect(try a.ok(["image", "list", "--format", "csv"]).contains("bb3,"), "image imported on m3 not visible on \(a.name)")
        }
        // An instance on m3 is listed, with its location, by the others.
        try m3.ok(["launch", "bb3", "c3", "--target", "m3"])
        for a in [m1, m2] {
            let listed = try a.ok(["list", "--format", "csv"])
            #expect(listed.hasPrefix("c3,") && listed.hasSuffix(",m3\n"), "list on \(a.name): \(listed)")
        }
        try m3.ok(["delete", "--force", "c3"])

        // No dqlite TCP port: each agent listens on its HTTPS port only.
        let ss = try run("/usr/bin/ss", ["-ltnpH"])
        for a in [m1, m2, m3] {
            guard let pid = a.process?.processIdentifier else { continue }
            let ports = ss.stdout.split(separator: "\n").filter { $0.contains("pid=\(pid),") }
            #expect(ports.count == 1 && ports[0].contains(a.httpsAddress!), "\(a.name) listens on: \(ports)")
        }

        // A member killed with SIGKILL shows OFFLINE, writes go on through the others, and it
        // comes back ONLINE after a restart.
        m3.kill9()
        let killed = Date()
        func status(_ name: String, from a: TestAgent) throws -> String? {
            try a.ok(["cluster", "list", "--format", "csv"]).split(separator: "\n")
                .first { $0.hasPrefix("\(name),") }.map { String($0.split(separator: ",")[3]) }
        }
        // (The leader may also demote it meanwhile: the role planner only counts online members.)
        try eventually("m3 OFFLINE seen from m1") { try status("m3", from: m1) == "OFFLINE" }
        print("offline detection: \(String(format: "%.2f", Date().timeIntervalSince(killed))) s after SIGKILL")
        let pem = "\(m2.dataDir)/down.crt"
        try IdentityGenerator.generate(commonName: "down").certificatePEM.write(toFile: pem, atomically: true, encoding: .utf8)
        try m2.ok(["config", "trust", "add-certificate", pem, "--name", "while-m3-is-down"])
        #expect(try m1.ok(["config", "trust", "list", "--format", "csv"]).contains("while-m3-is-down"))
        try m3.start()
        try eventually("m3 ONLINE again") { try status("m3", from: m1) == "ONLINE" }
        try eventually("three voters again", timeout: 30) { try roles(m1) == expected }
        #expect(try m3.ok(["config", "trust", "list", "--format", "csv"]).contains("while-m3-is-down"))

        // Removal: the last voter can't go; a member can; the others then agree on two members.
        #expect(try m1.ctl(["cluster", "remove", "m1"]).status != 0)
        try m1.ok(["cluster", "remove", "m3"])
        for a in [m1, m2] {
            try eventually("two members seen from \(a.name)") { try Set(roles(a).keys) == ["m1", "m2"] }
        }
    }

    @Test func badJoinsAreRefusedAndLeaveNothingBehind() async throws {
        let m1 = try agent(1), m2 = try agent(2)
        let good = try token(from: m1, for: "m2")
        func memberNames() throws -> [String] { try roles(m1).keys.sorted() }

        // A token made for another name.
        let other = try token(from: m1, for: "someone-else")
        let wrongName = try m2.ctl(["cluster", "join", other])
        #expect(wrongName.status != 0 && wrongName.stderr.contains("issued for member \"someone-else\""), "\(wrongName.stderr)")
        // Forged: the other token with our name written in (the issuer knows whom it was for).
        var forged = try JoinToken.decode(other)
        forged.name = "m2"
        let forgedName = try m2.ctl(["cluster", "join", forged.encoded()])
        #expect(forgedName.status != 0 && forgedName.stderr.contains("not authorized"), "\(forgedName.stderr)")
        // Forged secret.
        var guessed = try JoinToken.decode(good)
        guessed.secret = String(repeating: "ab", count: 32)
        let guessedSecret = try m2.ctl(["cluster", "join", guessed.encoded()])
        #expect(guessedSecret.status != 0 && guessedSecret.stderr.contains("not authorized"), "\(guessedSecret.stderr)")
        // A fingerprint that isn't the issuer's: refused in the handshake, before the secret is sent.
        var impostor = try JoinToken.decode(good)
        impostor.fingerprint = try IdentityGenerator.generate(commonName: "impostor").fingerprint
        let pinned = try m2.ctl(["cluster", "join", impostor.encoded()])
        #expect(pinned.status != 0 && pinned.stderr.contains("fingerprint"), "\(pinned.stderr)")
        #expect(try memberNames() == ["m1"])

        // An address already in use (m1's own), sent straight to the accept endpoint: 409, nothing kept.
        let dupToken = try JoinToken.decode(try token(from: m1, for: "dup"))
        let stranger = try IdentityGenerator.generate(commonName: "dup")
        let api = try LXDClient.https(addresses: [m1.httpsAddress!], serverFingerprint: try fingerprint(m1), identity: stranger)
        struct Accept: Encodable { var server_name: String; var address: String; var certificate: String; var secret: String }
        struct Anything: Decodable {}
        do {
            _ = try await api.call(.POST, "/internal/cluster/accept", json: Accept(
                server_name: "dup", address: m1.httpsAddress!, certificate: stranger.certificatePEM, secret: dupToken.secret), as: Anything.self)
            Issue.record("a join with a used address was accepted")
        } catch let error as APIError {
            #expect(error.status == 409, "\(error)")
        }
        #expect(try memberNames() == ["m1"])
        #expect(!(try m1.ok(["config", "trust", "list", "--format", "csv"]).contains("dup")))
        // A certificate that is not a member's cannot open a database link.
        do {
            _ = try await api.transport.openWebSocket(HTTPRequest(.GET, "/internal/database"))
            Issue.record("a stranger opened a database link")
        } catch {}
        await api.transport.shutdown()

        // The good token still works once, and only once.
        let join = try m2.ctl(["cluster", "join", good])
        #expect(join.status == 0, "join: \(join.stderr)\n\(m2.logTail())")
        #expect(try memberNames() == ["m1", "m2"])
        let m3 = try agent(3, name: "m2-again")
        var reused = try JoinToken.decode(good)
        reused.name = "m2-again"
        let again = try m3.ctl(["cluster", "join", reused.encoded()])
        #expect(again.status != 0 && again.stderr.contains("not authorized"), "\(again.stderr)")
        #expect(try memberNames() == ["m1", "m2"])
    }
}
