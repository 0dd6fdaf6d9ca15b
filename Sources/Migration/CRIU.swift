import Foundation
import Logging

/// What went wrong driving CRIU, on what, and what to do.
public enum CRIUError: Error, Equatable, CustomStringConvertible {
    case notFound(searched: [String])
    case unusableVersion(path: String, output: String)
    case tooOld(path: String, CRIUVersion)
    /// criu exited non-zero: (action, exit status, last lines of its log, log path).
    case failed(action: String, status: Int32, logTail: String, log: String)
    case badPidFile(String, String)
    case invalidImages(CheckpointImageError)

    public var description: String {
        switch self {
        case let .notFound(searched):
            return "criu not found (looked at \(searched.joined(separator: ", "))); run scripts/install-criu or set LXD_CRIU"
        case let .unusableVersion(path, output):
            return "\(path) --version printed no version (\(output.prefix(200))); run scripts/install-criu"
        case let .tooOld(path, v):
            return "\(path) is criu \(v), need >= \(CRIUVersion.minimum); run scripts/install-criu"
        case let .failed(action, status, tail, log):
            return "criu \(action) failed (exit \(status)); see \(log):\n\(tail)"
        case let .badPidFile(path, why):
            return "criu restore reported success but its pid file \(path) is unusable: \(why)"
        case let .invalidImages(e):
            return e.description
        }
    }
}

/// The CRIU binary this host uses. Locating is pure over an injected environment and
/// executable test; probing and running go through a `CommandRunner`.
public struct CRIU: Sendable {
    /// Where scripts/install-criu puts it.
    public static let installedPath = "/usr/local/sbin/criu"

    public let path: String

    public init(path: String) { self.path = path }

    /// `LXD_CRIU` when set (an explicit choice is not second-guessed), else the installed
    /// wrapper, else the first `criu` on PATH.
    public static func locate(environment: [String: String] = ProcessInfo.processInfo.environment,
                              isExecutable: (String) -> Bool = { access($0, X_OK) == 0 }) throws(CRIUError) -> CRIU {
        if let explicit = environment["LXD_CRIU"], !explicit.isEmpty {
            guard isExecutable(explicit) else { throw .notFound(searched: ["LXD_CRIU=\(explicit)"]) }
            return CRIU(path: explicit)
        }
        var searched = [installedPath]
        if isExecutable(installedPath) { return CRIU(path: installedPath) }
        let dirs = (environment["PATH"] ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .split(separator: ":").map(String.init)
        for dir in dirs where !dir.isEmpty {
            let candidate = dir + "/criu"
            searched.append(candidate)
            if isExecutable(candidate) { return CRIU(path: candidate) }
        }
        throw .notFound(searched: searched)
    }

    /// Environment criu runs with: nothing of the agent's leaks in, PATH for the helpers it
    /// execs (iptables, nft, action scripts).
    static let environment = ["PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]

    func run(_ runner: some CommandRunner, _ arguments: [String], inherited: [Int32: Int32] = [:]) async throws -> CommandOutput {
        if inherited.isEmpty { return try await runner.run(executable: path, arguments: arguments, environment: Self.environment) }
        return try await runner.run(executable: path, arguments: arguments, environment: Self.environment, inherited: inherited)
    }

    /// Probes this host: version, `criu check`, soft-dirty, userfaultfd, pipe size.
    /// `pipeMaxSize` reads fs.pipe-max-size (injectable for tests).
    public func probe(runner: some CommandRunner,
                      pipeMaxSize: () -> Int = CRIU.readPipeMaxSize,
                      pipeMaxSizeRaisable: () -> Bool = CRIU.canRaisePipeMaxSize) async throws -> CRIUFeatures {
        let v = try await run(runner, CRIUCommand.version)
        guard v.exitStatus == 0, let version = CRIUVersion.parse(versionOutput: v.output) else {
            throw CRIUError.unusableVersion(path: path, output: v.output)
        }
        let check = try await run(runner, CRIUCommand.check)
        let dirty = try await run(runner, CRIUCommand.checkFeature("mem_dirty_track"))
        let uffd = try await run(runner, CRIUCommand.checkFeature("uffd-noncoop"))
        return CRIUFeatures(version: version, checkPassed: check.exitStatus == 0,
                            memDirtyTrack: dirty.exitStatus == 0, userfaultfd: uffd.exitStatus == 0,
                            pipeMaxSize: pipeMaxSize(), pipeMaxSizeRaisable: pipeMaxSizeRaisable())
    }

    /// Whether this agent may write fs.pipe-max-size (`PostCopyHost.ensurePipes` raises it).
    public static func canRaisePipeMaxSize() -> Bool { access(PostCopyHost.pipeMaxSize, W_OK) == 0 }

    public static func readPipeMaxSize() -> Int {
        guard let s = try? String(contentsOfFile: PostCopyHost.pipeMaxSize, encoding: .utf8) else { return 0 }
        return Int(s.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
    }
}
