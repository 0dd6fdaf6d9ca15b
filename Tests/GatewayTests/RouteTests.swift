import APITypes
import ClusterDB
import Foundation
@testable import Gateway
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Identity
import Instances
import Logging
import NIOCore
import Operations
import Testing

/// The real router behind the real front door, over fakes of the use cases, driven through
/// Hummingbird's router test client (no sockets). Callers present a certificate through the
/// access check's peer-certificate seam, as they would over HTTPS.
struct RouteHarness {
    static let clientDER = Array("client certificate".utf8)
    static let memberDER = Array("member certificate".utf8)
    static let strangerDER = Array("stranger certificate".utf8)

    var instances = FakeInstances()
    var scheduling = FakeScheduling()
    var images = FakeImages()
    var limits = BodyLimits()
    var forwarder: FakeForwarder? = nil
    var memberState: FakeMemberState? = nil
    var uploads = FileManager.default.temporaryDirectory.path

    func routes() -> APIRoutes {
        // Members' certificates are in the trust store too.
        let trusted = Set([Self.clientDER, Self.memberDER].map { Fingerprint.sha256(der: $0) })
        return APIRoutes(
            lifecycle: instances, access: instances, scheduling: scheduling, images: images,
            operations: OperationRegistry(location: "none", logger: Logger(label: "test")),
            serverInfo: { Server(apiExtensions: [], auth: "", config: [:], environment: .init(
                architectures: ["x86_64"], driver: "lxc", driverVersion: "0", kernel: "Linux", kernelVersion: "6", kernelArchitecture: "x86_64",
                serverName: "none", serverVersion: "0", serverClustered: false, serverPid: 1)) },
            limits: limits, uploadDirectory: uploads,
            trust: FakeTrust(trusted: trusted),
            cluster: FakeCluster(memberFingerprints: [Fingerprint.sha256(der: Self.memberDER)]),
            forwarder: forwarder, memberState: memberState, logger: Logger(label: "test"))
    }

    /// The HTTPS listener's routes as seen by a caller presenting `certificate` (nil: none).
    func app(presenting certificate: [UInt8]?) -> some ApplicationProtocol {
        Application(router: routes().build(remote: true, peerCertificate: { _ in certificate }))
    }

    /// Sends one request as `certificate` (a trusted client by default) and returns the reply.
    func call(_ method: HTTPRequest.Method, _ uri: String, body: String? = nil, headers: HTTPFields = [:],
              as certificate: [UInt8]? = clientDER) async throws -> Reply {
        try await app(presenting: certificate).test(.router) { client in
            let response = try await client.execute(uri: uri, method: method, headers: headers, body: body.map { ByteBuffer(string: $0) })
            return Reply(response)
        }
    }

    /// What a test looks at in a response.
    struct Reply {
        let status: Int
        let headers: HTTPFields
        let body: [UInt8]

        init(_ response: TestResponse) {
            status = response.status.code
            headers = response.headers
            body = Array(buffer: response.body)
        }

        /// LXD's error envelope, checked to be one.
        func error() throws -> ErrorResponse {
            #expect(headers[.contentType] == "application/json")
            let e = try JSONDecoder().decode(ErrorResponse.self, from: Data(body))
            #expect(e.type == "error" && e.errorCode == status && e.metadata == nil)
            return e
        }

        func json() throws -> [String: Any] {
            try #require(try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any])
        }
    }
}

@Suite struct ErrorShapeRouteTests {
    let h = RouteHarness()

    @Test func unknownRouteIsLXDs404() async throws {
        let r = try await h.call(.get, "/1.0/nothing")
        #expect(r.status == 404)
        #expect(try r.error().error == "Unknown API route GET /1.0/nothing: see docs/rest-api.yaml for the routes this server has")
    }

    @Test func wrongMethodIs405NamingTheAllowedOnes() async throws {
        let r = try await h.call(.delete, "/1.0/instances")
        #expect(r.status == 405)
        #expect(r.headers[.allow] == "GET, POST")
        #expect(try r.error().error == "Method DELETE is not allowed on /1.0/instances: use GET, POST")
    }

    @Test func malformedJSONIs400() async throws {
        let r = try await h.call(.put, "/1.0/instances/c1", body: "{\"config\": ")
        #expect(r.status == 400)
        #expect(try r.error().error == "Invalid request body: malformed JSON")
        #expect(h.instances.calls.withLock { $0 }.isEmpty)
    }

    @Test func missingAndMistypedFieldsAreNamed() async throws {
        let missing = try await h.call(.put, "/1.0/instances/c1/state", body: "{}")
        #expect(missing.status == 400)
        #expect(try missing.error().error == "Invalid request body: missing field \"action\"")
        let mistyped = try await h.call(.put, "/1.0/instances/c1/state", body: "{\"action\": 5}")
        #expect(mistyped.status == 400)
        #expect(try mistyped.error().error == "Invalid request body: wrong type at \"action\"")
    }

    @Test func bodyPastTheJSONLimitIs413() async throws {
        var h = h
        h.limits.json = 64
        let big = "{\"name\": \"c2\", \"source\": {\"type\": \"image\", \"alias\": \"\(String(repeating: "x", count: 100))\"}}"
        let r = try await h.call(.post, "/1.0/instances", body: big)
        #expect(r.status == 413)
        #expect(try r.error().error == "Request body is larger than 64 bytes")
        #expect(h.instances.calls.withLock { $0 }.isEmpty)
    }

    @Test func uploadPastTheImageLimitIs413AndLeavesNoFile() async throws {
        var h = h
        h.limits.image = 10
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("gateway-upload-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        h.uploads = dir
        let r = try await h.call(.post, "/1.0/images", body: String(repeating: "x", count: 100))
        #expect(r.status == 413)
        #expect(try r.error().error == "Image upload is larger than 10 bytes")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty)
    }

    @Test(arguments: ["/1.0/instances/a%20b", "/1.0/instances/..", "/1.0/instances/a%2Fb", "/1.0/instances/caf%C3%A9"])
    func badInstanceNameInThePathIs400(path: String) async throws {
        let r = try await h.call(.get, path)
        #expect(r.status == 400)
        #expect(try r.error().error.hasPrefix("Invalid request path"))
        #expect(h.instances.calls.withLock { $0 }.isEmpty)
    }

    @Test func queryNumbersOutOfRangeAre400NamingTheParameter() async throws {
        let wait = try await h.call(.get, "/1.0/operations/abc/wait?timeout=100000")
        #expect(wait.status == 400)
        #expect(try wait.error().error == "Invalid timeout \"100000\": use seconds from 0 to 86400, or -1 to wait until done")
        let recursion = try await h.call(.get, "/1.0/instances?recursion=3")
        #expect(recursion.status == 400)
        #expect(try recursion.error().error == "Invalid recursion \"3\": use 0, 1 or 2")
    }

    /// lxc encodes its filter as a form value (`+` for a space); a malformed one is 400 naming it.
    @Test func instanceListsFilterAsLxcAsks() async throws {
        let names = { (query: String) async throws -> [String] in
            let r = try await h.call(.get, "/1.0/instances?" + query)
            #expect(r.status == 200)
            return try #require(try r.json()["metadata"] as? [String])
        }
        #expect(try await names("filter=status+eq+running") == ["/1.0/instances/c1"])
        #expect(try await names("recursion=0&filter=status%20eq%20stopped").isEmpty)
        #expect(try await names("filter=name+eq+c%5B0-9%5D") == ["/1.0/instances/c1"])
        #expect(try await names("filter=") == ["/1.0/instances/c1"])
        let one = try await h.call(.get, "/1.0/instances?recursion=1&filter=location+eq+none")
        #expect((try one.json()["metadata"] as? [Any])?.count == 1)
        for bad in ["filter=status+like+running", "filter=status+eq", "filter=%zz"] {
            let r = try await h.call(.get, "/1.0/instances?" + bad)
            #expect(r.status == 400, "\(bad)")
            #expect(try r.error().error.hasPrefix("Invalid filter"), "\(bad)")
        }
    }

    /// lxc reads an operation from a PUT (LXD's shape); a refused change is a 400, no operation.
    @Test func instancePutAnswersWithAFinishedOperation() async throws {
        let r = try await h.call(.put, "/1.0/instances/c1", body: #"{"config": {"user.a": "b"}}"#)
        #expect(r.status == 202)
        let json = try r.json()
        #expect(json["type"] as? String == "async")
        #expect((json["metadata"] as? [String: Any])?["description"] as? String == "Updating instance")
        #expect(h.instances.calls.withLock { $0 }.contains("update c1"))
        let bad = try await h.call(.put, "/1.0/instances/c1", body: #"{"config": {"nope.key": "1"}}"#)
        #expect(bad.status == 400)
    }

    @Test func fileHeaderOutOfRangeIs400() async throws {
        var headers = HTTPFields()
        headers[HTTPField.Name("X-LXD-uid")!] = "70000"
        let r = try await h.call(.post, "/1.0/instances/c1/files?path=/etc/x", body: "data", headers: headers)
        #expect(r.status == 400)
        #expect(try r.error().error == "Invalid X-LXD-uid \"70000\": use a number from 0 to 65535")
    }

    @Test func unknownConfigKeyIs400WithTheUseCasesMessage() async throws {
        let r = try await h.call(.patch, "/1.0/instances/c1", body: "{\"config\": {\"nope.key\": \"1\"}}")
        #expect(r.status == 400)
        #expect(try r.error().error == "Invalid config: Unknown configuration key: nope.key")
    }
}

@Suite struct AccessRouteTests {
    let h = RouteHarness()

    /// A concrete request path for an endpoint pattern.
    static func path(_ endpoint: Endpoint) -> String {
        var path = endpoint.path.replacingOccurrences(of: "{name}", with: "c1")
        for p in ["{fingerprint}", "{alias}", "{id}", "{member}", "{group}", "{file}"] { path = path.replacingOccurrences(of: p, with: "x") }
        path = path.replacingOccurrences(of: "{token}", with: "0123456789abcdef0123456789abcdef").replacingOccurrences(of: "{stream}", with: "rootfs")
        return endpoint.webSocket ? path + "?secret=s" : path
    }

    /// The front door's own refusals, told apart from a handler's 403.
    static func refused(_ r: RouteHarness.Reply) throws -> Bool {
        guard r.status == 403 else { return false }
        let message = try r.error().error
        return message == "not authorized" || message == "This is only allowed through the member's unix socket"
    }

    @Test(arguments: Endpoints.all)
    func eachEndpointAdmitsExactlyItsCallers(endpoint: Endpoint) async throws {
        let method = HTTPRequest.Method(endpoint.method)!
        let path = Self.path(endpoint)
        let stranger = try await h.call(method, path, as: RouteHarness.strangerDER)
        let noCertificate = try await h.call(method, path, as: nil)
        let client = try await h.call(method, path, as: RouteHarness.clientDER)
        let member = try await h.call(method, path, as: RouteHarness.memberDER)
        #expect(try Self.refused(stranger) == (endpoint.access != .anyone))
        #expect(try Self.refused(noCertificate) == (endpoint.access != .anyone))
        #expect(try Self.refused(client) == (endpoint.access == .member || endpoint.access == .local))
        #expect(try Self.refused(member) == (endpoint.access == .local))
    }

    @Test(arguments: [
        "/internal/cluster/heartbeat", "/internal/cluster/heartbeat/", "//internal//cluster/heartbeat", "/internal/cluster/%68eartbeat",
        "/%69nternal/cluster/heartbeat", "/internal/instances/materialise/", "/internal/instances//materialise",
    ])
    func plainClientIsRefusedOnMembersOnlyRoutesUnderEverySpelling(path: String) async throws {
        let r = try await h.call(.post, path, body: "{}", as: RouteHarness.clientDER)
        #expect(r.status == 403)
        #expect(try r.error().error == "not authorized")
        #expect(h.instances.calls.withLock { $0 }.isEmpty)
    }

    @Test(arguments: ["/1.0/images/abc/export", "/1.0/images/abc/export/", "/1.0//images/abc/export", "/1.0/images/abc/%65xport"])
    func imageExportIsForMembersOnlyUnderEverySpelling(path: String) async throws {
        let r = try await h.call(.get, path, as: RouteHarness.clientDER)
        #expect(r.status == 403)
        #expect(try r.error().error == "not authorized")
    }

    @Test func serverInfoShowsConfigToTrustedCallersOnly() async throws {
        let stranger = try await h.call(.get, "/1.0", as: RouteHarness.strangerDER)
        let s = try #require(try stranger.json()["metadata"] as? [String: Any])
        #expect(s["auth"] as? String == "untrusted")
        #expect((s["config"] as? [String: String])?["scheduler.instance_policy"] == nil)
        let client = try await h.call(.get, "/1.0")
        let c = try #require(try client.json()["metadata"] as? [String: Any])
        #expect(c["auth"] as? String == "trusted")
        #expect((c["config"] as? [String: String])?["scheduler.instance_policy"] == "spread")
    }
}

@Suite struct SuccessShapeRouteTests {
    let h = RouteHarness()

    @Test func aReadIsASyncReply() async throws {
        let r = try await h.call(.get, "/1.0/instances/c1")
        #expect(r.status == 200)
        #expect(r.headers[.contentType] == "application/json")
        let body = try r.json()
        #expect(body["type"] as? String == "sync")
        #expect(body["status_code"] as? Int == 200)
        #expect((body["metadata"] as? [String: Any])?["name"] as? String == "c1")
    }

    @Test func aListWithoutRecursionIsURLs() async throws {
        let r = try await h.call(.get, "/1.0/instances")
        #expect(try r.json()["metadata"] as? [String] == ["/1.0/instances/c1"])
    }

    @Test func aStateChangeIsAnOperationWithItsLocation() async throws {
        let r = try await h.call(.put, "/1.0/instances/c1/state", body: "{\"action\": \"start\"}")
        #expect(r.status == 202)
        #expect(r.headers[.location] == "/1.0/operations/0-op-start")
        let body = try r.json()
        #expect(body["type"] as? String == "async")
        #expect(body["status_code"] as? Int == 100)
        #expect(body["operation"] as? String == "/1.0/operations/0-op-start")
        #expect((body["metadata"] as? [String: Any])?["id"] as? String == "0-op-start")
        #expect(h.instances.calls.withLock { $0 } == ["start c1"])
    }

    @Test func createReadsLXDsFieldsAndOurExtensionsFromOneBody() async throws {
        let r = try await h.call(.post, "/1.0/instances", body: "{\"name\": \"web\", \"source\": {\"type\": \"image\", \"alias\": \"busybox\"}, \"count\": 3}")
        #expect(r.status == 202)
        #expect(h.instances.calls.withLock { $0 } == ["create web count=3"])
    }

    @Test func aFilePushPassesModeAndContent() async throws {
        var headers = HTTPFields()
        headers[HTTPField.Name("X-LXD-mode")!] = "600"
        let r = try await h.call(.post, "/1.0/instances/c1/files?path=/etc/x", body: "hello", headers: headers)
        #expect(r.status == 200)
        #expect(try r.json()["type"] as? String == "sync")
        #expect(h.instances.calls.withLock { $0 } == ["push c1 /etc/x mode=600 bytes=5"])
    }

    @Test func theConsoleLogIsRawBytes() async throws {
        let r = try await h.call(.get, "/1.0/instances/c1/logs/console.log")
        #expect(r.status == 200)
        #expect(r.headers[.contentType] == "application/octet-stream")
        #expect(r.body == Array("booted\n".utf8))
        let other = try await h.call(.get, "/1.0/instances/c1/logs/other.log")
        #expect(other.status == 404)
        #expect(try other.error().error == "Log file not found: only console.log exists")
    }
}

@Suite struct UseCaseErrorRouteTests {
    /// Each kind of failure a use case reports, and the status clients see for it.
    static let cases: [(any Error & Sendable, Int)] = [
        (InstancesError.invalid("Invalid config: Unknown configuration key: x"), 400),
        (InstancesError.forbidden("not yours"), 403),
        (InstancesError.notFound("Instance \"c1\" not found"), 404),
        (InstancesError.conflict("Instance \"c1\" already exists"), 409),
        (InstancesError.tooLarge("Fetched image is larger than 10 bytes"), 413),
        (InstancesError.internal("Cannot write fetched image"), 500),
        (InstancesError.unsupported("Not supported"), 501),
        (InstancesError.unavailable("Image is on no other member to fetch from"), 503),
        // A member's answer relayed as it was keeps the member's status.
        (APIError(502, "member m2: bad gateway"), 502),
        (ClusterDBError.notFound("Instance \"c1\" not found"), 404),
        (ClusterDBError.alreadyExists("Instance \"c1\" already exists"), 409),
        (ClusterDBError.invalidArgument("bad value"), 400),
        (ClusterDBError.outcomeUnknown("leadership lost"), 503),
        (ClusterDBError.corrupt("bad row"), 500),
        (CancellationError(), 500),
    ]

    @Test(arguments: 0..<cases.count)
    func aUseCaseErrorBecomesItsStatusInLXDsShape(index: Int) async throws {
        let (error, status) = Self.cases[index]
        var h = RouteHarness()
        h.instances = FakeInstances(failure: error)
        let r = try await h.call(.get, "/1.0/instances/c1")
        #expect(r.status == status)
        #expect(try r.error().error == "\(error)")
    }

    @Test func everyKindHasAStatus() {
        let statuses = ErrorKind.allCases.map(\.httpStatus)
        #expect(Set(statuses).count == ErrorKind.allCases.count)
        #expect(statuses.allSatisfy { (400..<600).contains($0) })
    }

    @Test func anAsyncRouteReportsTheErrorInsteadOfAnOperation() async throws {
        var h = RouteHarness()
        let taken = ClusterDBError.alreadyExists("instance web")
        h.instances = FakeInstances(failure: taken)
        let r = try await h.call(.post, "/1.0/instances", body: "{\"name\": \"web\", \"source\": {\"type\": \"image\", \"alias\": \"busybox\"}}")
        #expect(r.status == 409)
        #expect(r.headers[.location] == nil)
        #expect(try r.error().error == taken.description)
    }
}

@Suite struct ForwardingRouteTests {
    static let marker = HTTPField.Name(Forwarding.markerHeader)!

    @Test func aChangeToAnotherMembersInstanceGoesToItsOwnerMarked() async throws {
        var h = RouteHarness()
        h.instances = FakeInstances(owner: "m2")
        let forwarder = FakeForwarder()
        h.forwarder = forwarder
        let r = try await h.call(.delete, "/1.0/instances/c1")
        #expect(r.status == 200)
        #expect(r.body == Array("{\"type\":\"sync\"}".utf8))
        let sent = forwarder.sent.withLock { $0 }
        #expect(sent.count == 1)
        #expect(sent.first?.1 == .name("m2"))
        #expect(sent.first?.0.target == "/1.0/instances/c1")
        #expect(sent.first?.0.headers.contains { $0.name == Forwarding.markerHeader && $0.value == "m1" } == true)
        #expect(h.instances.calls.withLock { $0 }.isEmpty)
    }

    @Test func aRequestAlreadyForwardedIsNotForwardedAgain() async throws {
        var h = RouteHarness()
        h.instances = FakeInstances(owner: "m2")
        let forwarder = FakeForwarder()
        h.forwarder = forwarder
        var headers = HTTPFields()
        headers[Self.marker] = "m3"
        let r = try await h.call(.delete, "/1.0/instances/c1", headers: headers)
        #expect(r.status == 503)
        #expect(try r.error().error.hasPrefix("The request about instance c1 on member m2 was already forwarded once"))
        #expect(forwarder.sent.withLock { $0 }.isEmpty)
    }

    @Test func aForwarderRefusalKeepsItsKindAndAnUnreachableMemberIs503() async throws {
        var h = RouteHarness()
        h.instances = FakeInstances(owner: "m2")
        h.forwarder = FakeForwarder(failure: InstancesError.notFound("Cluster member m2 not found: see lxdctl cluster list"))
        let refused = try await h.call(.delete, "/1.0/instances/c1")
        #expect(refused.status == 404)
        #expect(try refused.error().error == "Cluster member m2 not found: see lxdctl cluster list")
        h.forwarder = FakeForwarder(failure: CancellationError())
        let unreachable = try await h.call(.delete, "/1.0/instances/c1")
        #expect(unreachable.status == 503)
        #expect(try unreachable.error().error == "Cannot reach the member owning instance c1 on member m2: CancellationError()")
    }

    @Test func anOwnerThatDoesNotAnswerAReadLeavesTheInstanceInStatusError() async throws {
        var h = RouteHarness()
        h.instances = FakeInstances(owner: "m2")
        h.forwarder = FakeForwarder(failure: CancellationError())
        let r = try await h.call(.get, "/1.0/instances/c1")
        #expect(r.status == 200)
        let metadata = try #require(try r.json()["metadata"] as? [String: Any])
        #expect(metadata["status"] as? String == "Error")
        #expect(metadata["location"] as? String == "none")
    }
}

@Suite struct HandlerRefusalRouteTests {
    let h = RouteHarness()

    @Test func anOperationWebSocketNeedsItsSecret() async throws {
        let r = try await h.call(.get, "/1.0/operations/abc/websocket")
        #expect(r.status == 403)
        #expect(try r.error().error == "Missing secret: connect with ?secret= from the operation's metadata")
    }

    @Test func trustPasswordsAreRefused() async throws {
        let r = try await h.call(.post, "/1.0/certificates", body: "{\"password\": \"secret\"}")
        #expect(r.status == 400)
        #expect(try r.error().error == "Trust passwords are not supported: use a trust token")
    }

    /// The member named in the path reaches the use case, and its not-found refusal is a 404.
    @Test func anUnknownClusterMemberIs404() async throws {
        let r = try await h.call(.get, "/1.0/cluster/members/nowhere")
        #expect(r.status == 404)
        #expect(try r.error().error == "Cluster member \"nowhere\" not found: see lxdctl cluster list")
    }
}
