import Foundation
import Testing

/// Every bad input gets a 4xx in LXD's error shape and changes nothing.
@Suite(.serialized, .enabled(if: Prerequisites.available, "needs root, busybox and the built binaries"))
final class BadInputTests {
    let agent: TestAgent

    init() throws {
        agent = try TestAgent(name: "bad")
        try agent.importBusybox()
    }

    deinit { agent.destroy() }

    /// Raw API call over the unix socket; returns (HTTP status, body).
    func api(_ method: String, _ path: String, body: String? = nil, file: String? = nil) throws -> (Int, String) {
        var args = ["-s", "--unix-socket", agent.socket, "-X", method, "-w", "\n%{http_code}", "http://lxd\(path)"]
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
        var (s, b) = try api("POST", "/1.0/images", file: "\(work)/nometa.tar")
        #expect(s == 202 || s == 400, "\(s) \(b)")
        if s == 202 { #expect(try waitOperation(b).contains("metadata.yaml")) }
        // A path escaping rootfs/.
        try "architecture: x86_64\n".write(toFile: "\(work)/metadata.yaml", atomically: true, encoding: .utf8)
        try run("/bin/tar", ["-C", work, "-cf", "\(work)/escape.tar", "metadata.yaml", "rootfs", "--transform", "s,^rootfs/bin/x,rootfs/../../escaped,", "--absolute-names"])
        (s, b) = try api("POST", "/1.0/images", file: "\(work)/escape.tar")
        if s == 202 { #expect(try !waitOperation(b).isEmpty) } else { #expect(s == 400) }
        // Not a tarball at all.
        try "garbage".write(toFile: "\(work)/garbage.tar", atomically: true, encoding: .utf8)
        (s, b) = try api("POST", "/1.0/images", file: "\(work)/garbage.tar")
        if s == 202 { #expect(try !waitOperation(b).isEmpty) } else { #expect(s == 400) }
        #expect(try snapshot() == before)
        let leftovers = (try? FileManager.default.contentsOfDirectory(atPath: "\(agent.dataDir)/images")) ?? []
        #expect(leftovers.allSatisfy { !$0.hasPrefix(".") && !$0.contains("tmp") }, "no temporary layer left: \(leftovers)")
    }

    /// Waits on an async response's operation; returns its error text ("" on success).
    func waitOperation(_ body: String) throws -> String {
        guard let range = body.range(of: #""operation":"/1.0/operations/"#) else { return "no operation in \(body)" }
        let id = body[range.upperBound...].prefix { $0 != "\"" }
        let (_, final) = try api("GET", "/1.0/operations/\(id)/wait?timeout=30")
        guard let data = final.data(using: .utf8), let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any],
              let md = obj["metadata"] as? [String: Any] else { return "bad wait reply \(final)" }
        return md["err"] as? String ?? ""
    }
}
