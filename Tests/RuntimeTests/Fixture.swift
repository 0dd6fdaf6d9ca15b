import Foundation
import Glibc
import Logging
import InstanceConfig
@testable import Runtime

/// Real containers need root, busybox-static and the helper built next to the test bundle
/// (`swift build --build-tests` builds the lxd-start product too).
enum Host {
    static var helperPath: String? {
        if let p = ProcessInfo.processInfo.environment["LXD_START"] { return p }
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = dir.appendingPathComponent("lxd-start").path
            if access(candidate, X_OK) == 0 { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        return nil
    }

    /// Why real containers cannot run here, or nil. Suites pass it to `.enabled(if:)`, so the
    /// test runner reports them as skipped with this reason.
    static let containersMissing: String? = {
        if getuid() != 0 { return "real containers need root (uid \(getuid()))" }
        if access("/bin/busybox", X_OK) != 0 { return "needs /bin/busybox (busybox-static; scripts/bootstrap installs it)" }
        if helperPath == nil { return "lxd-start is not built next to the tests (swift build --build-tests) and LXD_START is unset" }
        return nil
    }()

    static var canRunContainers: Bool { containersMissing == nil }

    static let criuPath = "/usr/local/sbin/criu"

    /// `make test` installs CRIU and sets LXD_SWIFT_REQUIRE_CRIU=1: then the CRIU tests must
    /// run, and a missing CRIU fails them instead of skipping them.
    static let criuRequired = ProcessInfo.processInfo.environment["LXD_SWIFT_REQUIRE_CRIU"] == "1"

    static var criuMissing: String? {
        access(criuPath, X_OK) == 0 ? nil : "no criu at \(criuPath); run scripts/install-criu"
    }
}

/// A temp $LXD_DIR with a busybox image layer, and a runtime on it under a unique member name.
struct Fixture {
    let root: String
    let layer: String
    let dataDir: String
    let member: String
    let runtime: ContainerRuntime

    static let applets = ["sh", "cat", "echo", "hostname", "ls", "id", "ps", "sleep", "stat", "ln", "mount",
                          "grep", "head", "wc", "true", "false", "env", "kill", "readlink", "tr", "mkdir", "touch"]

    init(_ tag: String, logLevel: Logger.Level = .warning, shiftLayers: Bool = false) throws {
        var template = Array("/tmp/lxd-rt-\(tag)-XXXXXX".utf8CString)
        guard let p = mkdtemp(&template) else { throw RuntimeError.system("mkdtemp", on: "/tmp", errno) }
        root = String(cString: p)
        chmod(root, 0o711)   // the mapped root walks the path to its console and rootfs
        layer = root + "/layer"
        dataDir = root + "/lxd"
        member = "rt\(getpid())-\(tag)"
        let fm = FileManager.default
        for d in ["bin", "sbin", "root", "tmp", "proc", "sys", "dev"] {
            try fm.createDirectory(atPath: layer + "/" + d, withIntermediateDirectories: true)
        }
        chmod(layer + "/tmp", 0o1777)
        try fm.copyItem(atPath: "/bin/busybox", toPath: layer + "/bin/busybox")
        for a in Self.applets { try fm.createSymbolicLink(atPath: layer + "/bin/" + a, withDestinationPath: "busybox") }
        let initScript = """
        #!/bin/sh
        trap 'echo "init stopping"; exit 0' TERM PWR
        echo "init started"
        while true; do sleep 1000 & wait $!; done

        """
        try initScript.write(toFile: layer + "/sbin/init", atomically: true, encoding: .utf8)
        chmod(layer + "/sbin/init", 0o755)
        try fm.createDirectory(atPath: dataDir, withIntermediateDirectories: true)
        chmod(dataDir, 0o711)
        var logger = Logger(label: "runtime-tests")
        logger.logLevel = ProcessInfo.processInfo.environment["RUNTIME_LOG"] != nil ? .info : logLevel
        runtime = try ContainerRuntime(dataDir: dataDir, memberName: member, helperPath: Host.helperPath!, logger: logger,
                                       shiftLayers: shiftLayers)
    }

    func spec(_ name: String, base: UInt32?, limits: Limits = Limits()) -> ContainerSpec {
        ContainerSpec(instance: InstanceRef(name: name), layerRootfs: layer, idmap: base.map { IDMap(hostBase: $0) }, limits: limits)
    }

    /// Removes the member's cgroups and the temp tree. A test that failed half-way may leave
    /// containers running: kill them so nothing outlives the test run.
    func tearDown() {
        let leftovers = runtime.runningInstances()
        for name in leftovers {
            if let pid = runtime.state(instance: name)?.pid, pid > 0 { kill(pid, SIGKILL) }
        }
        if !leftovers.isEmpty { usleep(200_000) }
        for m in Mounts.under(root).sorted(by: { $0.count > $1.count }) { umount2(m, Int32(MNT_DETACH)) }
        for dir in runtime.cgroupLayout.directories(relative: "lxd-swift/" + member) {
            if let names = try? FileManager.default.contentsOfDirectory(atPath: dir) {
                for n in names { rmdir(dir + "/" + n) }   // only directories (containers) go
            }
            rmdir(dir)
        }
        if Mounts.under(root).isEmpty { try? FileManager.default.removeItem(atPath: root) }
    }
}

struct ExecResult {
    let code: Int32
    let output: String
    let failure: String?
}

/// Runs a command in the container with stdin from `input` and stdout+stderr captured.
func run(_ rt: ContainerRuntime, _ name: InstanceRef, _ command: [String], input: String = "",
         uid: UInt32 = 0, gid: UInt32 = 0) async throws -> ExecResult {
    var inPipe: [Int32] = [-1, -1], outPipe: [Int32] = [-1, -1]
    guard pipe(&inPipe) == 0, pipe(&outPipe) == 0 else { throw RuntimeError.system("pipe", on: "test", errno) }
    let p: ExecProcess
    do {
        p = try await rt.exec(instance: name, command: command, uid: uid, gid: gid,
                              stdio: .pipes(stdin: inPipe[0], stdout: outPipe[1], stderr: outPipe[1]))
    } catch {
        for fd in inPipe + outPipe { close(fd) }
        throw error
    }
    close(inPipe[0]); close(outPipe[1])
    let bytes = Array(input.utf8)
    if !bytes.isEmpty { _ = write(inPipe[1], bytes, bytes.count) }
    close(inPipe[1])
    let out = await ContainerRuntime.readToEOF(outPipe[0])
    let code = await p.wait()
    return ExecResult(code: code, output: String(decoding: out, as: UTF8.self), failure: p.failure)
}

func hostFile(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }

/// The value of a "Key:\tvalue" line of /proc/PID/status.
func statusField(_ pid: pid_t, _ key: String) -> String? {
    hostFile("/proc/\(pid)/status").split(separator: "\n")
        .first { $0.hasPrefix(key + ":") }
        .map { $0.dropFirst(key.count + 1).trimmingCharacters(in: .whitespaces) }
}

func squeezed(_ s: String) -> String {
    s.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).joined(separator: " ")
}

func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    return s.isEmpty ? 0 : s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

func milliseconds(_ d: Duration) -> Double {
    Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15
}

/// A literal names an instance of the default project, so tests read `rt.stop(instance: "c1", ...)`.
extension InstanceRef: ExpressibleByStringInterpolation {
    public init(stringLiteral name: String) { self.init(name: name) }
}
