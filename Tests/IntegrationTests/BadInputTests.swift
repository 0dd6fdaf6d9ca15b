import Foundation
import Identity
import Testing

/// Every bad input gets a 4xx in LXD's error shape and changes nothing.
@Suite(.serialized, .enabled(if: Prerequisites.available, "needs root, busybox and the built binaries"))
final class BadInputTests {
    let agent: TestAgent
    let address: String
    var scratch: [String] = []

    init() throws {
        address = "127.0.0.1:\(TestAgent.freePort())"
        agent = try TestAgent(name: "bad", httpsAddress: address)
        try agent.importBusybox()
    }

    deinit {
        agent.destroy()
        for dir in scratch { try? FileManager.default.removeItem(atPath: dir) }
    }

    /// A client identity (certificate and key) made by lxd-keygen; `trusted` adds it to the trust
    /// store as a plain client (not a member) through a token, as `lxdctl remote add` does.
    func clientIdentity(trusted: Bool) throws -> (cert: String, key: String) {
        let conf = "/tmp/lxd-swift-it-conf-\(getpid())-\(UUID().uuidString.prefix(8))"
        scratch.append(conf)
        if trusted {
            let token = try #require(try agent.ok(["config", "trust", "add", "fuzzer"]).split(separator: "\n").last.map(String.init))
            let add = try run(Paths.lxdctl, ["remote", "add", "r1", "--token", token], environment: ["LXDCTL_CONF": conf, "LXD_DIR": "/nonexistent"])
            #expect(add.status == 0, "remote add: \(add.stderr)")
        } else {
            try FileManager.default.createDirectory(atPath: conf, withIntermediateDirectories: true)
            let made = try run("\(Paths.buildDir)/lxd-keygen", ["\(conf)/client.crt", "\(conf)/client.key", "stranger"])
            #expect(made.status == 0, "lxd-keygen: \(made.stderr)")
        }
        return ("\(conf)/client.crt", "\(conf)/client.key")
    }

    /// Raw API call over HTTPS with a client certificate; curl sends the path exactly as spelled.
    func https(_ method: String, _ path: String, identity: (cert: String, key: String)?, body: String? = nil) throws -> (Int, String) {
        var args = ["-s", "-k", "--path-as-is", "-X", method, "-w", "\n%{http_code}", "https://\(address)\(path)"]
        if let identity { args += ["--cert", identity.cert, "--key", identity.key] }
        if let body { args += ["-H", "Content-Type: application/json", "--data-binary", body] }
        let r = try run("/usr/bin/curl", args)
        let lines = r.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        return (Int(lines.last ?? "") ?? 0, lines.dropLast().joined(separator: "\n"))
    }

    /// The agent still answers `GET /1.0` on its unix socket.
    func expectAlive(sourceLocation: SourceLocation = #_sourceLocation) throws {
        let (s, b) = try api("GET", "/1.0")
        #expect(s == 200, "agent stopped answering after a hostile request: \(b)\n\(agent.logTail())", sourceLocation: sourceLocation)
    }

    /// Raw API call over the unix socket; returns (HTTP status, body).
    func api(_ method: String, _ path: String, body: String? = nil, file: String? = nil) throws -> (Int, String) {
        var args = ["-s", "--path-as-is", "--unix-socket", agent.socket, "-X", method, "-w", "\n%{http_code}", "http://lxd\(path)"]
        if let body { args += ["-H", "Content-Type: application/json", "--data-binary", body] }
        if let file { args += ["-H", "Content-Type: application/octet-stream", "--data-binary", "@\(file)"] }
        let r = try run("/usr/bin/curl", args)
        let lines = r.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        return (Int(lines.last ?? "") ?? 0, lines.dropLast().joined(separator: "\n"))
    }

    func snapshot() throws -> String {
        // Name, state and pid of every instance (memory use moves on its own).
        let list = try agent.ok(["list", "--format", "csv"]).split(separator: "\n").map { $0.split(separator: ",").prefix(3).joined(separator: ",") }
        let dirs = (try? FileManager.default.contentsOfDirectory(atPath: "\(agent.dataDir)/containers"))?.sorted() ?? []
        let cg = (try? FileManager.default.contentsOfDirectory(atPath: "/sys/fs/cgroup/memory/lxd-swift/\(agent.name)"))?.filter { !$0.contains(".") }.sorted() ?? []
        let images = try agent.ok(["image", "list"])
        return "\(list)|\(dirs)|\(cg)|\(images)"
    }

    func expectRefused(_ status: Int, _ body: String, _ code: Int, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(status == code, "HTTP \(status): \(body)", sourceLocation: sourceLocation)
        #expect(body.contains("\"type\":\"error\"") && body.contains("\"error_code\":\(code)"), "LXD error shape: \(body)", sourceLocation: sourceLocation)
    }

    @Test func badNamesConfigAndDuplicates() throws {
        try agent.ok(["launch", "busybox", "dup"])
        let before = try snapshot()
        for bad in ["1abc", "-x", "x-", "a_b", "a.b", String(repeating: "a", count: 64), "../etc"] {
            let (s, b) = try api("POST", "/1.0/instances", body: #"{"name":"\#(bad)","source":{"type":"image","alias":"busybox"}}"#)
            expectRefused(s, b, 400)
        }
        var (s, b) = try api("POST", "/1.0/instances", body: #"{"name":"ok1","source":{"type":"image","alias":"busybox"},"config":{"limits.bogus":"1"}}"#)
        expectRefused(s, b, 400)
        (s, b) = try api("POST", "/1.0/instances", body: #"{"name":"ok1","source":{"type":"image","alias":"busybox"},"config":{"limits.memory":"lots"}}"#)
        expectRefused(s, b, 400)
        (s, b) = try api("POST", "/1.0/instances", body: #"{"name":"ok1","source":{"type":"image","alias":"busybox"},"config":{"volatile.idmap.base":"0"}}"#)
        expectRefused(s, b, 400)
        (s, b) = try api("POST", "/1.0/instances", body: #"{"name":"dup","source":{"type":"image","alias":"busybox"}}"#)
        expectRefused(s, b, 409)
        (s, b) = try api("POST", "/1.0/instances", body: #"{"name":"ok2","source":{"type":"image","alias":"nosuchimage"}}"#)
        expectRefused(s, b, 404)
        (s, b) = try api("POST", "/1.0/instances", body: #"{"name": "ok3", "source": "#)
        expectRefused(s, b, 400)
        (s, b) = try api("PATCH", "/1.0/instances/dup", body: #"{"config":{"limits.cpu":"-2"}}"#)
        expectRefused(s, b, 400)
        // A NUL in an alias reached the database and came back as a 500 (fuzz-api --long, seed 19046).
        for body in [#"{"name":"a\u0000b","target":"busybox"}"#, #"{"name":"ok","description":"x\u0000","target":"busybox"}"#,
                     #"{"name":"tab\there","target":"busybox"}"#] {
            (s, b) = try api("POST", "/1.0/images/aliases", body: body)
            expectRefused(s, b, 400)
        }
        #expect(try snapshot() == before, "refused requests must change nothing")
    }

    @Test func oversizeBody() throws {
        let before = try snapshot()
        let big = "\(agent.dataDir)/big.json"
        let padding = String(repeating: "x", count: 5 << 20)
        try #"{"name":"big","source":{"type":"image","alias":"busybox"},"description":"\#(padding)"}"#.write(toFile: big, atomically: true, encoding: .utf8)
        let r = try run("/usr/bin/curl", ["-s", "--unix-socket", agent.socket, "-X", "POST", "-w", "\n%{http_code}", "-H", "Content-Type: application/json", "--data-binary", "@\(big)", "http://lxd/1.0/instances"])
        let status = Int(r.stdout.split(separator: "\n").last ?? "") ?? 0
        #expect(status == 413, "oversize body: \(r.stdout.suffix(300))")
        #expect(try snapshot() == before)
    }

    @Test func execIntoStoppedInstance() throws {
        try agent.ok(["init", "busybox", "stopped1"])
        let r = try agent.ctl(["exec", "stopped1", "--", "true"])
        #expect(r.status != 0)
        #expect(r.stderr.lowercased().contains("not running"), "stderr: \(r.stderr)")
        let (s, b) = try api("POST", "/1.0/instances/stopped1/exec", body: #"{"command":["true"],"wait-for-websocket":true}"#)
        expectRefused(s, b, 400)
    }

    @Test func badImages() throws {
        let before = try snapshot()
        let work = "\(agent.dataDir)/badimg"
        try FileManager.default.createDirectory(atPath: "\(work)/rootfs/bin", withIntermediateDirectories: true)
        try "x".write(toFile: "\(work)/rootfs/bin/x", atomically: true, encoding: .utf8)
        // No metadata.yaml.
        try run("/bin/tar", ["-C", work, "-cf", "\(work)/nometa.tar", "rootfs"])
        // The upload is accepted as an operation; the import fails in it, saying why.
        var (s, b) = try api("POST", "/1.0/images", file: "\(work)/nometa.tar")
        #expect(s == 202, "\(s) \(b)")
        #expect(try waitOperation(b).contains("metadata.yaml"))
        // A path escaping rootfs/.
        try "architecture: x86_64\n".write(toFile: "\(work)/metadata.yaml", atomically: true, encoding: .utf8)
        try run("/bin/tar", ["-C", work, "-cf", "\(work)/escape.tar", "metadata.yaml", "rootfs", "--transform", "s,^rootfs/bin/x,rootfs/../../escaped,", "--absolute-names"])
        (s, b) = try api("POST", "/1.0/images", file: "\(work)/escape.tar")
        #expect(s == 202, "\(s) \(b)")
        let escape = try waitOperation(b)
        #expect(escape.contains(".."), "escape refused for the right reason: \(escape)")
        // Not a tarball at all.
        try "garbage".write(toFile: "\(work)/garbage.tar", atomically: true, encoding: .utf8)
        (s, b) = try api("POST", "/1.0/images", file: "\(work)/garbage.tar")
        #expect(s == 202, "\(s) \(b)")
        let garbage = try waitOperation(b)
        #expect(garbage.contains("tar"), "garbage refused for the right reason: \(garbage)")
        #expect(try snapshot() == before)
        let leftovers = (try? FileManager.default.contentsOfDirectory(atPath: "\(agent.dataDir)/images")) ?? []
        #expect(leftovers.allSatisfy { !$0.hasPrefix(".") && !$0.contains("tmp") }, "no temporary layer left: \(leftovers)")
    }

    /// Waits on an async response's operation; returns its error text ("" on success, which the
    /// callers' content checks then refuse).
    func waitOperation(_ body: String) throws -> String {
        guard let range = body.range(of: #""operation":"/1.0/operations/"#) else { return "no operation in \(body)" }
        let id = body[range.upperBound...].prefix { $0 != "\"" }
        let (_, final) = try api("GET", "/1.0/operations/\(id)/wait?timeout=30")
        guard let data = final.data(using: .utf8), let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any],
              let md = obj["metadata"] as? [String: Any] else { return "bad wait reply \(final)" }
        return md["err"] as? String ?? ""
    }

    @Test func numbersFromRequestsAreRangeChecked() throws {
        try agent.ok(["launch", "busybox", "num1"])
        let before = try snapshot()
        // Each of these once reached a conversion that traps (NaN or huge Double to Int64, a huge
        // Duration); now each is a 400 and the agent lives on.
        for timeout in ["nan", "NaN", "inf", "-inf", "1e300", "-5", "99999999999999999999", "abc", ""] {
            let (s, b) = try api("GET", "/1.0/operations/abc/wait?timeout=\(timeout)")
            expectRefused(s, b, 400)
            try expectAlive()
        }
        for recursion in ["-1", "3", "abc", "99999999999999999999"] {
            let (s, b) = try api("GET", "/1.0/instances?recursion=\(recursion)")
            expectRefused(s, b, 400)
        }
        for timeout in ["9223372036854775807", "-2", "86401"] {
            let (s, b) = try api("PUT", "/1.0/instances/num1/state", body: #"{"action":"stop","timeout":\#(timeout)}"#)
            expectRefused(s, b, 400)
        }
        let (s, b) = try api("PUT", "/1.0/instances/num1/state", body: #"{"action":"stop","timeout":1e300}"#)
        expectRefused(s, b, 400)
        for (header, value) in [("X-LXD-mode", "99999999999"), ("X-LXD-mode", "0o644"), ("X-LXD-mode", "8"), ("X-LXD-uid", "-1"), ("X-LXD-uid", "65536"), ("X-LXD-gid", "4294967296")] {
            let r = try run("/usr/bin/curl", ["-s", "--unix-socket", agent.socket, "-X", "POST", "-w", "\n%{http_code}", "-H", "\(header): \(value)",
                                              "--data-binary", "x", "http://lxd/1.0/instances/num1/files?path=/tmp/f"])
            let lines = r.stdout.split(separator: "\n", omittingEmptySubsequences: false)
            expectRefused(Int(lines.last ?? "") ?? 0, lines.dropLast().joined(separator: "\n"), 400)
        }
        // Found by the fuzz run: a date past 2262 trapped converting to Int64 nanoseconds.
        for expiry in ["5182-04-25T23:16:56-09:03", "1600-01-01T00:00:00Z"] {
            let (s, b) = try api("POST", "/1.0/certificates", body: #"{"token":true,"name":"x","expires_at":"\#(expiry)"}"#)
            expectRefused(s, b, 400)
            #expect(b.contains("expires_at"), "the refusal names the field: \(b)")
            try expectAlive()
        }
        // A member name with a NUL reached the database link (a 500).
        for name in [#"a\u0000b"#, "../m2", "a b", ""] {
            let (s, b) = try api("POST", "/1.0/cluster/members", body: #"{"server_name":"\#(name)"}"#)
            expectRefused(s, b, 400)
        }
        // A member's own certificate (a prefix of it did, in the fuzz run) cannot be deleted by a client.
        try agent.ok(["cluster", "enable", "bad"])
        let own = try Fingerprint.of(certificate: String(contentsOfFile: "\(agent.dataDir)/server.crt", encoding: .utf8))
        for key in [own, String(own.prefix(8))] {
            let (s, b) = try api("DELETE", "/1.0/certificates/\(key)")
            expectRefused(s, b, 400)
        }
        #expect(try agent.ok(["config", "trust", "list", "--format", "csv"]).contains("bad"), "the member's certificate is still trusted")
        // And a malformed image fingerprint was a 500.
        let (fs, fb) = try api("POST", "/1.0/instances", body: #"{"name":"fp1","source":{"type":"image","fingerprint":"\u001b\u009f"}}"#)
        expectRefused(fs, fb, 400)
        try expectAlive()
        #expect(try snapshot() == before, "refused requests must change nothing")
    }

    @Test func unknownRoutesAndMethodsAnswerInLXDShape() throws {
        var (s, b) = try api("GET", "/1.0/nothing-here")
        expectRefused(s, b, 404)
        (s, b) = try api("DELETE", "/1.0/instances")
        expectRefused(s, b, 405)
        (s, b) = try api("GET", "/1.0/instances/%2e%2e/state")
        expectRefused(s, b, 400)
        (s, b) = try api("GET", "/internal/database")
        #expect(s >= 400 && b.contains("\"type\":\"error\""), "a websocket route asked without an upgrade: \(s) \(b)")
        // The same routes through other spellings reach the same handlers.
        (s, b) = try api("GET", "//1.0//instances/")
        #expect(s == 200, "\(b)")
    }

    @Test func membersOnlyRoutesRefuseATrustedNonMemberUnderEverySpelling() throws {
        let client = try clientIdentity(trusted: true)
        let stranger = try clientIdentity(trusted: false)
        let before = try snapshot()
        // A plain trusted client reaches client routes...
        var (s, b) = try https("GET", "/1.0/instances", identity: client)
        #expect(s == 200, "\(b)")
        // ...an untrusted one only learns who the server is.
        (s, b) = try https("GET", "/1.0/instances", identity: stranger)
        expectRefused(s, b, 403)
        (s, b) = try https("GET", "/1.0", identity: stranger)
        #expect(s == 200 && b.contains("\"auth\":\"untrusted\""), "\(b)")

        let heartbeat = #"{"members":[{"name":"forged","address":"127.0.0.9:1","fingerprint":"00","dqlite_id":9}]}"#
        let routes: [(String, String, String?)] = [
            ("POST", "/internal/cluster/heartbeat", heartbeat),
            ("GET", "/internal/database", nil),
            ("POST", "/internal/instances/materialise", "{}"),
            ("GET", "/1.0/images/abc/export", nil),
        ]
        for (method, path, body) in routes {
            let segments = path.split(separator: "/").map(String.init)
            let encodedLast = segments.last!.prefix(1).unicodeScalars.map { String(format: "%%%02X", $0.value) }.joined() + segments.last!.dropFirst()
            let spellings = [
                path, path + "/", "/" + path, path.replacingOccurrences(of: "/", with: "//"), path + "//",
                "/" + segments.dropLast().joined(separator: "/") + "/" + encodedLast,
            ]
            for spelling in spellings {
                for who in [client, stranger] {
                    (s, b) = try https(method, spelling, identity: who, body: body)
                    expectRefused(s, b, 403)
                }
            }
        }
        // Dot segments are refused before anything else, whoever asks.
        (s, b) = try https("POST", "/1.0/../internal/cluster/heartbeat", identity: client, body: heartbeat)
        expectRefused(s, b, 400)
        (s, b) = try https("PUT", "/1.0/cluster", identity: client, body: #"{"enabled":true,"server_name":"x"}"#)
        expectRefused(s, b, 403)
        try expectAlive()
        #expect(try snapshot() == before, "refused requests must change nothing")
        let members = try agent.ok(["cluster", "list", "--format", "csv"])
        #expect(!members.contains("forged"), "a forged heartbeat changed the member list: \(members)")
    }

    @Test func fifosAndHugeFilesInAContainerCannotStallTheAgent() throws {
        try agent.ok(["launch", "busybox", "fifo1"])
        try agent.ok(["exec", "fifo1", "--", "mkfifo", "/tmp/fifo"])
        // Both used to block a cooperative thread in open(2) until a reader or writer came.
        var (s, b) = try api("GET", "/1.0/instances/fifo1/files?path=/tmp/fifo")
        expectRefused(s, b, 400)
        let r = try run("/usr/bin/curl", ["-s", "--max-time", "20", "--unix-socket", agent.socket, "-X", "POST", "-w", "\n%{http_code}",
                                          "--data-binary", "x", "http://lxd/1.0/instances/fifo1/files?path=/tmp/fifo"])
        let lines = r.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        expectRefused(Int(lines.last ?? "") ?? 0, lines.dropLast().joined(separator: "\n"), 400)
        // A sparse file far larger than a pull carries is refused, not read into memory.
        try agent.ok(["exec", "fifo1", "--", "truncate", "-s", "64G", "/tmp/huge"])
        (s, b) = try api("GET", "/1.0/instances/fifo1/files?path=/tmp/huge")
        expectRefused(s, b, 400)
        try expectAlive()
    }
}
