import APITypes
import Foundation
import Testing
@testable import LXDClient

@Suite struct RequestBuildingTests {
    @Test func pathSegmentsAreEscaped() {
        #expect(APIPath.instance("c1") == "/1.0/instances/c1")
        #expect(APIPath.instance("a/b c") == "/1.0/instances/a%2Fb%20c")
        #expect(APIPath.operationWait("abc-123") == "/1.0/operations/abc-123/wait")
        #expect(APIPath.operationWebSocket("x") == "/1.0/operations/x/websocket")
        #expect(APIPath.imageAlias("busybox") == "/1.0/images/aliases/busybox")
    }

    @Test func targetCarriesEscapedQuery() {
        let request = HTTPRequest(.GET, APIPath.instanceFiles("c1"), query: [QueryItem("path", "/etc/my file&x=y")])
        #expect(request.target == "/1.0/instances/c1/files?path=%2Fetc%2Fmy%20file%26x%3Dy")
        #expect(HTTPRequest(.GET, "/1.0").target == "/1.0")
        let two = HTTPRequest(.GET, "/1.0/instances", query: [QueryItem("recursion", "2"), QueryItem("target", "m1")])
        #expect(two.target == "/1.0/instances?recursion=2&target=m1")
    }

    @Test func operationIDFromURL() {
        #expect(APIPath.operationID(fromURL: "/1.0/operations/5b1c-9") == "5b1c-9")
        #expect(APIPath.operationID(fromURL: "/1.0/operations/a%2Fb") == "a/b")
        #expect(APIPath.operationID(fromURL: "/1.0/operations/abc?project=default") == "abc")
        #expect(APIPath.operationID(fromURL: "/1.0/instances/c1") == nil)
        #expect(APIPath.operationID(fromURL: "/1.0/operations/") == nil)
        #expect(APIPath.operationID(fromURL: "/1.0/operations/x/wait") == nil)
    }

    @Test func requestHeadSetsHostLengthAndJSONType() {
        let post = HTTPRequest(.POST, "/1.0/instances", body: Array("{}".utf8))
        let head = HTTPConnection.requestHead(post, host: "lxd")
        #expect(head.uri == "/1.0/instances")
        #expect(head.headers["Host"] == ["lxd"])
        #expect(head.headers["Content-Length"] == ["2"])
        #expect(head.headers["Content-Type"] == ["application/json"])

        let upload = HTTPRequest(.POST, "/1.0/images", headers: [(name: "Content-Type", value: "application/octet-stream")], body: [1, 2, 3])
        #expect(HTTPConnection.requestHead(upload, host: "lxd").headers["Content-Type"] == ["application/octet-stream"])

        let emptyPost = HTTPConnection.requestHead(HTTPRequest(.POST, "/x"), host: "lxd")
        #expect(emptyPost.headers["Content-Length"] == ["0"])
        let get = HTTPConnection.requestHead(HTTPRequest(.GET, "/1.0"), host: "lxd")
        #expect(get.headers["Content-Length"].isEmpty)
    }

    @Test func onlyGetIsResentAfterAnAmbiguousFailure() {
        #expect(RequestMethod.GET.isSafeToResend)
        for method in [RequestMethod.POST, .PUT, .PATCH, .DELETE] { #expect(!method.isSafeToResend) }
    }

    @Test func defaultSocketPathFollowsLXDDir() {
        #expect(LXDClient.defaultSocketPath(environment: [:]) == "/var/lib/lxd-swift/unix.socket")
        #expect(LXDClient.defaultSocketPath(environment: ["LXD_DIR": "/tmp/m1/"]) == "/tmp/m1/unix.socket")
        #expect(LXDClient.defaultSocketPath(environment: ["LXD_DIR": ""]) == "/var/lib/lxd-swift/unix.socket")
    }
}

@Suite struct EnvelopeTests {
    func response(_ status: Int, _ json: String) -> HTTPResponse {
        HTTPResponse(status: status, body: Array(json.utf8))
    }

    @Test func syncMetadataDecodes() throws {
        let r = response(200, #"{"type":"sync","status":"Success","status_code":200,"metadata":{"name":"a","description":"","target":"fp1","type":"container"}}"#)
        let alias = try Envelope.decodeSync(ImageAliasEntry.self, from: r)
        #expect(alias == ImageAliasEntry(name: "a", target: "fp1"))
    }

    @Test func errorEnvelopeBecomesAPIError() {
        let r = response(404, #"{"type":"error","error":"Instance not found","error_code":404,"metadata":null}"#)
        #expect(throws: APIError(404, "Instance not found")) { try Envelope.decodeSync([String].self, from: r) }
        #expect(Envelope.error(in: r) == APIError(404, "Instance not found"))
    }

    @Test func errorCodeMissingFallsBackToHTTPStatus() {
        let r = response(409, #"{"type":"error","error":"exists"}"#)
        #expect(Envelope.error(in: r) == APIError(409, "exists"))
    }

    @Test func nonEnvelopeErrorKeepsStatusAndBody() {
        let r = response(502, "Bad Gateway")
        #expect(Envelope.error(in: r) == APIError(502, "HTTP 502: Bad Gateway"))
    }

    @Test func malformedSuccessIsAnError() {
        let r = response(200, "not json")
        #expect(throws: APIError.self) { try Envelope.decodeSync([String].self, from: r) }
    }

    @Test func asyncTakesIDFromOperationURL() throws {
        let op = APITypes.Operation(id: "meta-id", class: "task", description: "Creating instance", createdAt: "t", updatedAt: "t",
                           status: .running, resources: [:], metadata: nil, location: "m1")
        let body = try JSONEncoder().encode(Response.async(operationURL: "/1.0/operations/url-id", op))
        let decoded = try Envelope.decodeAsync(from: HTTPResponse(status: 202, body: Array(body)))
        #expect(decoded.id == "url-id")
        #expect(decoded.description == "Creating instance")
    }

    @Test func syncWhereAsyncExpectedIsAnError() {
        let r = response(200, #"{"type":"sync","status":"Success","status_code":200,"metadata":{}}"#)
        #expect(throws: APIError.self) { try Envelope.decodeAsync(from: r) }
    }

    @Test func nullMetadataIsReportedNotCrashed() {
        let r = response(200, #"{"type":"sync","status":"Success","status_code":200,"metadata":null}"#)
        #expect(throws: APIError.self) { try Envelope.decodeSync([String].self, from: r) }
        #expect(throws: Never.self) { try Envelope.checkSync(r) }
    }
}

@Suite struct PresentationTests {
    @Test func humanSizes() {
        #expect(ByteSize.human(0) == "0B")
        #expect(ByteSize.human(1023) == "1023B")
        #expect(ByteSize.human(1024) == "1.00KiB")
        #expect(ByteSize.human(1_289_748) == "1.23MiB")
        #expect(ByteSize.human(64 * 1024 * 1024) == "64.00MiB")
        #expect(ByteSize.human(3 * 1024 * 1024 * 1024 + 512 * 1024 * 1024) == "3.50GiB")
        #expect(ByteSize.human(1024 * 1024 - 1) == "1024.00KiB")
    }

    @Test func keyValueParsing() throws {
        #expect(try ArgumentSyntax.keyValue("limits.memory=64MiB") == ("limits.memory", "64MiB"))
        #expect(try ArgumentSyntax.keyValue("user.x=a=b") == ("user.x", "a=b"))
        #expect(try ArgumentSyntax.keyValue("user.empty=") == ("user.empty", ""))
        #expect(throws: ArgumentSyntax.Invalid.self) { try ArgumentSyntax.keyValue("novalue") }
        #expect(throws: ArgumentSyntax.Invalid.self) { try ArgumentSyntax.keyValue("=v") }
        #expect(try ArgumentSyntax.keyValues(["a=1", "b=2", "a=3"]) == ["a": "3", "b": "2"])
    }

    @Test func instancePathParsing() throws {
        #expect(try ArgumentSyntax.instancePath("c1/etc/hosts") == ("c1", "/etc/hosts"))
        #expect(throws: ArgumentSyntax.Invalid.self) { try ArgumentSyntax.instancePath("/etc/hosts") }
        #expect(throws: ArgumentSyntax.Invalid.self) { try ArgumentSyntax.instancePath("c1") }
        #expect(throws: ArgumentSyntax.Invalid.self) { try ArgumentSyntax.instancePath("c1/") }
    }

    @Test func fileModes() {
        #expect(FileMode.parse("0644") == 0o644)
        #expect(FileMode.parse("755") == 0o755)
        #expect(FileMode.parse("0o4755") == 0o4755)
        #expect(FileMode.parse("0888") == nil)
        #expect(FileMode.parse("17777") == nil)
        #expect(FileMode.parse("") == nil)
        #expect(FileMode.format(0o644) == "0644")
        #expect(FileMode.format(0o4755) == "4755")
        #expect(FileMode.format(0o100644) == "0644")
    }

    @Test func tableRendering() {
        let text = TextTable.render(headers: ["NAME", "STATE"], rows: [["c1", "RUNNING"], ["long-name", "STOPPED"]])
        #expect(text == """
            +-----------+---------+
            |   NAME    |  STATE  |
            +-----------+---------+
            | c1        | RUNNING |
            +-----------+---------+
            | long-name | STOPPED |
            +-----------+---------+

            """)
        #expect(TextTable.render(headers: ["A"], rows: []) == "+---+\n| A |\n+---+\n")
    }

    @Test func csvQuotesOnlyWhenNeeded() {
        #expect(TextTable.csv(rows: [["c1", "RUNNING", ""], ["a,b", "say \"hi\"", "x"]]) == "c1,RUNNING,\n\"a,b\",\"say \"\"hi\"\"\",x\n")
    }

    func instance(_ name: String, _ status: StatusCode, pid: Int64, memory: Int64) -> Instance {
        let state = InstanceState(status: status, pid: pid, processes: pid > 0 ? 2 : 0,
                                  memory: .init(usage: memory, usagePeak: memory * 2, total: 0), cpu: .init(usage: 2_500_000_000))
        return Instance(name: name, status: status, architecture: "x86_64", config: ["limits.memory": "64MiB", "user.note": "yes"],
                        location: "m1", createdAt: "2026-11-27T11:00:00Z", lastUsedAt: "2026-11-27T11:00:01Z", state: state)
    }

    @Test func listRowsSortedWithLiveColumnsOnlyWhenRunning() {
        let rows = Views.instanceRows([instance("web", .running, pid: 4242, memory: 1_289_748), instance("db", .stopped, pid: 0, memory: 0)])
        #expect(rows == [["db", "STOPPED", "", "", "m1"], ["web", "RUNNING", "4242", "1.23MiB", "m1"]])
        #expect(Views.instanceColumns == ["NAME", "STATE", "PID", "MEMORY", "LOCATION"])
    }

    @Test func infoShowsStateAndConfig() {
        let i = instance("web", .running, pid: 4242, memory: 1_289_748)
        let text = Views.info(i, state: i.state)
        for line in ["Name: web", "Status: RUNNING", "Location: m1", "Created: 2026-11-27T11:00:00Z", "PID: 4242", "Processes: 2",
                     "    Memory (current): 1.23MiB", "    Memory (peak): 2.46MiB", "    CPU usage (in seconds): 2",
                     "  limits.memory: 64MiB", "  user.note: \"yes\""] {
            #expect(text.contains(line + "\n"), "missing \(line)")
        }
        let stopped = instance("db", .stopped, pid: 0, memory: 0)
        #expect(!Views.info(stopped, state: stopped.state).contains("PID:"))
    }

    @Test func configShowIsSortedYAML() {
        let text = Views.configShow(instance("web", .running, pid: 1, memory: 1))
        #expect(text.hasPrefix("architecture: x86_64\nconfig:\n  limits.memory: 64MiB\n  user.note: \"yes\"\ndevices: {}\n"))
    }

    @Test func yamlScalarsQuoteAmbiguousValues() {
        #expect(Views.yamlScalar("64MiB") == "64MiB")
        #expect(Views.yamlScalar("true") == "\"true\"")
        #expect(Views.yamlScalar("1") == "\"1\"")
        #expect(Views.yamlScalar("") == "\"\"")
        #expect(Views.yamlScalar("a: b") == "\"a: b\"")
        #expect(Views.yamlScalar("line\nnext") == "\"line\\nnext\"")
    }

    @Test func flowJSONIsSortedAndEscaped() {
        let value = JSONValue.object(["b": .int(1), "a": .array([.string("x\"y"), .null, .bool(true)])])
        #expect(Views.flowJSON(value) == #"{"a":["x\"y",null,true],"b":1}"#)
    }
}

@Suite struct ExecPlanTests {
    func op(_ metadata: [String: JSONValue]?) -> APITypes.Operation {
        APITypes.Operation(id: "e1", class: "websocket", description: "Executing command", createdAt: "t", updatedAt: "t",
                  status: .running, resources: [:], metadata: metadata, location: "m1")
    }

    @Test func secretsForPipesAndPty() throws {
        let fds: JSONValue = .object(["0": .string("a"), "1": .string("b"), "2": .string("c"), "control": .string("d")])
        #expect(try ExecSecrets(operation: op(["fds": fds]), interactive: false).byFD == ["0": "a", "1": "b", "2": "c", "control": "d"])
        let pty: JSONValue = .object(["0": .string("a"), "control": .string("d")])
        #expect(try ExecSecrets(operation: op(["fds": pty]), interactive: true).byFD == ["0": "a", "control": "d"])
        #expect(throws: APIError.self) { try ExecSecrets(operation: op(["fds": pty]), interactive: false) }
        #expect(throws: APIError.self) { try ExecSecrets(operation: op(nil), interactive: true) }
    }

    @Test func controlMessagesMatchLXD() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let resize = String(decoding: try encoder.encode(ExecControl.resize(width: 80, height: 24).message), as: UTF8.self)
        #expect(resize == #"{"args":{"height":"24","width":"80"},"command":"window-resize"}"#)
        let signal = String(decoding: try encoder.encode(ExecControl.signal(15).message), as: UTF8.self)
        #expect(signal == #"{"command":"signal","signal":15}"#)
    }

    @Test func execPostUsesLXDFieldNames() throws {
        let options = ExecOptions(command: ["sh", "-c", "echo hi"], environment: ["A": "1"], cwd: "/root", interactive: true, width: 100, height: 30)
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let json = String(decoding: try encoder.encode(options.post), as: UTF8.self)
        #expect(json == #"{"command":["sh","-c","echo hi"],"cwd":"\/root","environment":{"A":"1"},"height":30,"interactive":true,"wait-for-websocket":true,"width":100}"#)
    }
}

@Suite struct MigrationViewTests {
    @Test func aMembersModesWithReasonsAndLiveMovesPerMember() {
        let m = MemberMigration(criuVersion: "4.2.1", modes: [
            "pre-copy": MigrationModeAvailability(available: false, reason: "the kernel has no soft-dirty memory tracking (mem_dirty_track)"),
            "stop-and-copy": MigrationModeAvailability(available: true),
            "post-copy": MigrationModeAvailability(available: false, reason: "fs.pipe-max-size is 1048576"),
            "warp": MigrationModeAvailability(available: false),
        ], liveMoves: [
            "m3": LiveMoveAvailability(possible: false, reason: "member m3 is offline"),
            "m2": LiveMoveAvailability(possible: true, mode: "stop-and-copy"),
        ])
        #expect(Views.migrationLines(m) == [
            "  criu: 4.2.1",
            "  modes:",
            "    stop-and-copy: available",
            "    post-copy: unavailable (fs.pipe-max-size is 1048576)",
            "    pre-copy: unavailable (the kernel has no soft-dirty memory tracking (mem_dirty_track))",
            "    warp: unavailable (no reason given)",
            "  live moves:",
            "    to m2: possible (stop-and-copy)",
            "    to m3: impossible (member m3 is offline)",
        ])
        let none = MemberMigration(criuVersion: nil, modes: [:], liveMoves: [:])
        #expect(Views.migrationLines(none) == ["  criu: none usable", "  modes:"])

        let i = Instance(name: "web", status: .running, architecture: "x86_64", config: [:], location: "m1", createdAt: "", lastUsedAt: "")
        let member = ClusterMemberInfo(serverName: "m1", url: "https://127.0.0.1:8443", database: "voter", status: .online, message: "",
                                       failureDomain: "default", fingerprint: "", migration: m)
        let text = Views.info(i, state: nil, member: member)
        #expect(text.contains("\nMigration (member m1):\n  criu: 4.2.1\n  modes:\n    stop-and-copy: available\n"), "\(text)")
        #expect(text.contains("    to m3: impossible (member m3 is offline)\n"))
        #expect(!Views.info(i, state: nil).contains("Migration"))
    }
}

@Suite struct MoveProgressTests {
    @Test func aLineShowsWhatTheServerReported() {
        #expect(MoveProgress.line(nil) == nil)
        #expect(MoveProgress.line([:]) == nil)
        #expect(MoveProgress.line(["phase": .string("dump")]) == "dump")
        #expect(MoveProgress.line(["phase": .string("transfer"), "bytes_sent": .int(512), "rate_bytes_per_second": .int(2048)])
                == "transfer: 512B sent, 2.00KiB/s")
        #expect(MoveProgress.line(["bytes_sent": .int(1_048_576)]) == "1.00MiB sent")
        #expect(MoveProgress.line(["phase": .int(3), "bytes_sent": .string("x")]) == nil, "values of the wrong type are left out")
    }

    @Test func theFiguresAreWholeMilliseconds() {
        #expect(MoveProgress.figures(["downtime_ms": .double(149.6), "total_ms": .int(600)]) == "downtime 150 ms, total 600 ms")
        #expect(MoveProgress.figures(["total_ms": .double(35.2)]) == "total 35 ms")
        #expect(MoveProgress.figures(["downtime_ms": .double(.infinity), "total_ms": .double(-1)]) == nil)
        #expect(MoveProgress.figures(nil) == nil)
        #expect(MoveProgress.figures(["mode": .string("stop-and-copy"), "downtime_ms": .int(90), "total_ms": .int(400)])
                == "stop-and-copy, downtime 90 ms, total 400 ms")
        #expect(MoveProgress.figures(["mode": .null, "total_ms": .int(400)]) == "total 400 ms", "stateless and cold moves have no mode")
        #expect(MoveProgress.figures(["mode": .string("stop-and-copy")]) == nil, "a mode alone is no figure")
    }
}
