import APITypes
import Foundation
import Identity
import IdentityGenerator
import LXDClient
import Testing

/// The HTTPS API with mutual TLS, trust tokens and lxdctl remotes, against a real agent on loopback.
@Suite(.serialized, .enabled(if: Prerequisites.available, "needs root, busybox and the built binaries"))
final class RemoteTests {
    let agent: TestAgent
    let address: String
    var confDirs: [String] = []

    init() throws {
        address = "127.0.0.1:\(TestAgent.freePort())"
        agent = try TestAgent(httpsAddress: address)
    }

    deinit {
        agent.destroy()
        for dir in confDirs { try? FileManager.default.removeItem(atPath: dir) }
    }

    /// A fresh lxdctl configuration directory (its own client identity and remotes).
    func newClientConf() -> String {
        let dir = "/tmp/lxd-swift-it-conf-\(getpid())-\(UUID().uuidString.prefix(8))"
        confDirs.append(dir)
        return dir
    }

    func client(_ conf: String, _ args: [String]) throws -> CommandResult {
        // No LXD_DIR: anything not addressed to the remote would go to the default socket and fail.
        try run(Paths.lxdctl, args, environment: ["LXDCTL_CONF": conf, "LXD_DIR": "/nonexistent"])
    }

    func token(for name: String, extra: [String] = []) throws -> String {
        let out = try agent.ok(["config", "trust", "add", name] + extra)
        return try #require(out.split(separator: "\n").last.map(String.init))
    }

    func trustedNames() throws -> [String] {
        try agent.ok(["config", "trust", "list", "--format", "csv"]).split(separator: "\n").map { String($0.split(separator: ",")[0]) }
    }

    var serverFingerprint: String {
        get throws { try Fingerprint.of(certificate: String(contentsOfFile: "\(agent.dataDir)/server.crt", encoding: .utf8)) }
    }

    @Test func remoteLifecycleOverMutualTLS() throws {
        try agent.importBusybox()
        let conf = newClientConf()
        let t = try token(for: "laptop")
        let decoded = try TrustToken.decode(t)
        #expect(decoded.addresses == [address])
        #expect(decoded.fingerprint == (try serverFingerprint))

        let add = try client(conf, ["remote", "add", "r1", "--token", t])
        #expect(add.status == 0, "remote add: \(add.stderr)")
        #expect(try trustedNames() == ["laptop"])
        let clientFP = try Fingerprint.of(certificate: String(contentsOfFile: "\(conf)/client.crt", encoding: .utf8))
        #expect(try agent.ok(["config", "trust", "list", "--format", "json"]).contains(clientFP))
        let keyMode = try FileManager.default.attributesOfItem(atPath: "\(conf)/client.key")[.posixPermissions] as? NSNumber
        #expect(keyMode?.intValue == 0o600)
        #expect(try client(conf, ["remote", "list", "--format", "csv"]).stdout.contains("r1,\(address)"))

        let launch = try client(conf, ["launch", "busybox", "r1:c1"])
        #expect(launch.status == 0, "launch over HTTPS: \(launch.stderr)")
        let list = try client(conf, ["list", "r1:", "--format", "csv"])
        #expect(list.status == 0 && list.stdout.contains("c1,RUNNING"), "list: \(list.stdout) \(list.stderr)")
        let exec = try client(conf, ["exec", "r1:c1", "--", "sh", "-c", "echo hello over tls; exit 7"])
        #expect(exec.status == 7, "exec status: \(exec.stderr)")
        #expect(exec.stdout == "hello over tls\n")
        let echoed = try run(Paths.lxdctl, ["exec", "r1:c1", "-T", "--", "cat"], environment: ["LXDCTL_CONF": conf, "LXD_DIR": "/nonexistent"], stdin: "piped\n")
        #expect(echoed.stdout == "piped\n")

        // `remote switch` makes bare names go to the remote.
        #expect(try client(conf, ["remote", "switch", "r1"]).status == 0)
        #expect(try client(conf, ["list", "--format", "csv"]).stdout.contains("c1,RUNNING"))
        let delete = try client(conf, ["delete", "--force", "c1"])
        #expect(delete.status == 0, "delete over HTTPS: \(delete.stderr)")
        #expect(!(try agent.ok(["list", "--format", "csv"]).contains("c1,")))

        // Removing the certificate on the server revokes access at once.
        try agent.ok(["config", "trust", "remove", String(clientFP.prefix(16))])
        let revoked = try client(conf, ["list", "r1:"])
        #expect(revoked.status != 0 && revoked.stderr.contains("not authorized"), "after trust remove: \(revoked.stderr)")
        #expect(try client(conf, ["remote", "remove", "r1"]).status == 0)
        #expect(!(try client(conf, ["remote", "list", "--format", "csv"]).stdout.contains("r1")))
    }

    @Test func untrustedClientGets403() async throws {
        // Via lxdctl: a remote entry with the right fingerprint but a certificate the server never trusted.
        let conf = newClientConf()
        try FileManager.default.createDirectory(atPath: conf, withIntermediateDirectories: true)
        let config = "{\"default_remote\":\"local\",\"remotes\":{\"r1\":{\"addresses\":[\"\(address)\"],\"fingerprint\":\"\(try serverFingerprint)\"}}}"
        try config.write(toFile: "\(conf)/config.json", atomically: true, encoding: .utf8)
        let r = try client(conf, ["list", "r1:"])
        #expect(r.status == 1)
        #expect(r.stderr.contains("not authorized"), "stderr: \(r.stderr)")

        // Raw: TLS succeeds, /1.0 says untrusted, everything else is LXD's 403 error envelope.
        let stranger = try IdentityGenerator.generate(commonName: "stranger")
        let api = try LXDClient.https(addresses: [address], serverFingerprint: try serverFingerprint, identity: stranger)
        defer { Task { await api.transport.shutdown() } }
        #expect(try await api.get(Server.self, "/1.0").auth == "untrusted")
        let raw = try await api.transport.send(HTTPRequest(.GET, "/1.0/instances"))
        #expect(raw.status == 403)
        let body = try JSONSerialization.jsonObject(with: Data(raw.body)) as? [String: Any]
        #expect(body?["type"] as? String == "error" && body?["error_code"] as? Int == 403, "body: \(String(decoding: raw.body, as: UTF8.self))")
        await #expect(throws: APIError.self) { try await api.addCertificate(stranger.certificatePEM, name: "self-service") }
        await #expect(throws: APIError.self) { try await api.addPresentedCertificate(name: "x", trustToken: "") }
        #expect(try trustedNames().isEmpty, "nothing may be added by an untrusted client")
    }

    @Test func tokensAreSingleUseExpireAndMustMatch() throws {
        // Reused.
        let t = try token(for: "first")
        #expect(try client(newClientConf(), ["remote", "add", "r1", "--token", t]).status == 0)
        let reuse = try client(newClientConf(), ["remote", "add", "r1", "--token", t])
        #expect(reuse.status != 0 && reuse.stderr.contains("not authorized"), "reused token: \(reuse.stderr)")
        #expect(try trustedNames() == ["first"])

        // Expired.
        let short = try token(for: "late", extra: ["--expiry", "1"])
        Thread.sleep(forTimeInterval: 2)
        let expired = try client(newClientConf(), ["remote", "add", "r2", "--token", short])
        #expect(expired.status != 0 && expired.stderr.contains("not authorized"), "expired token: \(expired.stderr)")

        // Forged: right server, made-up secret.
        var forged = try TrustToken.decode(try token(for: "victim"))
        forged.secret = TrustToken.newSecret()
        let forgedRun = try client(newClientConf(), ["remote", "add", "r3", "--token", forged.encoded()])
        #expect(forgedRun.status != 0 && forgedRun.stderr.contains("not authorized"), "forged token: \(forgedRun.stderr)")
        #expect(try trustedNames() == ["first"], "refused tokens add nothing")
        let unsaved = try client(confDirs.last!, ["remote", "list", "--format", "csv"]).stdout
        #expect(!unsaved.contains("r3"), "a refused remote is not saved: \(unsaved)")
    }

    @Test func tokenForAnotherServerIsRefusedBeforeTheSecretIsSent() throws {
        let real = try token(for: "careful")
        var wrong = try TrustToken.decode(real)
        wrong.fingerprint = try IdentityGenerator.generate(commonName: "impostor").fingerprint
        let r = try client(newClientConf(), ["remote", "add", "r1", "--token", wrong.encoded()])
        #expect(r.status != 0 && r.stderr.contains("fingerprint"), "stderr: \(r.stderr)")
        #expect(try trustedNames().isEmpty)
        // The secret never reached the server: the genuine token still works.
        let ok = try client(newClientConf(), ["remote", "add", "r1", "--token", real])
        #expect(ok.status == 0, "genuine token after the refused one: \(ok.stderr)")
        #expect(try trustedNames() == ["careful"])
    }

    @Test func cliMistakesAreExplained() throws {
        let conf = newClientConf()
        let unknown = try client(conf, ["list", "nowhere:"])
        #expect(unknown.status == 1 && unknown.stderr.contains("unknown remote \"nowhere\""), "stderr: \(unknown.stderr)")
        let garbage = try client(conf, ["remote", "add", "r1", "--token", "not-a-token"])
        #expect(garbage.status == 1 && garbage.stderr.contains("invalid trust token"), "stderr: \(garbage.stderr)")
        #expect(!FileManager.default.fileExists(atPath: "\(conf)/config.json"), "nothing saved")
    }

    @Test func failsOverToTheNextAddressAndMeasuresLatency() async throws {
        let conf = newClientConf()
        let t = try token(for: "bench")
        let dead = "127.0.0.1:\(TestAgent.freePort())"
        let add = try client(conf, ["remote", "add", "r1", "\(dead),\(address)", "--token", t])
        #expect(add.status == 0, "remote add with a dead first address: \(add.stderr)")
        #expect(try client(conf, ["list", "r1:", "--format", "csv"]).status == 0)

        // Figures: a fresh connection (TCP + mutual TLS handshake + GET /1.0) vs a keep-alive GET.
        let identity = try TLSIdentity.load(certPath: "\(conf)/client.crt", keyPath: "\(conf)/client.key")
        let fp = try serverFingerprint
        let clock = ContinuousClock()
        var fresh: [Duration] = [], reused: [Duration] = []
        for _ in 0..<20 {
            let api = try LXDClient.https(addresses: [address], serverFingerprint: fp, identity: identity)
            var auth = ""
            fresh.append(try await clock.measure { auth = try await api.get(Server.self, "/1.0").auth })
            #expect(auth == "trusted")
            await api.transport.shutdown()
        }
        let api = try LXDClient.https(addresses: [address], serverFingerprint: fp, identity: identity)
        _ = try await api.get(Server.self, "/1.0")
        for _ in 0..<50 { reused.append(try await clock.measure { _ = try await api.get(Server.self, "/1.0") }) }
        await api.transport.shutdown()
        func median(_ d: [Duration]) -> String { "\(d.sorted()[d.count / 2])" }
        print("FIGURE https: new connection + mTLS handshake + GET /1.0 median \(median(fresh)); keep-alive GET /1.0 median \(median(reused))")
    }
}

/// A client that connects to the HTTPS API and never sends anything (a stalled or abandoned
/// dial) must not hold up the agent's shutdown: Hummingbird's own shutdown would wait for it.
@Suite(.serialized, .enabled(if: Prerequisites.available, "needs root, busybox and the built binaries"))
final class SilentClientTests {
    @Test func aSilentConnectionDoesNotHoldUpStopping() throws {
        let address = "127.0.0.1:\(TestAgent.freePort())"
        let agent = try TestAgent(httpsAddress: address)
        defer { agent.destroy() }
        let fd = try #require(TestAgent.connectTCP(address), "cannot connect to \(address)")
        defer { close(fd) }
        usleep(200_000)
        let started = Date()
        agent.stop()
        let took = Date().timeIntervalSince(started)
        print("agent stopped \(String(format: "%.2f", took)) s after SIGTERM with a silent HTTPS connection open")
        // The deadline for silent connections is 10 s; stopping closes them at once instead.
        #expect(took < 5, "stopping waited \(took) s for a connection that sent nothing:\n\(agent.logTail())")
    }
}
