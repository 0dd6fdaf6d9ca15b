import APITypes
import Foundation
import LXDClient
import Gateway
import Operations
import Testing

/// Any member answers any request: three real agents (127.0.0.1-3, HTTPS, joined), instances
/// on m3 seen and driven through m1 and m2.
@Suite(.serialized, .enabled(if: Prerequisites.available, "needs root, busybox and the built binaries"))
final class ForwardingTests {
    var agents: [TestAgent] = []

    deinit {
        for a in agents.reversed() { a.destroy() }
    }

    func cluster() throws -> (TestAgent, TestAgent, TestAgent) {
        let m = try (1...3).map { n in try TestAgent(name: "m\(n)", httpsAddress: "127.0.0.\(n):\(TestAgent.freePort())") }
        agents = m
        for (issuer, joiner) in [(m[0], m[1]), (m[0], m[2])] {
            let out = try issuer.ok(["cluster", "add", joiner.name])
            let token = try #require(out.split(separator: "\n").last.map(String.init))
            let join = try joiner.ctl(["cluster", "join", token])
            try #require(join.status == 0, "join \(joiner.name): \(join.stderr)\n\(joiner.logTail())")
        }
        // Joined members restart on the cluster database: wait until each answers and sees all three.
        for a in m {
            try eventually("\(a.name) sees three members") {
                try a.ok(["cluster", "list", "--format", "csv"]).split(separator: "\n").count == 3
            }
        }
        return (m[0], m[1], m[2])
    }

    func eventually(_ what: String, timeout: Double = 20, _ body: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if (try? body()) == true { return }
            usleep(100_000)
        }
        Issue.record("timed out waiting for: \(what)")
    }

    /// name -> (STATE, LOCATION) as `list` on `a` shows them.
    func listed(_ a: TestAgent) throws -> [String: (state: String, location: String)] {
        var rows: [String: (String, String)] = [:]
        for line in try a.ok(["list", "--format", "csv"]).split(separator: "\n") {
            let f = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            rows[f[0]] = (f[1], f[f.count - 1])
        }
        return rows
    }

    @Test func anyMemberAnswersForInstancesOnAnother() async throws {
        let (m1, m2, m3) = try cluster()
        try m3.importBusybox(alias: "bb")
        try m1.importBusybox(alias: "bb1")

        // launch --target: created and started on m3 though asked of m1; timed against m3 itself
        // (median of three launches each, deleted again, then the two kept).
        func timed(_ body: () throws -> Void) rethrows -> Double {
            let start = Date()
            try body()
            return Date().timeIntervalSince(start)
        }
        func median(_ samples: [Double]) -> String { String(format: "%.3f", samples.sorted()[samples.count / 2]) }
        var throughM1: [Double] = [], direct: [Double] = []
        for i in 0..<3 {
            throughM1.append(try timed { try m1.ok(["launch", "bb", "t\(i)", "--target", "m3"]) })
            direct.append(try timed { try m3.ok(["launch", "bb", "u\(i)", "--target", "m3"]) })
        }
        #expect(try listed(m3)["t0"]?.location == "m3")
        for i in 0..<3 { try m3.ok(["delete", "--force", "t\(i)", "u\(i)"]) }
        try m1.ok(["launch", "bb", "c3", "--target", "m3"])
        try m3.ok(["launch", "bb", "d3", "--target", "m3"])
        print("launch on m3 (median of 3): through m1 \(median(throughM1)) s, on m3 itself \(median(direct)) s")
        var started = Date()
        try m1.ok(["launch", "bb1", "c1", "--target", "m1"])

        // Lists everywhere show the live state the owner reports, with the location.
        for a in [m1, m2, m3] {
            let rows = try listed(a)
            #expect(rows["c3"]?.state == "RUNNING" && rows["c3"]?.location == "m3", "c3 on \(a.name): \(String(describing: rows["c3"]))")
            #expect(rows["c1"]?.state == "RUNNING" && rows["c1"]?.location == "m1", "c1 on \(a.name): \(String(describing: rows["c1"]))")
        }
        let viaM2 = LXDClient.unixSocket(m2.socket)
        let c3 = try await viaM2.instance("c3")
        #expect(c3.status == "Running" && c3.location == "m3")
        let state = try await viaM2.instanceState("c3")
        #expect(state.status == "Running" && state.pid > 0, "\(state)")

        // Writes through m2 run on m3: files, config, console, errors passed through unchanged.
        try await viaM2.pushFile("c3", path: "/tmp/hello", content: Array("from m2\n".utf8), uid: 0, gid: 0, mode: 0o640)
        let pulled = try await LXDClient.unixSocket(m3.socket).pullFile("c3", path: "/tmp/hello")
        #expect(pulled.content == Array("from m2\n".utf8))
        try await viaM2.setConfig("c3", ["user.note": "set-through-m2"])
        #expect(try await LXDClient.unixSocket(m3.socket).instance("c3").config["user.note"] == "set-through-m2")
        _ = try await viaM2.consoleLog("c3")
        func failure(_ client: LXDClient) async -> APIError? {
            do {
                try await client.setConfig("c3", ["no.such.key": "1"])
                return nil
            } catch { return error as? APIError }
        }
        let forwardedError = await failure(viaM2), ownError = await failure(LXDClient.unixSocket(m3.socket))
        #expect(forwardedError != nil && forwardedError == ownError, "through m2: \(String(describing: forwardedError)), on m3: \(String(describing: ownError))")

        // State changes: the operation is m3's (its id says so) and is followed through m2.
        let op = try await viaM2.start(.PUT, "/1.0/instances/c3/state", json: InstanceStatePut(action: "stop", timeout: 5, force: true))
        #expect(op.location == "m3")
        let done = try await viaM2.wait(operation: op.id)
        #expect(done.statusCode == StatusCode.success.rawValue)
        #expect(try listed(m1)["c3"]?.state == "STOPPED")
        try m2.ok(["start", "c3"])
        #expect(try listed(m1)["c3"]?.state == "RUNNING")
        // The id names the member (its first group): like m3's own operations, unlike m1's.
        func memberPart(_ id: String) -> Substring { id.prefix(8) }
        let own = try await LXDClient.unixSocket(m3.socket).start(.PUT, "/1.0/instances/d3/state", json: InstanceStatePut(action: "stop", timeout: 5, force: true))
        let other = try await LXDClient.unixSocket(m1.socket).start(.PUT, "/1.0/instances/c1/state", json: InstanceStatePut(action: "stop", timeout: 5, force: true))
        #expect(memberPart(op.id) == memberPart(own.id) && memberPart(op.id) != memberPart(other.id),
                "ids: forwarded \(op.id), m3 \(own.id), m1 \(other.id)")
        // Listing operations asks every member: m1 lists m3's.
        let everyOperation = try await LXDClient.unixSocket(m1.socket).operations()
        #expect(everyOperation.contains { $0.id == own.id && $0.location == "m3" } && everyOperation.contains { $0.id == other.id },
                "operations seen from m1: \(everyOperation.map { "\($0.id)@\($0.location)" })")
        _ = try await viaM2.wait(operation: own.id)
        _ = try await viaM2.wait(operation: other.id)
        try m1.ok(["start", "c1"])

        // exec through m2: the operation and its websockets are m3's, proxied by m2.
        let exec = try m2.ctl(["exec", "c3", "--", "sh", "-c", "hostname; cat /tmp/hello; exit 3"])
        #expect(exec.status == 3 && exec.stdout == "c3\nfrom m2\n", "exec through m2: \(exec.status) \(exec.stdout) \(exec.stderr)")
        started = Date()
        try m2.ok(["exec", "c3", "--", "true"])
        let execThroughM2 = Date().timeIntervalSince(started)
        started = Date()
        try m3.ok(["exec", "c3", "--", "true"])
        print("exec true: through m2 \(String(format: "%.3f", execThroughM2)) s, on m3 itself \(String(format: "%.3f", Date().timeIntervalSince(started))) s")

        // A request already forwarded once is never forwarded again.
        let again = try await viaM2.transport.send(HTTPRequest(.GET, "/1.0/instances/c3/console", headers: [("X-LXD-Forwarded", "m1")]))
        #expect(again.status == 503, "second hop answered \(again.status)")
        // An unknown target member.
        let nowhere = try m1.ctl(["launch", "bb", "x", "--target", "m9"])
        #expect(nowhere.status != 0 && nowhere.stderr.contains("m9"), "\(nowhere.stderr)")

        // Owner hung (SIGSTOP: connections open but nothing answers): the per-member timeout
        // bounds the list, which reports Error for its instances.
        m1.waitForVoters(["m1", "m2", "m3"])
        let pid = try #require(m3.process?.processIdentifier)
        kill(pid, SIGSTOP)
        started = Date()
        let hung = try listed(m1)
        let hungTime = Date().timeIntervalSince(started)
        let hungGet = try await LXDClient.unixSocket(m1.socket).instance("c3")
        kill(pid, SIGCONT)
        #expect(hung["c3"]?.state == "ERROR" && hung["c3"]?.location == "m3", "\(String(describing: hung["c3"]))")
        #expect(hung["c1"]?.state == "RUNNING")
        #expect(hungGet.status == "Error" && hungGet.location == "m3")
        #expect(hungTime < 6, "list with a hung owner took \(hungTime) s")
        print("list with m3 stopped (SIGSTOP): \(String(format: "%.2f", hungTime)) s")
        try eventually("c3 RUNNING again after SIGCONT") { try self.listed(m1)["c3"]?.state == "RUNNING" }

        // Owner down: its instances show Error, location kept, and the list still answers quickly.
        m3.kill9()
        started = Date()
        let rows = try listed(m1)
        let listTime = Date().timeIntervalSince(started)
        #expect(rows["c3"]?.state == "ERROR" && rows["c3"]?.location == "m3", "\(String(describing: rows["c3"]))")
        #expect(rows["c1"]?.state == "RUNNING")
        #expect(listTime < 4, "list with an unreachable owner took \(listTime) s")
        #expect(try await LXDClient.unixSocket(m1.socket).instance("c3").status == "Error")
        print("list with m3 down: \(String(format: "%.2f", listTime)) s")

        // Back: deletes through m1 run on m3 (the containers kept running while m3 was down).
        try m3.start()
        try eventually("c3 RUNNING again seen from m1") { try self.listed(m1)["c3"]?.state == "RUNNING" }
        try m1.ok(["delete", "--force", "c3"])
        try m2.ok(["delete", "--force", "d3"])
        #expect(try listed(m3)["c3"] == nil && listed(m3)["d3"] == nil)
    }
}

/// The pure decisions of forwarding: which member a request goes to, how owners' answers merge.
@Suite struct ForwardingDecisionTests {
    @Test func operationIDsNameTheirMember() {
        let id = OperationID.make(memberID: 3)
        #expect(id.count == 36 && id.hasPrefix("00000003-"))
        #expect(OperationID.memberID(of: id) == 3)
        #expect(OperationID.memberID(of: OperationID.make(memberID: 0x1234abcd)) == 0x1234abcd)
        #expect(OperationID.memberID(of: "not-an-id") == nil)
        #expect(OperationID.make(memberID: 3) != id)
    }

    @Test func routesFollowThePath() throws {
        typealias R = Forwarding.Route
        #expect(Forwarding.route(method: "GET", path: "/1.0/instances", target: nil) == R.local)
        #expect(Forwarding.route(method: "POST", path: "/1.0/instances", target: nil) == R.local)
        #expect(Forwarding.route(method: "POST", path: "/1.0/instances", target: "m3") == R.create(target: "m3"))
        #expect(Forwarding.route(method: "GET", path: "/1.0/instances/c1", target: nil) == R.instance(name: "c1", isStateRead: true))
        #expect(Forwarding.route(method: "GET", path: "/1.0/instances/c1/state", target: nil) == R.instance(name: "c1", isStateRead: true))
        #expect(Forwarding.route(method: "PUT", path: "/1.0/instances/c1/state", target: nil) == R.instance(name: "c1", isStateRead: false))
        #expect(Forwarding.route(method: "GET", path: "/1.0/instances/c1/logs/console.log", target: nil) == R.instance(name: "c1", isStateRead: false))
        // Routes are decided on the canonical path the front door hands on (decoded once).
        let canonical = RequestPath.path(try RequestPath.segments(of: "//1.0/instances/c%31//exec/"))
        #expect(Forwarding.route(method: "POST", path: canonical, target: nil) == R.instance(name: "c1", isStateRead: false))
        let op = OperationID.make(memberID: 2)
        #expect(Forwarding.route(method: "GET", path: "/1.0/operations/\(op)/wait", target: nil) == R.operation(memberID: 2))
        #expect(Forwarding.route(method: "GET", path: "/1.0/operations/\(op)/websocket", target: nil) == R.operationWebSocket(memberID: 2))
        #expect(Forwarding.route(method: "GET", path: "/1.0/operations", target: nil) == R.local)
        #expect(Forwarding.route(method: "GET", path: "/1.0/images/abc", target: nil) == R.local)
    }

    @Test func ownersAnswersReplaceTheLocalViewAndSilenceIsAnError() {
        func instance(_ name: String, _ status: StatusCode, on member: String) -> Instance {
            Instance(name: name, status: status, architecture: "x86_64", config: [:], location: member, createdAt: "", lastUsedAt: "")
        }
        let list = [instance("a", .running, on: "m1"), instance("b", .stopped, on: "m2"), instance("c", .stopped, on: "m3"), instance("d", .stopped, on: "m2")]
        let answers: [String: [Instance]?] = ["m2": [instance("b", .running, on: "m2")], "m3": [Instance]?.none]
        let merged = Forwarding.merge(list, answers: answers, local: "m1", withState: false)
        #expect(merged.map(\.name) == ["a", "b", "c", "d"])
        #expect(merged.map(\.statusCode) == [103, 103, 112, 112])
        #expect(merged.map(\.location) == ["m1", "m2", "m3", "m2"])
    }
}
