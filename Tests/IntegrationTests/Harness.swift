import Foundation
import Testing

/// Where the built executables and the repository live.
enum Paths {
    static let buildDir: String = {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: exe).deletingLastPathComponent().path
    }()
    static let repo: String = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    static var lxdd: String { "\(buildDir)/lxdd" }
    static var lxdctl: String { "\(buildDir)/lxdctl" }
}

/// Why the real-container tests cannot run here, or nil when they can.
enum Prerequisites {
    static let missing: String? = {
        if getuid() != 0 { return "integration tests need root (containers, cgroups, mounts)" }
        for tool in [Paths.lxdd, Paths.lxdctl, "\(Paths.buildDir)/lxd-start", "\(Paths.buildDir)/lxd-keygen"] where !FileManager.default.isExecutableFile(atPath: tool) {
            return "\(tool) is not built: run swift build first"
        }
        if !FileManager.default.isExecutableFile(atPath: "/bin/busybox") { return "busybox-static is not installed: run scripts/bootstrap" }
        return nil
    }()

    /// The condition of the suites' `.enabled(if:)` trait: the test runner reports them as
    /// skipped, with the trait's reason, when it is false (`missing` says what exactly).
    static var available: Bool { missing == nil }

    /// `make test` installs CRIU and sets LXD_SWIFT_REQUIRE_CRIU=1: then the CRIU suites run
    /// (and fail on a missing CRIU) instead of being skipped.
    static let criuRequired = ProcessInfo.processInfo.environment["LXD_SWIFT_REQUIRE_CRIU"] == "1"

    /// The condition for suites that checkpoint through /usr/local/sbin/criu.
    static var criuAvailable: Bool { available && (criuRequired || access("/usr/local/sbin/criu", X_OK) == 0) }
}

struct CommandResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs a program to completion with optional stdin.
@discardableResult
func run(_ path: String, _ args: [String], environment: [String: String] = [:], stdin: String? = nil) throws -> CommandResult {
    try run(path, args, environment: environment, stdin: stdin, killAfter: nil).result
}

/// Runs a program like `run`, but kills it after `timeout` seconds: for a step that could hang
/// the test (a TLS client left waiting, a file push into a FIFO). `timedOut` says it was killed.
func run(_ path: String, _ args: [String], environment: [String: String] = [:], timeout: TimeInterval) throws -> (result: CommandResult, timedOut: Bool) {
    try run(path, args, environment: environment, stdin: nil, killAfter: timeout)
}

private func run(_ path: String, _ args: [String], environment: [String: String], stdin: String?, killAfter timeout: TimeInterval?) throws -> (result: CommandResult, timedOut: Bool) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = args
    var env = ProcessInfo.processInfo.environment
    for (k, v) in environment { env[k] = v }
    p.environment = env
    let out = Pipe(), err = Pipe(), input = Pipe()
    p.standardOutput = out
    p.standardError = err
    p.standardInput = stdin == nil ? FileHandle.nullDevice : input
    try p.run()
    let timer = DispatchWorkItem { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
    if let timeout { DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: timer) }
    if let stdin {
        input.fileHandleForWriting.write(Data(stdin.utf8))
        try input.fileHandleForWriting.close()
    }
    // Drain both pipes concurrently so a large output cannot block the child.
    nonisolated(unsafe) var errData = Data()
    let group = DispatchGroup()
    group.enter()
    DispatchQueue.global().async {
        errData = err.fileHandleForReading.readDataToEndOfFile()
        group.leave()
    }
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    p.waitUntilExit()
    timer.cancel()
    let killed = timeout != nil && p.terminationReason == .uncaughtSignal && p.terminationStatus == SIGKILL
    return (CommandResult(status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self), stderr: String(decoding: errData, as: UTF8.self)), killed)
}

/// One real agent with its own data directory.
final class TestAgent: @unchecked Sendable {
    // @unchecked: `process` is only touched from the test that owns this agent.
    let dataDir: String
    let name: String
    private(set) var process: Process?
    /// host:port of the HTTPS API, when enabled.
    let httpsAddress: String?

    /// More lxdd arguments, on every start (e.g. `--preseed FILE`).
    let extraArguments: [String]

    /// More environment for lxdd, on every start (e.g. `LXD_CRIU` for a CRIU that fails on purpose).
    let agentEnvironment: [String: String]

    init(name: String = "m1", httpsAddress: String? = nil, extraArguments: [String] = [], dataDir: String? = nil,
         environment: [String: String] = [:]) throws {
        self.name = name
        self.httpsAddress = httpsAddress
        self.extraArguments = extraArguments
        self.agentEnvironment = environment
        self.dataDir = dataDir ?? "/tmp/lxd-swift-it-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: self.dataDir, withIntermediateDirectories: true)
        try start()
    }

    /// Every test agent's uid/gid range, whatever the host's /etc/subuid says (Debian's lxd
    /// package writes root:100000:10000001 there, room for only 152 isolated instances). The
    /// same for all agents: ids are allocated cluster-wide, so members of one cluster must agree.
    /// 1e9 + 1e9 ids end below uid_t's 4294967294 and above what hosts hand out by default.
    static let idmapRange = "1000000000:1000000000"

    var socket: String { "\(dataDir)/unix.socket" }
    var env: [String: String] { ["LXD_DIR": dataDir] }

    func start() throws {
        try launch()
        try waitUntilUp()
    }

    /// Starts lxdd without waiting for it (members of a cluster restarting together answer only
    /// once a quorum of them runs).
    func launch() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Paths.lxdd)
        p.arguments = ["--data-dir", dataDir, "--name", name] + (httpsAddress.map { ["--https-address", $0] } ?? [])
            + ["--idmap-range", Self.idmapRange] + extraArguments
        if !agentEnvironment.isEmpty {
            var env = ProcessInfo.processInfo.environment
            for (k, v) in agentEnvironment { env[k] = v }
            p.environment = env
        }
        let log = FileHandle(forWritingAtPath: "\(dataDir)/lxdd.log") ?? {
            FileManager.default.createFile(atPath: "\(dataDir)/lxdd.log", contents: nil)
            return FileHandle(forWritingAtPath: "\(dataDir)/lxdd.log")!
        }()
        log.seekToEndOfFile()
        p.standardOutput = log
        p.standardError = log
        p.standardInput = FileHandle.nullDevice
        try p.run()
        process = p
    }

    func waitUntilUp() throws {
        guard let p = process else { throw HarnessError("lxdd was not launched") }
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            if let r = try? ctl(["list", "--format", "csv"]), r.status == 0, httpsAddress.map(Self.listening) ?? true { return }
            if !p.isRunning { break }
            usleep(50_000)
        }
        throw HarnessError("lxdd did not come up; log:\n\(logTail())")
    }

    /// True once something accepts TCP connections at `address` (loopback host:port).
    static func listening(_ address: String) -> Bool {
        guard let fd = connectTCP(address) else { return false }
        close(fd)
        return true
    }

    /// A TCP connection to `address` (loopback host:port), or nil when nothing accepts it.
    static func connectTCP(_ address: String) -> Int32? {
        let parts = address.split(separator: ":")
        guard parts.count == 2, let port = UInt16(parts[1]) else { return nil }
        let fd = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        inet_pton(AF_INET, String(parts[0]), &addr.sin_addr)
        let connected = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard connected else { close(fd); return nil }
        return fd
    }

    /// A loopback TCP port nobody listens on right now.
    static func freePort() -> Int {
        let fd = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr)
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    func logTail(_ characters: Int = 3000) -> String {
        let text = (try? String(contentsOfFile: "\(dataDir)/lxdd.log", encoding: .utf8)) ?? ""
        return String(text.suffix(characters))
    }

    /// SIGKILL, as a crash would.
    func kill9() {
        guard let p = process else { return }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        process = nil
    }

    func stop() {
        guard let p = process else { return }
        p.terminate()
        p.waitUntilExit()
        process = nil
    }

    @discardableResult
    func ctl(_ args: [String], stdin: String? = nil) throws -> CommandResult {
        try run(Paths.lxdctl, args, environment: env, stdin: stdin)
    }

    /// Runs lxdctl and requires success.
    @discardableResult
    func ok(_ args: [String], stdin: String? = nil, sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        let r = try ctl(args, stdin: stdin)
        #expect(r.status == 0, "lxdctl \(args.joined(separator: " ")) failed: \(r.stderr)", sourceLocation: sourceLocation)
        return r.stdout
    }

    /// Deletes every instance, stops the agent and removes its data.
    func destroy() {
        if let r = try? ctl(["list", "--format", "csv"]) {
            for line in r.stdout.split(separator: "\n") {
                if let name = line.split(separator: ",").first {
                    _ = try? ctl(["delete", "--force", String(name)])
                }
            }
        }
        stop()
        // Containers outlive their agent by design: kill what is left of this agent's containers
        // (processes whose root is under its data directory: another agent may use the same member
        // and instance names) and detach its mounts, so no later test sees them (CRIU, for one,
        // dumps a whole mount namespace).
        let instances = (try? FileManager.default.contentsOfDirectory(atPath: "\(dataDir)/containers")) ?? []
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(entry), let root = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(entry)/root"),
                  root.hasPrefix(dataDir + "/") else { continue }
            kill(pid, SIGKILL)
        }
        let mounts = ((try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? "")
            .split(separator: "\n").compactMap { $0.split(separator: " ").dropFirst(4).first.map(String.init) }
            .filter { $0.hasPrefix(dataDir + "/") }
        for mount in mounts.sorted(by: { $0.count > $1.count }) { _ = try? run("/bin/umount", ["-l", mount]) }
        let controllers = ((try? FileManager.default.contentsOfDirectory(atPath: "/sys/fs/cgroup")) ?? []).map { "/sys/fs/cgroup/\($0)/lxd-swift/\(name)" }
            + ["/sys/fs/cgroup/lxd-swift/\(name)"]
        for base in controllers {
            for instance in instances where FileManager.default.fileExists(atPath: "\(base)/\(instance)") {
                // The killed tasks take a moment to leave the group.
                var tries = 0
                while rmdir("\(base)/\(instance)") != 0, errno == EBUSY, tries < 50 {
                    tries += 1
                    usleep(20_000)
                }
            }
            // The member's own group too, once empty (another agent with this name keeps it).
            _ = rmdir(base)
        }
        try? FileManager.default.removeItem(atPath: dataDir)
    }

    /// Waits until `cluster list` on this member shows every one of `names` as an online voter.
    /// A test that kills a member needs this first: right after a join the leader may still be
    /// promoting the newcomer (slowly on a loaded machine), and killing one of only two voters
    /// leaves no quorum at all.
    func waitForVoters(_ names: [String], timeout: Double = 60, sourceLocation: SourceLocation = #_sourceLocation) {
        let deadline = Date().addingTimeInterval(timeout)
        var last = ""
        while Date() < deadline {
            last = (try? ctl(["cluster", "list", "--format", "csv"]).stdout) ?? ""
            let rows = last.split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
            if names.allSatisfy({ name in rows.contains { $0.count > 3 && $0[0] == name && $0[2] == "VOTER" && $0[3] == "ONLINE" } }) { return }
            usleep(200_000)
        }
        Issue.record("\(names) not all online voters after \(Int(timeout)) s; cluster list on \(name):\n\(last)", sourceLocation: sourceLocation)
    }

    /// Builds (once per process) and imports the busybox test image under `alias`.
    func importBusybox(alias: String = "busybox", initKind: String? = nil) throws {
        let image = try TestImages.busybox(initKind: initKind)
        try ok(["image", "import", image, "--alias", alias])
    }
}

enum TestImages {
    nonisolated(unsafe) private static var cache: [String: String] = [:]
    private static let lock = NSLock()

    static func busybox(initKind: String? = nil) throws -> String {
        lock.lock()
        defer { lock.unlock() }
        let key = initKind ?? "default"
        if let p = cache[key] { return p }
        let out = "/tmp/lxd-swift-it-image-\(getpid())-\(key).tar.xz"
        var args = [out]
        if let k = initKind { args += ["--init", k] }
        let r = try run("\(Paths.repo)/scripts/make-busybox-image", args)
        guard r.status == 0 else { throw HarnessError("make-busybox-image failed: \(r.stderr)") }
        cache[key] = out
        return out
    }
}

struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
