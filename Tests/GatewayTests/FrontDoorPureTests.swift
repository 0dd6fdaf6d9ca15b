import APITypes
@testable import Gateway
import Testing

/// The pure halves of the front door: path normalisation and endpoint matching.
@Suite struct RequestPathTests {
    @Test(arguments: [
        ("/internal/cluster/heartbeat", "/internal/cluster/heartbeat"),
        ("/internal/cluster/heartbeat/", "/internal/cluster/heartbeat"),
        ("//internal/cluster/heartbeat", "/internal/cluster/heartbeat"),
        ("/internal//cluster///heartbeat//", "/internal/cluster/heartbeat"),
        ("/internal/cluster/%68eartbeat", "/internal/cluster/heartbeat"),
        ("/1.0/instances/c%31", "/1.0/instances/c1"),
        ("/", "/"),
        ("", "/"),
    ])
    func everySpellingHasOneCanonicalPath(raw: String, canonical: String) throws {
        #expect(RequestPath.path(try RequestPath.segments(of: raw)) == canonical)
    }

    @Test(arguments: [
        "/1.0/instances/..", "/1.0/instances/./c1", "/1.0/%2e%2e/instances", "/1.0/instances/a%2Fb",
        "/1.0/instances/a%00b", "/1.0/instances/a%20b", "/1.0/instances/%", "/1.0/instances/%zz",
        "/1.0/instances/%2541", "/1.0/instances/caf%C3%A9", "/1.0/instances/a%3Fb",
    ])
    func pathsThatCouldMeanSomethingElseAreRefused(raw: String) {
        #expect(throws: APIError.self) { try RequestPath.segments(of: raw) }
        do {
            _ = try RequestPath.segments(of: raw)
        } catch {
            #expect(error.status == 400)
        }
    }
}

@Suite struct EndpointTableTests {
    func match(_ method: String, _ path: String) throws -> EndpointMatch {
        Endpoints.match(method: method, segments: try RequestPath.segments(of: path))
    }

    @Test func literalSegmentsWinOverParameters() throws {
        #expect(try match("GET", "/1.0/images/aliases") == .found(.init("GET", "/1.0/images/aliases", .client)))
        #expect(try match("GET", "/1.0/images/aliases/export") == .found(.init("GET", "/1.0/images/aliases/{alias}", .client)))
        #expect(try match("GET", "/1.0/images/abc/export") == .found(.init("GET", "/1.0/images/{fingerprint}/export", .member)))
    }

    @Test func unknownPathsAndMethodsAreTold() throws {
        #expect(try match("GET", "/1.0/nothing") == .notFound)
        #expect(try match("GET", "/internal/cluster/heartbeat") == .methodNotAllowed(allowed: ["POST"]))
        #expect(try match("DELETE", "/1.0/instances") == .methodNotAllowed(allowed: ["GET", "POST"]))
    }

    static let token = "0123456789abcdef0123456789abcdef"

    @Test func membersOnlyRoutesResolveToMemberAccessUnderEverySpelling() throws {
        let spellings: [String: [String]] = [
            "/internal/cluster/heartbeat": ["/internal/cluster/heartbeat/", "//internal/cluster/heartbeat", "/internal//cluster/heartbeat", "/internal/cluster/%68eartbeat"],
            "/internal/database": ["/internal/database/", "//internal/database", "/%69nternal/database"],
            "/internal/instances/materialise": ["/internal/instances/materialise/", "/internal/instances//materialise"],
            "/1.0/images/{fingerprint}/export": ["/1.0/images/abc/export/", "/1.0//images/abc/export"],
            "/internal/moves": ["/internal/moves/", "//internal/moves", "/internal/%6doves"],
            "/internal/moves/{token}/{stream}": ["/internal/moves/\(Self.token)/rootfs/", "/internal//moves/\(Self.token)/state"],
            "/internal/moves/{token}/pages": ["/internal/moves/\(Self.token)/pages/", "/internal/moves//\(Self.token)/pages"],
            "/internal/moves/{token}/handover": ["/internal/moves/\(Self.token)/handover/", "/internal/moves//\(Self.token)/handover"],
            "/internal/moves/{token}": ["/internal/moves/\(Self.token)/", "//internal/moves/\(Self.token)"],
        ]
        for endpoint in Endpoints.all where endpoint.access == .member {
            let variants = try #require(spellings[endpoint.path], "no spellings listed for \(endpoint)")
            for path in variants {
                #expect(try match(endpoint.method, path) == .found(endpoint), "\(path)")
            }
        }
    }

    @Test func theTableHasNoDuplicatesAndOnlyCanonicalPatterns() {
        #expect(Set(Endpoints.all).count == Endpoints.all.count)
        #expect(Set(Endpoints.all.map { "\($0.method) \($0.path)" }).count == Endpoints.all.count)
        for endpoint in Endpoints.all {
            #expect(endpoint.path.hasPrefix("/") && !endpoint.path.contains("//"))
            #expect(!endpoint.path.hasSuffix("/") || endpoint.path == "/")
        }
    }

    @Test func untrustedCallersReachOnlyWhatTheyNeed() {
        let open = Set(Endpoints.all.filter { $0.access == .anyone }.map(\.description))
        #expect(open == ["GET /", "GET /1.0", "POST /1.0/certificates", "POST /internal/cluster/accept"])
    }
}
