import Foundation
import Gateway
import Identity
import IdentityGenerator
import Testing

/// The security boundaries of docs/security.md, each tried from the side that should be kept
/// out: a local non-root user, an HTTPS client without trust, with trust but not a member, an
/// old TLS client, and a container's root user.
@Suite(.serialized, .enabled(if: Prerequisites.available, "needs root, busybox and the built binaries"))
final class SecurityTests {
    let agent: TestAgent
    let address: String
    /// Directories this test made outside the agent's (client identities, host-side targets).
    var scratch: [String] = []

    init() throws {
        address = "127.0.0.1:\(TestAgent.freePort())"
        agent = try TestAgent(name: "sec", httpsAddress: address)
    }

    deinit {
        agent.destroy()
        for dir in scratch { try? FileManager.default.removeItem(atPath: dir) }
    }

    func newScratch(_ what: String) throws -> String {
        let dir = "/tmp/lxd-swift-it-\(what)-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        scratch.append(dir)
        return dir
    }

    // MARK: - Local API

    @Test func unixSocketIsRootsOnly() throws {
        var st = stat()
        #expect(stat(agent.socket, &st) == 0, "stat \(agent.socket): errno \(errno)")
        #expect(st.st_mode & S_IFMT == S_IFSOCK, "\(agent.socket) is not a socket")
        #expect(st.st_mode & 0o7777 == 0o660, "socket mode \(String(st.st_mode & 0o7777, radix: 8)), want 660")
        #expect(st.st_uid == 0 && st.st_gid == 0, "socket owned by \(st.st_uid):\(st.st_gid), want root:root")

        // A local user who is not root nor in group root cannot connect, even when every
        // directory above lets them through (so only the socket's own mode stops them).
        let parent = URL(fileURLWithPath: agent.socket).deletingLastPathComponent().path
        var dirStat = stat()
        stat(parent, &dirStat)
        chmod(parent, dirStat.st_mode & 0o7777 | 0o001)
        defer { chmod(parent, dirStat.st_mode & 0o7777) }
        let asNobody = try run("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "--",
                                                    "/usr/bin/curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                                    "--unix-socket", agent.socket, "http://lxd/1.0"])
        #expect(asNobody.status != 0 && asNobody.stdout != "200", "uid 65534 reached the API: curl exit \(asNobody.status), HTTP \(asNobody.stdout)")
        let asRoot = try run("/usr/bin/curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--unix-socket", agent.socket, "http://lxd/1.0"])
        #expect(asRoot.stdout == "200", "root must reach the API through the socket: \(asRoot.stdout) \(asRoot.stderr)")
    }

    // MARK: - HTTPS

    /// One HTTPS request with curl (which sends the path exactly as given).
    func https(_ method: String, _ path: String, identity: (cert: String, key: String)?, body: String? = nil)
        throws -> (curlExit: Int32, status: Int, body: String) {
        var args = ["-sk", "--path-as-is", "--max-time", "20", "-X", method, "-w", "\n%{http_code}", "https://\(address)\(path)"]
        if let identity { args += ["--cert", identity.cert, "--key", identity.key] }
        if let body { args += ["-H", "Content-Type: application/json", "--data-binary", body] }
        let r = try run("/usr/bin/curl", args)
        let lines = r.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        return (r.status, Int(lines.last ?? "") ?? 0, lines.dropLast().joined(separator: "\n"))
    }

    /// True when a request for another spelling of a route was refused before any handler ran:
    /// 403, 404 (no such route), or 400 for a path the router will not normalise (`.` and `..`
    /// segments). A handler's own 400 (a bad body) means the request got through.
    func refusedBeforeHandler(_ status: Int, _ body: String) -> Bool {
        guard isLXDError(body, status) else { return false }
        return status == 403 || status == 404 || (status == 400 && body.contains("Invalid request path"))
    }

    /// True when `body` is LXD's error envelope for `code`.
    func isLXDError(_ body: String, _ code: Int) -> Bool {
        guard let json = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any] else { return false }
        return json["type"] as? String == "error" && json["error_code"] as? Int == code && !((json["error"] as? String) ?? "").isEmpty
    }

    /// Writes a fresh identity's certificate and key for curl.
    func identityFiles(_ name: String) throws -> (cert: String, key: String, identity: TLSIdentity) {
        let dir = try newScratch("id-\(name)")
        let identity = try IdentityGenerator.generate(commonName: name)
        try identity.certificatePEM.write(toFile: "\(dir)/client.crt", atomically: true, encoding: .utf8)
        try identity.privateKeyPEM.write(toFile: "\(dir)/client.key", atomically: true, encoding: .utf8)
        return ("\(dir)/client.crt", "\(dir)/client.key", identity)
    }

    /// The same route as the server sees it, spelled other ways a router or a prefix check
    /// might treat differently: trailing and doubled slashes, dot segments, percent-encoding.
    static func spellings(_ path: String) -> [String] {
        let segments = path.split(separator: "/").map(String.init)
        var out = [path, path + "/", "/" + path, "/." + path, path + "/.", path.replacingOccurrences(of: "/", with: "//")]
        if segments.count >= 2 {
            out.append("/" + segments[0] + "/./" + segments.dropFirst().joined(separator: "/"))
            out.append("/" + segments[0] + "/x/../" + segments.dropFirst().joined(separator: "/"))
        }
        if let last = segments.last, let first = last.unicodeScalars.first {
            let encoded = String(format: "%%%02X", first.value) + String(last.unicodeScalars.dropFirst())
            out.append("/" + (segments.dropLast() + [encoded]).joined(separator: "/"))
        }
        return out
    }

    /// An endpoint's path with a sample value for each parameter.
    static func sample(_ endpoint: Endpoint, image: String = "abc") -> String {
        let values = ["{name}": "c1", "{fingerprint}": image, "{alias}": "busybox", "{id}": "abc", "{member}": "sec",
                      "{group}": "g", "{file}": "lxc.log", "{token}": "0123456789abcdef0123456789abcdef", "{stream}": "rootfs"]
        return "/" + endpoint.path.split(separator: "/").map { values[String($0)] ?? String($0) }.joined(separator: "/")
    }

    /// A body a handler would have to read (so a refusal is not just "no body").
    static func body(_ endpoint: Endpoint) -> String? { ["GET", "DELETE"].contains(endpoint.method) ? nil : "{}" }

    /// Instances (name and state), images and trusted certificates, as local root sees them.
    func state() throws -> String {
        let instances = try agent.ok(["list", "--format", "csv"]).split(separator: "\n").map { $0.split(separator: ",").prefix(2).joined(separator: ",") }
        return "\(instances) | \(try agent.ok(["image", "list", "--format", "csv"])) | \(try agent.ok(["config", "trust", "list", "--format", "csv"]))"
    }

    /// The fingerprint of the (only) image.
    func imageFingerprint() throws -> String {
        let images = try run("/usr/bin/curl", ["-s", "--unix-socket", agent.socket, "http://lxd/1.0/images"]).stdout
        return try #require(images.split(separator: "\"").first { $0.hasPrefix("/1.0/images/") }.map { String($0.dropFirst(12)) },
                            "no image listed: \(images)")
    }

    /// A client trusted through a token, as `remote add` does: its certificate and key files.
    func trustedClient(_ name: String) throws -> (cert: String, key: String) {
        let conf = try newScratch("conf")
        let token = try #require(try agent.ok(["config", "trust", "add", name]).split(separator: "\n").last.map(String.init))
        let add = try run(Paths.lxdctl, ["remote", "add", "r1", "--token", token], environment: ["LXDCTL_CONF": conf, "LXD_DIR": "/nonexistent"])
        try #require(add.status == 0, "remote add: \(add.stderr)")
        return ("\(conf)/client.crt", "\(conf)/client.key")
    }

    @Test func httpsRefusesClientsWithoutTrust() throws {
        try agent.importBusybox()
        try agent.ok(["launch", "busybox", "c1"])
        let image = try imageFingerprint()
        let stranger = try identityFiles("stranger")
        let before = try state()

        // Who the server is: open to anyone, and says the caller is untrusted.
        let root = try https("GET", "/1.0", identity: (stranger.cert, stranger.key))
        #expect(root.status == 200 && root.body.contains("\"auth\":\"untrusted\""), "GET /1.0 as a stranger: \(root.status) \(root.body)")

        let guarded = Endpoints.all.filter { $0.access != .anyone }
        #expect(guarded.count > 40, "the endpoint table lists \(guarded.count) routes that need trust")
        for endpoint in guarded {
            let path = Self.sample(endpoint, image: image)
            let r = try https(endpoint.method, path, identity: (stranger.cert, stranger.key), body: Self.body(endpoint))
            #expect(r.status == 403 && isLXDError(r.body, 403), "\(endpoint.method) \(path) as an untrusted client: HTTP \(r.status) \(r.body)")
            // Other spellings of the same route never reach its handler either.
            for spelling in Self.spellings(path).dropFirst() {
                let s = try https(endpoint.method, spelling, identity: (stranger.cert, stranger.key), body: Self.body(endpoint))
                #expect(refusedBeforeHandler(s.status, s.body), "\(endpoint.method) \(spelling) as an untrusted client: HTTP \(s.status) \(s.body)")
            }
        }
        // The trust token route is open, but without a valid token it trusts nobody.
        let present = try https("POST", "/1.0/certificates", identity: (stranger.cert, stranger.key), body: #"{"type":"client","trust_token":"bogus"}"#)
        #expect(present.status == 403 && isLXDError(present.body, 403), "bogus trust token: \(present.status) \(present.body)")

        // No certificate at all: refused by TLS, or by the API with the same 403.
        for endpoint in guarded {
            let path = Self.sample(endpoint, image: image)
            let r = try https(endpoint.method, path, identity: nil, body: Self.body(endpoint))
            #expect(r.curlExit != 0 || (r.status == 403 && isLXDError(r.body, 403)),
                    "\(endpoint.method) \(path) without a certificate: curl \(r.curlExit), HTTP \(r.status) \(r.body)")
        }

        #expect(try state() == before, "a refused request changed something")
        #expect(try agent.ok(["list", "--format", "csv"]).contains("c1,RUNNING"))
    }

    @Test func membersOnlyRoutesRefuseATrustedClient() throws {
        try agent.importBusybox()
        let image = try imageFingerprint()
        let client = try trustedClient("laptop")
        let trusted = try https("GET", "/1.0/instances", identity: client)
        try #require(trusted.status == 200, "the trusted client must reach ordinary routes: \(trusted.status) \(trusted.body)")
        let before = try state()

        let heartbeat = #"{"members":[{"id":1,"name":"forged","address":"127.0.0.1:1","fingerprint":"00","role":"voter"}],"term":1}"#
        let restricted = Endpoints.all.filter { $0.access == .member || $0.access == .local }
        #expect(restricted.count >= 5, "members-only and local-only routes: \(restricted)")
        for endpoint in restricted {
            let path = Self.sample(endpoint, image: image)
            let body = endpoint.path.hasSuffix("heartbeat") ? heartbeat : Self.body(endpoint)
            let canonical = try https(endpoint.method, path, identity: client, body: body)
            #expect(canonical.status == 403 && isLXDError(canonical.body, 403), "\(endpoint.method) \(path) as a trusted non-member: HTTP \(canonical.status) \(canonical.body.prefix(300))")
            for spelling in Self.spellings(path).dropFirst() {
                let r = try https(endpoint.method, spelling, identity: client, body: body)
                #expect(refusedBeforeHandler(r.status, r.body), "\(endpoint.method) \(spelling) as a trusted non-member: HTTP \(r.status) \(r.body.prefix(300))")
            }
        }
        #expect(try state() == before, "a refused request changed something")
    }

    /// A trusted client may add certificates, even of type `server`; one named like a member
    /// must not make its holder a member.
    @Test func aServerCertificateAddedByAClientDoesNotMakeAMember() throws {
        let client = try trustedClient("laptop")
        let forged = try identityFiles("forged-member")
        let pem = forged.identity.certificatePEM.replacingOccurrences(of: "\n", with: "\\n")
        let add = try https("POST", "/1.0/certificates", identity: client, body: #"{"type":"server","name":"sec","certificate":"\#(pem)"}"#)
        // Refusing the type (400) is fine too; what matters is what the certificate can do next.
        let added = "adding it answered HTTP \(add.status) \(add.body.prefix(200))"
        for endpoint in Endpoints.all where endpoint.access == .member {
            let path = Self.sample(endpoint)
            let r = try https(endpoint.method, path, identity: (forged.cert, forged.key), body: Self.body(endpoint))
            #expect(r.status == 403 && isLXDError(r.body, 403), "\(endpoint.method) \(path) with a server certificate added by a client (\(added)): HTTP \(r.status) \(r.body.prefix(300))")
        }
    }

    // A fixed reason: the trait is built when tests are listed, and the check runs openssl.
    @Test(.enabled(if: OpenSSLClient.canSpeakTLS11, "this openssl cannot complete a TLS 1.1 handshake (@SECLEVEL=0) even with its own server: the agent refusing one would prove nothing"))
    func onlyTLS12AndLaterAreAccepted() throws {
        let old = try OpenSSLClient.handshake(address, ["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"])
        #expect(old.version == nil, "a TLS 1.1 client completed a handshake (\(old.version ?? "")):\n\(old.output.suffix(1500))")
        let older = try OpenSSLClient.handshake(address, ["-tls1", "-cipher", "DEFAULT:@SECLEVEL=0"])
        #expect(older.version == nil, "a TLS 1.0 client completed a handshake:\n\(older.output.suffix(1500))")
        let v12 = try OpenSSLClient.handshake(address, ["-tls1_2"])
        #expect(v12.version == "TLSv1.2", "a TLS 1.2 client must work:\n\(v12.output.suffix(1500))")
        let v13 = try OpenSSLClient.handshake(address, ["-tls1_3"])
        #expect(v13.version == "TLSv1.3", "a TLS 1.3 client must work:\n\(v13.output.suffix(1500))")
    }

    // MARK: - Containers

    func launch(_ name: String, _ config: [String] = []) throws {
        if !(try agent.ok(["image", "list", "--format", "csv"]).contains("busybox")) { try agent.importBusybox() }
        try agent.ok(["launch", "busybox", name] + config.flatMap { ["-c", $0] })
    }

    /// The syscall probe, built once per test.
    private var probe: String?

    func probePath() throws -> String {
        if let probe { return probe }
        let built = try SyscallProbe.build(in: try newScratch("probe"))
        probe = built
        return built
    }

    func pushProbe(_ name: String) throws {
        try agent.ok(["file", "push", try probePath(), "\(name)/bin/probe", "--mode", "0755"])
    }

    @Test(.enabled(if: SyscallProbe.missing == nil, "\(SyscallProbe.missing ?? "")"))
    func containersCannotLoadKernelCode() throws {
        // On the host (root, no seccomp), this kernel answers for itself: ENOSYS without module
        // support. Inside, the seccomp filter must answer first, with EPERM.
        let host = try run(try probePath(), ["modules"]).stdout
        for line in host.split(separator: "\n") {
            #expect(SyscallProbe.parse(String(line)).result != "EPERM", "the host itself answers EPERM (\(line)): EPERM inside would prove nothing")
        }
        try launch("c1")
        try pushProbe("c1")
        let inside = try agent.ok(["exec", "c1", "--", "/bin/probe", "modules"])
        let results = Dictionary(uniqueKeysWithValues: inside.split(separator: "\n").map { SyscallProbe.parse(String($0)) }.map { ($0.step, $0.result) })
        for call in ["init_module", "finit_module", "delete_module"] {
            #expect(results[call] == "EPERM", "\(call) inside the container: \(results[call] ?? "not run") (host: \(host.split(separator: "\n").first { $0.hasPrefix(call + " ") } ?? ""))")
        }

        // CAP_SYS_MODULE (bit 16) is out of the bounding set of init and of exec'd commands.
        for file in ["/proc/1/status", "/proc/self/status"] {
            let status = try agent.ok(["exec", "c1", "--", "cat", file])
            let capBnd = status.split(separator: "\n").first { $0.hasPrefix("CapBnd:") }.map { $0.dropFirst(7).trimmingCharacters(in: .whitespaces) } ?? ""
            let bound = try #require(UInt64(capBnd, radix: 16), "no CapBnd in \(file): \(status)")
            #expect(bound & (1 << 16) == 0, "CAP_SYS_MODULE is in the bounding set of \(file): CapBnd \(capBnd)")
            #expect(bound & (1 << 21) != 0, "CapBnd \(capBnd) of \(file) lacks CAP_SYS_ADMIN: not a container root's set, the check above proves nothing")
        }
    }

    @Test func hostProcessesAreInvisible() throws {
        try launch("c1")
        let agentPID = try #require(agent.process?.processIdentifier)
        let hostPIDs = try FileManager.default.contentsOfDirectory(atPath: "/proc").compactMap { Int32($0) }
        let listing = try agent.ok(["exec", "c1", "--", "ls", "/proc"])
        let inside = listing.split(whereSeparator: \.isWhitespace).compactMap { Int32($0) }
        // Init and this `ls` (and maybe an exec helper's process): a handful, not the host's.
        #expect(inside.contains(1) && inside.count <= 5, "pids visible inside: \(inside.sorted()) (the host has \(hostPIDs.count))")
        #expect(!inside.contains(agentPID), "the agent's pid \(agentPID) is visible inside: \(inside.sorted())")
        let ps = try agent.ok(["exec", "c1", "--", "ps", "-o", "pid,comm"])
        #expect(!ps.contains("lxdd") && !ps.contains("lxd-start"), "ps inside shows host processes:\n\(ps)")
        let probe = try agent.ctl(["exec", "c1", "--", "kill", "-0", "\(agentPID)"])
        #expect(probe.status != 0, "kill -0 of the agent's pid \(agentPID) succeeded inside the container")
        #expect(try agent.ok(["exec", "c1", "--", "cat", "/proc/1/cmdline"]).contains("/sbin/init"), "pid 1 inside is the container's init")
    }

    /// Host-global files (not per-namespace), each with a value that changes nothing if written.
    static func hostGlobalTargets() -> [(path: String, value: String)] {
        var targets: [(String, String)] = [
            ("/proc/sys/kernel/core_pattern", "core.lxd-swift-security-test"),
            ("/proc/sys/vm/drop_caches", "1"),
            ("/proc/sys/kernel/panic", (try? String(contentsOfFile: "/proc/sys/kernel/panic", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "1"),
            ("/sys/kernel/rcu_expedited", (try? String(contentsOfFile: "/sys/kernel/rcu_expedited", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "0"),
        ]
        // The bracketed (current) choice.
        if let thp = try? String(contentsOfFile: "/sys/kernel/mm/transparent_hugepage/enabled", encoding: .utf8),
           let open = thp.firstIndex(of: "["), let close = thp.firstIndex(of: "]") {
            targets.append(("/sys/kernel/mm/transparent_hugepage/enabled", String(thp[thp.index(after: open)..<close])))
        }
        // 'h' only prints help to the kernel log. This kernel may have no magic SysRq.
        if FileManager.default.fileExists(atPath: "/proc/sysrq-trigger") { targets.append(("/proc/sysrq-trigger", "h")) }
        return targets
    }

    @Test(.enabled(if: SyscallProbe.missing == nil, "\(SyscallProbe.missing ?? "")"))
    func hostFilesCannotBeWrittenThroughProcOrSys() throws {
        let targets = Self.hostGlobalTargets()
        let before = targets.map { (try? String(contentsOfFile: $0.path, encoding: .utf8)) ?? "" }
        defer {
            // Should a write get through, put the host back as it was.
            for (target, value) in zip(targets, before) where !value.isEmpty && target.path.hasPrefix("/proc/sys/kernel/") {
                if (try? String(contentsOfFile: target.path, encoding: .utf8)) != value { try? value.write(toFile: target.path, atomically: false, encoding: .utf8) }
            }
        }
        // Unprivileged (the default), and privileged: root of the host inside, so every such
        // file must be read-only to it too (against a plain write: a privileged root keeps
        // CAP_SYS_ADMIN and could remount them, see docs/security.md).
        try launch("u1")
        try launch("p1", ["security.privileged=true"])
        for name in ["u1", "p1"] {
            try pushProbe(name)
            for target in targets {
                let out = try agent.ok(["exec", name, "--", "/bin/probe", "write", target.path, target.value])
                let result = SyscallProbe.parse(out)
                #expect(result.step == "open" && result.result != "OK" || result.step == "write" && result.result != "OK",
                        "\(name) wrote \(target.path): \(out)")
            }
            let shell = try agent.ctl(["exec", name, "--", "sh", "-c", "echo core.shell > /proc/sys/kernel/core_pattern"])
            #expect(shell.status != 0, "\(name): sh wrote /proc/sys/kernel/core_pattern")
        }
        let after = targets.map { (try? String(contentsOfFile: $0.path, encoding: .utf8)) ?? "" }
        for (i, target) in targets.enumerated() where !target.path.hasSuffix("drop_caches") && !target.path.hasSuffix("sysrq-trigger") {
            #expect(before[i] == after[i], "\(target.path) changed on the host: \(before[i]) -> \(after[i])")
        }
    }

    @Test func fileTransferStaysInsideTheContainer() throws {
        try launch("f1")
        let host = try newScratch("host-side")
        try "host secret\n".write(toFile: "\(host)/secret", atomically: true, encoding: .utf8)
        try "host original\n".write(toFile: "\(host)/target", atomically: true, encoding: .utf8)
        let marker = "lxd-swift-escape-\(UUID().uuidString.prefix(8))"
        let source = "\(host)/source"
        try "\(marker)\n".write(toFile: source, atomically: true, encoding: .utf8)

        // Symlinks a container's root may make anywhere in its tree, aimed at the host.
        let setup = """
            set -e
            ln -s / /tmp/esc; ln -s /../../../../ /tmp/esc2; ln -s ../../../../../../../.. /tmp/esc3
            ln -s \(host) /tmp/esc4; ln -s \(agent.dataDir) /tmp/esc5
            ln -s \(host)/target /tmp/link-file; ln -s /etc/shadow /tmp/shadow-link
            ln -s \(agent.dataDir)/server.key /tmp/key-link; ln -s \(Paths.repo) /tmp/esc7
            echo container-shadow > /etc/shadow
            mkfifo /tmp/fifo
            """
        try agent.ok(["exec", "f1", "--", "sh", "-c", setup])

        func pushes(_ state: String) throws {
            var n = 0
            func push(_ path: String) throws -> CommandResult {
                n += 1
                return try run(Paths.lxdctl, ["file", "push", source, "f1\(path)"], environment: agent.env, timeout: 30).result
            }
            // Through a directory symlink to the root: lands inside (or is refused), never on the host.
            for link in ["/tmp/esc", "/tmp/esc2", "/tmp/esc3"] {
                let name = "\(marker)-\(state)-\(link.dropFirst(5))"
                let r = try push("\(link)/tmp/\(name)")
                #expect(!FileManager.default.fileExists(atPath: "/tmp/\(name)"), "\(state): push through \(link) wrote the host's /tmp/\(name)")
                if r.status == 0 {
                    let landed = try agent.ctl(["file", "pull", "f1/tmp/\(name)", "-"]).stdout
                    #expect(landed == "\(marker)\n", "\(state): push through \(link) did not land in the container's /tmp")
                }
            }
            for (link, hostDir) in [("/tmp/esc4", host), ("/tmp/esc5", agent.dataDir), ("/tmp/esc7", Paths.repo)] {
                _ = try push("\(link)/\(marker)-\(state)")
                #expect(!FileManager.default.fileExists(atPath: "\(hostDir)/\(marker)-\(state)"), "\(state): push through \(link) wrote into \(hostDir) on the host")
            }
            _ = try push("/../../../../..\(host)/\(marker)-\(state)-dots")
            #expect(!FileManager.default.fileExists(atPath: "\(host)/\(marker)-\(state)-dots"), "\(state): push with .. wrote into \(host) on the host")
            _ = try push("/tmp/link-file")
            #expect(try String(contentsOfFile: "\(host)/target", encoding: .utf8) == "host original\n", "\(state): push through a file symlink wrote the host's file")
        }

        func pulls(_ state: String) throws {
            for path in ["/tmp/shadow-link", "/tmp/esc/etc/shadow", "/tmp/esc3/etc/shadow"] {
                let r = try run(Paths.lxdctl, ["file", "pull", "f1\(path)", "-"], environment: agent.env, timeout: 30).result
                #expect(r.status == 0 && r.stdout == "container-shadow\n", "\(state): pull of \(path): \(r.status) \(r.stdout.prefix(200)) \(r.stderr)")
            }
            for path in ["/tmp/esc4/secret", "/tmp/key-link", "/tmp/esc5/server.key"] {
                let r = try run(Paths.lxdctl, ["file", "pull", "f1\(path)", "-"], environment: agent.env, timeout: 30).result
                #expect(!r.stdout.contains("host secret") && !r.stdout.contains("PRIVATE KEY"), "\(state): pull of \(path) read a host file")
            }
        }

        try pushes("running")
        try pulls("running")

        // A FIFO in the container must not hold a push or a pull (nor the agent) forever.
        for args in [["file", "push", source, "f1/tmp/fifo"], ["file", "pull", "f1/tmp/fifo", "-"]] {
            let (r, timedOut) = try run(Paths.lxdctl, args, environment: agent.env, timeout: 30)
            #expect(!timedOut, "lxdctl \(args.joined(separator: " ")) hung on a FIFO")
            #expect(r.status != 0, "lxdctl \(args.joined(separator: " ")) on a FIFO succeeded: \(r.stdout)")
        }
        #expect(try agent.ok(["exec", "f1", "--", "echo", "alive"]) == "alive\n")

        // A stopped container's files are reached through a temporary mount: same rules.
        try agent.ok(["stop", "f1", "--force"])
        try pushes("stopped")
        try pulls("stopped")
    }
}
