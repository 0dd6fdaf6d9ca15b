import APITypes
import Foundation
import Synchronization
import Testing
@testable import LXDClient

/// The built `lxdctl` binary against the fake server: exact output formats, exit codes and
/// the requests each command sends (scripts depend on all three).
enum CLI {
    static let path: String = {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("lxdctl").path
    }()

    /// The suites' `.enabled(if:)` trait reports the skip with its reason.
    static var available: Bool { FileManager.default.isExecutableFile(atPath: path) }

    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs lxdctl without blocking a cooperative thread (the fake server needs them).
    /// posix_spawn with close-on-exec pipes, so parallel tests' children never hold each
    /// other's pipe ends open.
    static func run(_ args: [String], socket: String?, stdin: String = "") async throws -> Result {
        // `--socket` must come before `--` (after it, exec takes everything as the command).
        var args = args
        if let socket { args.insert(contentsOf: ["--socket", socket], at: args.firstIndex(of: "--") ?? args.endIndex) }
        let argv = [path] + args
        // Blocking work runs on dedicated threads: on Linux the cooperative pool and GCD's
        // global queues share worker threads, and blocking those starved the fake server
        // (each CLI run then took a second or more).
        return try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(with: Swift.Result { try spawnAndWait(argv, stdin: Array(stdin.utf8)) })
            }
        }
    }

    private static let spawnLock = NSLock()

    struct SpawnError: Error, CustomStringConvertible { var description: String }

    private static func spawnAndWait(_ argv: [String], stdin: [UInt8]) throws -> Result {
        // Pipes are made close-on-exec under a lock shared with every spawn here, so no other
        // child can inherit them between pipe() and fcntl().
        spawnLock.lock()
        var fds: [[Int32]] = []
        for _ in 0..<3 {
            var p: [Int32] = [0, 0]
            guard pipe(&p) == 0 else { spawnLock.unlock(); throw SpawnError(description: "pipe failed: errno \(errno)") }
            _ = fcntl(p[0], F_SETFD, FD_CLOEXEC)
            _ = fcntl(p[1], F_SETFD, FD_CLOEXEC)
            fds.append(p)
        }
        let inPipe = fds[0], outPipe = fds[1], errPipe = fds[2]
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, inPipe[0], 0)
        posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)
        var cArgs = argv.map { strdup($0) } + [nil]
        defer { for a in cArgs { free(a) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, argv[0], &actions, nil, &cArgs, environ)
        spawnLock.unlock()
        close(inPipe[0]); close(outPipe[1]); close(errPipe[1])
        guard rc == 0 else {
            close(inPipe[1]); close(outPipe[0]); close(errPipe[0])
            throw SpawnError(description: "posix_spawn \(argv[0]) failed: \(rc)")
        }
        let writer = DispatchGroup()
        writer.enter()
        Thread.detachNewThread {
            defer { writer.leave() }
            var offset = 0
            while offset < stdin.count {
                let n = stdin[offset...].withUnsafeBytes { write(inPipe[1], $0.baseAddress, $0.count) }
                if n <= 0 { break }
                offset += n
            }
            close(inPipe[1])
        }
        let errBytes = Mutex<[UInt8]>([])
        writer.enter()
        Thread.detachNewThread {
            defer { writer.leave() }
            let bytes = readAll(errPipe[0])
            errBytes.withLock { $0 = bytes }
        }
        let outBytes = readAll(outPipe[0])
        writer.wait()
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let exitCode = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return Result(status: exitCode, stdout: String(decoding: outBytes, as: UTF8.self),
                      stderr: String(decoding: errBytes.withLock { $0 }, as: UTF8.self))
    }

    /// Spawns `argv` with `stdio` as fds 0, 1 and 2 (e.g. a pty slave).
    static func spawn(_ argv: [String], stdio: Int32) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for fd in Int32(0)...2 { posix_spawn_file_actions_adddup2(&actions, stdio, fd) }
        var cArgs = argv.map { strdup($0) } + [nil]
        defer { for a in cArgs { free(a) } }
        var pid: pid_t = 0
        spawnLock.lock()
        let rc = posix_spawn(&pid, argv[0], &actions, nil, &cArgs, environ)
        spawnLock.unlock()
        guard rc == 0 else { throw SpawnError(description: "posix_spawn \(argv[0]) failed: \(rc)") }
        return pid
    }

    /// Exit status of `pid` (128+N when killed by signal N), waited for on its own thread.
    static func wait(_ pid: pid_t) async -> Int32 {
        await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                var status: Int32 = 0
                while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
                continuation.resume(returning: (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f))
            }
        }
    }

    private static func readAll(_ fd: Int32) -> [UInt8] {
        defer { close(fd) }
        var all: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n > 0 { all += buffer[..<n] } else if n < 0 && errno == EINTR { continue } else { break }
        }
        return all
    }
}

@Suite(.enabled(if: CLI.available, "lxdctl is not built next to the test bundle (swift build --build-tests builds it)"), .timeLimit(.minutes(1)))
struct CLITests {
    static func instance(_ name: String, _ status: StatusCode, pid: Int64, memory: Int64, config: [String: String] = [:]) -> Instance {
        let state = InstanceState(status: status, pid: pid, processes: 1, memory: .init(usage: memory, usagePeak: memory, total: 0), cpu: .init(usage: 0))
        return Instance(name: name, status: status, architecture: "x86_64", config: config, location: "m1",
                        createdAt: "2026-11-27T11:00:00Z", lastUsedAt: "2026-11-27T11:00:00Z", state: state)
    }

    @Test func listFormats() async throws {
        let server = try await TestServer.start(routes: { request in
            guard request.path == "/1.0/instances", request.query["recursion"] == "2" else { return LiveSocketTests.error(404, "not found") }
            return LiveSocketTests.sync([Self.instance("web", .running, pid: 4242, memory: 1_289_748), Self.instance("db", .stopped, pid: 0, memory: 0)])
        })
        defer { server.stop() }
        let csv = try await CLI.run(["list", "--format", "csv"], socket: server.path)
        #expect(csv.status == 0)
        #expect(csv.stdout == "db,STOPPED,,,m1\nweb,RUNNING,4242,1.23MiB,m1\n")
        let table = try await CLI.run(["list"], socket: server.path)
        #expect(table.stdout.hasPrefix("""
            +------+---------+------+---------+----------+
            | NAME |  STATE  | PID  | MEMORY  | LOCATION |
            +------+---------+------+---------+----------+
            | db   | STOPPED |      |         | m1       |
            """), "\(table.stdout)")
        let leading = try await CLI.run(["--socket", server.path, "list", "--format", "csv"], socket: nil)
        #expect(leading.status == 0 && leading.stdout == csv.stdout, "--socket before the command: \(leading.stderr)")
        let leadingEq = try await CLI.run(["--socket=\(server.path)", "list", "--format", "csv"], socket: nil)
        #expect(leadingEq.stdout == csv.stdout)
        let json = try await CLI.run(["list", "--format", "json"], socket: server.path)
        let decoded = try JSONDecoder().decode([Instance].self, from: Data(json.stdout.utf8))
        #expect(decoded.map(\.name) == ["web", "db"])
    }

    /// Every lxdctl run pays for what it loads: full Foundation brings ICU (~10 ms per start on
    /// this machine), which the benchmarked commands cannot afford. FoundationEssentials is fine.
    @Test func lxdctlDoesNotLinkFullFoundation() throws {
        let binary = try #require(FileManager.default.contents(atPath: CLI.path))
        #expect(binary.range(of: Data("libFoundationEssentials.so".utf8)) != nil, "expected FoundationEssentials to be linked")
        #expect(binary.range(of: Data("libFoundation.so\0".utf8)) == nil, "lxdctl links libFoundation.so; import FoundationEssentials instead")
    }

    @Test func errorsPrintMessageAndExitOne() async throws {
        let server = try await TestServer.start(routes: { _ in LiveSocketTests.error(404, "Instance not found") })
        defer { server.stop() }
        let r = try await CLI.run(["info", "nope"], socket: server.path)
        #expect(r.status == 1)
        #expect(r.stderr == "Error: Instance not found\n")
        #expect(r.stdout.isEmpty)
        let down = try await CLI.run(["list"], socket: "/tmp/lxdclient-test-nothing-here.sock")
        #expect(down.status == 1)
        #expect(down.stderr.hasPrefix("Error: cannot connect to /tmp/lxdclient-test-nothing-here.sock"))
    }

    @Test func execExitCodeAndStreams() async throws {
        let sim = ExecSimulation()
        let server = try await TestServer.exec(operation: "exec1", fds: ["0": "s0", "1": "s1", "2": "s2", "control": "sc"], waitForExit: sim.waitForExit, webSockets: sim.route)
        defer { server.stop() }
        let r = try await CLI.run(["exec", "c1", "-T", "--env", "A=1", "--cwd", "/tmp", "--", "cat", "-n"], socket: server.path, stdin: "hello world")
        #expect(r.status == 3)
        #expect(r.stdout == "out:hello world")
        #expect(r.stderr == "err!")
        let post = try #require(server.requests.first { $0.path == "/1.0/instances/c1/exec" })
        let body = try JSONDecoder().decode(InstanceExecPost.self, from: Data(post.body))
        #expect(body.command == ["cat", "-n"])
        #expect(body.environment == ["A": "1"])
        #expect(body.cwd == "/tmp")
        #expect(body.interactive == false)
    }

    @Test func launchConfigAndDeleteSendTheRightRequests() async throws {
        let running = Mutex(true)
        let server = try await TestServer.start(routes: { request in
            switch (request.method, request.path) {
            case ("POST", "/1.0/instances"), ("DELETE", "/1.0/instances/c1"):
                return LiveSocketTests.async(LiveSocketTests.op("o1", .running))
            case ("PUT", "/1.0/instances/c1/state"):
                running.withLock { $0 = false }
                return LiveSocketTests.async(LiveSocketTests.op("o1", .running))
            case ("GET", "/1.0/operations/o1/wait"):
                return LiveSocketTests.sync(LiveSocketTests.op("o1", .success))
            case ("GET", "/1.0/instances/c1"):
                let status: StatusCode = running.withLock { $0 } ? .running : .stopped
                return LiveSocketTests.sync(Self.instance("c1", status, pid: 0, memory: 0, config: ["a": "1", "b": "2"]))
            case ("PATCH", "/1.0/instances/c1"), ("PUT", "/1.0/instances/c1"):
                return LiveSocketTests.sync([String: String]())
            default:
                return LiveSocketTests.error(404, "not found \(request.method) \(request.path)")
            }
        })
        defer { server.stop() }
        func body(_ method: String, _ path: String) throws -> [String: JSONValue] {
            let r = try #require(server.requests.last { $0.method == method && $0.path == path })
            return try JSONDecoder().decode([String: JSONValue].self, from: Data(r.body))
        }

        #expect(try await CLI.run(["launch", "busybox", "c1", "-c", "limits.memory=64MiB", "-c", "user.x=a=b"], socket: server.path).status == 0)
        let launch = try body("POST", "/1.0/instances")
        #expect(launch["start"] == .bool(true))
        #expect(launch["config"] == .object(["limits.memory": .string("64MiB"), "user.x": .string("a=b")]))

        #expect(try await CLI.run(["config", "set", "c1", "limits.cpu=2"], socket: server.path).status == 0)
        #expect(try body("PATCH", "/1.0/instances/c1")["config"] == .object(["limits.cpu": .string("2")]))

        #expect(try await CLI.run(["config", "unset", "c1", "a"], socket: server.path).status == 0)
        #expect(try body("PUT", "/1.0/instances/c1")["config"] == .object(["b": .string("2")]))

        let get = try await CLI.run(["config", "get", "c1", "b"], socket: server.path)
        #expect(get.stdout == "2\n")

        let bad = try await CLI.run(["config", "set", "c1", "novalue"], socket: server.path)
        #expect(bad.status == 1 && bad.stderr == "Error: 'novalue' is not key=value\n")

        #expect(try await CLI.run(["stop", "c1", "--stateful", "--timeout", "5"], socket: server.path).status == 0)
        let stateful = try body("PUT", "/1.0/instances/c1/state")
        #expect(stateful["action"] == .string("stop") && stateful["stateful"] == .bool(true) && stateful["timeout"] == .int(5))
        running.withLock { $0 = true }

        let beforeDelete = server.requests.count
        #expect(try await CLI.run(["delete", "c1", "--force"], socket: server.path).status == 0)
        let stop = try body("PUT", "/1.0/instances/c1/state")
        #expect(stop["action"] == .string("stop") && stop["force"] == .bool(true))
        let order = server.requests.dropFirst(beforeDelete).map { "\($0.method) \($0.path)" }.filter { $0.hasPrefix("PUT /1.0/instances/c1/state") || $0.hasPrefix("DELETE") }
        #expect(order == ["PUT /1.0/instances/c1/state", "DELETE /1.0/instances/c1"])
    }

    /// `move --target` and `rename` send what lxc 5.0.2 sends; while the move runs its progress
    /// is printed once per change (stdout is a pipe here), then the final figures.
    @Test func moveAndRenameSendLXDsShapeAndShowProgress() async throws {
        let waits = Mutex(0)
        let status = Mutex(StatusCode.running)
        let server = try await TestServer.start(routes: { request in
            switch (request.method, request.path) {
            case ("GET", "/1.0/instances/c1"):
                return LiveSocketTests.sync(Self.instance("c1", status.withLock { $0 }, pid: 0, memory: 0))
            case ("POST", "/1.0/instances/c1"), ("POST", "/1.0/instances"):
                waits.withLock { $0 = 0 }
                return LiveSocketTests.async(LiveSocketTests.op("mv", .running))
            case ("GET", "/1.0/operations/mv/wait"):
                let n = waits.withLock { $0 += 1; return $0 }
                let transfer: [String: JSONValue] = ["phase": .string("transfer"), "bytes_sent": .int(3 * 1_048_576), "rate_bytes_per_second": .int(1_572_864)]
                switch n {
                case 1, 2: return LiveSocketTests.sync(LiveSocketTests.op("mv", .running, metadata: transfer))
                case 3: return LiveSocketTests.sync(LiveSocketTests.op("mv", .running, metadata: ["phase": .string("restore")]))
                default: return LiveSocketTests.sync(LiveSocketTests.op("mv", .success, metadata: ["downtime_ms": .double(120.4), "total_ms": .int(480)]))
                }
            default:
                return LiveSocketTests.error(404, "not found \(request.method) \(request.path)")
            }
        })
        defer { server.stop() }
        func lastPost() throws -> (query: [String: String], body: [String: JSONValue]) {
            let r = try #require(server.requests.last { $0.method == "POST" })
            return (r.query, try JSONDecoder().decode([String: JSONValue].self, from: Data(r.body)))
        }

        let moved = try await CLI.run(["move", "c1", "--target", "m2"], socket: server.path)
        #expect(moved.status == 0, "\(moved.stderr)")
        #expect(moved.stdout == "transfer: 3.00MiB sent, 1.50MiB/s\nrestore\nMoved c1 from m1 to m2: downtime 120 ms, total 480 ms\n")
        var post = try lastPost()
        #expect(post.query == ["target": "m2"])
        #expect(post.body == ["name": .string("c1"), "migration": .bool(true), "live": .bool(true)])
        // The timeouts of the waits are one second: progress comes about once a second.
        #expect(server.requests.filter { $0.path == "/1.0/operations/mv/wait" }.allSatisfy { $0.query["timeout"] == "1" })

        #expect(try await CLI.run(["move", "c1", "--target", "m2", "--stateless"], socket: server.path).status == 0)
        #expect(try lastPost().body["live"] == .bool(false))
        status.withLock { $0 = .stopped }
        #expect(try await CLI.run(["move", "c1", "--target", "m2"], socket: server.path).status == 0)
        #expect(try lastPost().body["live"] == .bool(false), "a stopped instance is copied, not moved live")

        let renamed = try await CLI.run(["rename", "c1", "c2"], socket: server.path)
        #expect(renamed.status == 0 && renamed.stdout.isEmpty, "\(renamed.stderr)")
        post = try lastPost()
        #expect(post.query.isEmpty)
        #expect(post.body == ["name": .string("c2"), "migration": .bool(false)])
        #expect(try await CLI.run(["move", "c1", "c3"], socket: server.path).status == 0)
        #expect(try lastPost().body["name"] == .string("c3"))

        // copy: LXD's local-copy source, as lxc copy sends it within a cluster.
        status.withLock { $0 = .running }
        let copied = try await CLI.run(["copy", "c1", "c9", "--target", "m3"], socket: server.path)
        #expect(copied.status == 0, "\(copied.stderr)")
        #expect(copied.stdout.hasSuffix("Copied c1 to c9 on m3: downtime 120 ms, total 480 ms\n"), "\(copied.stdout)")
        post = try lastPost()
        #expect(post.query == ["target": "m3"])
        #expect(post.body["name"] == .string("c9"))
        #expect(post.body["source"] == .object(["type": .string("copy"), "source": .string("c1"), "live": .bool(true)]))
        #expect(try await CLI.run(["copy", "c1", "c8", "--stateless"], socket: server.path).status == 0)
        #expect(try lastPost().query.isEmpty)
        #expect(try lastPost().body["source"]?["live"] == .bool(false))

        let noTarget = try await CLI.run(["move", "c1"], socket: server.path)
        #expect(noTarget.status == 1 && noTarget.stderr == "Error: name the member to move c1 to: lxdctl move c1 --target MEMBER\n")
    }

    @Test func filePullToStdoutAndPushHeaders() async throws {
        let server = try await TestServer.start(routes: { request in
            switch (request.method, request.path) {
            case ("GET", "/1.0/instances/f1/files"):
                return TestReply(status: 200, headers: [("X-LXD-type", "file"), ("X-LXD-mode", "0644"), ("X-LXD-uid", "0"), ("X-LXD-gid", "0")], body: Array("pushed content\n".utf8))
            case ("POST", "/1.0/instances/f1/files"):
                return LiveSocketTests.sync([String: String]())
            default:
                return LiveSocketTests.error(404, "not found")
            }
        })
        defer { server.stop() }
        let pull = try await CLI.run(["file", "pull", "f1/root/pushed.txt", "-"], socket: server.path)
        #expect(pull.status == 0 && pull.stdout == "pushed content\n")
        #expect(server.requests.last?.query["path"] == "/root/pushed.txt")

        let src = NSTemporaryDirectory() + "lxdclient-push-\(UUID().uuidString.prefix(6))"
        try Data("abc".utf8).write(to: URL(fileURLWithPath: src))
        defer { try? FileManager.default.removeItem(atPath: src) }
        #expect(try await CLI.run(["file", "push", src, "f1/etc/x", "--mode", "0600", "--uid", "5", "--gid", "6"], socket: server.path).status == 0)
        let push = try #require(server.requests.last)
        #expect(push.body == Array("abc".utf8))
        #expect(push.header("X-LXD-mode") == "0600" && push.header("X-LXD-uid") == "5" && push.header("X-LXD-gid") == "6")
    }
}
