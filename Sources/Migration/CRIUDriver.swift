import Foundation
import Logging

/// Runs CRIU dump / pre-dump / restore and checks what comes out: images are validated with
/// `CheckpointImage` after a dump and again before a restore, failures carry CRIU's own log.
public struct CRIUDriver: Sendable {
    public let criu: CRIU
    let runner: any CommandRunner
    let logger: Logger

    public init(criu: CRIU, runner: any CommandRunner, logger: Logger = Logger(label: "lxd.migration.criu")) {
        self.criu = criu
        self.runner = runner
        self.logger = logger
    }

    public struct Dumped: Sendable {
        public var image: CheckpointImage
        /// Wall time of the criu command, as the agent saw it.
        public var elapsed: Duration
    }

    public struct Restored: Sendable {
        /// The restored init's pid on this host.
        public var pid: Int32
        public var elapsed: Duration
        public var stats: CheckpointImage.RestoreStats?
    }

    /// Checkpoints `request.pid`'s tree into `request.imagesDirectory` (created if missing).
    /// Unless `leaveRunning`, the tree is gone afterwards (CRIU kills it after a good dump; after
    /// a failed one CRIU resumes it).
    public func dump(_ request: DumpRequest) async throws -> Dumped {
        try makeDirectory(request.imagesDirectory)
        let elapsed = try await invoke("dump", CRIUCommand.dump(request), directory: request.imagesDirectory, log: request.logFile,
                                       inherited: CRIUCommand.dumpInherited(request))
        let image: CheckpointImage
        do { image = try CheckpointImage.read(directory: request.imagesDirectory) } catch { throw CRIUError.invalidImages(error) }
        logger.info("criu dump done", metadata: [
            "pid": "\(request.pid)", "elapsed": "\(elapsed)",
            "frozen_us": "\(image.dumpStats?.frozenTime ?? 0)", "memory_bytes": "\(image.storedMemoryBytes)",
        ])
        return Dumped(image: image, elapsed: elapsed)
    }

    /// The receiving end of a dump's `.pageServer` memory: writes the pagemap and pages images
    /// into `imagesDirectory` (created if missing) from `socket` until the dump says it is done.
    /// The caller keeps `socket` and closes it afterwards.
    public func receivePages(into imagesDirectory: String, socket: Int32) async throws -> Duration {
        try makeDirectory(imagesDirectory)
        return try await invoke("page-server", CRIUCommand.pageServer(imagesDirectory: imagesDirectory), directory: imagesDirectory,
                                log: "page-server.log", inherited: [CRIUCommand.socketFD: socket])
    }

    /// Post-copy's daemon on the target: runs until the restored tree has every page (or the
    /// source is lost). One byte on `status` once a `--lazy-pages` restore may start.
    public func serveLazyPages(imagesDirectory: String, socket: Int32, status: Int32) async throws -> Duration {
        try await invoke("lazy-pages", CRIUCommand.lazyPagesDaemon(imagesDirectory: imagesDirectory), directory: imagesDirectory,
                         log: "lazy-pages.log", inherited: [CRIUCommand.socketFD: socket, CRIUCommand.statusFD: status])
    }

    /// One pre-copy pass (the tree keeps running). Only where `CRIUFeatures.supportsPreCopy`.
    public func preDump(_ request: DumpRequest) async throws -> Duration {
        try makeDirectory(request.imagesDirectory)
        return try await invoke("pre-dump", CRIUCommand.preDump(request), directory: request.imagesDirectory, log: request.logFile)
    }

    /// Validates the images, then restores them detached; returns the new init's host pid.
    /// The root filesystem (`request.root`) and any external devices must already exist.
    ///
    /// The images directory is made 0711: CRIU opens some images (tty-info.img, timens-0.img)
    /// from tasks already inside the restored user namespace, at times before their ids are
    /// mapped (seen as intermittent "Permission denied" with a 0700 directory even when owned
    /// by the mapped root). Those tasks hold a directory fd, so they need search permission on
    /// that directory only; keep its parent 0700 so other host users cannot reach the images.
    public func restore(_ request: RestoreRequest) async throws -> Restored {
        do { _ = try CheckpointImage.read(directory: request.imagesDirectory) } catch { throw CRIUError.invalidImages(error) }
        if chmod(request.imagesDirectory, 0o711) != 0 {
            throw CRIUError.failed(action: "restore", status: -1,
                                   logTail: "chmod 0711 \(request.imagesDirectory): \(String(cString: strerror(errno)))",
                                   log: request.imagesDirectory)
        }
        try? FileManager.default.removeItem(atPath: request.pidFile)   // a stale pid must not be believed
        let inherited = Dictionary(uniqueKeysWithValues: zip(CRIUCommand.inheritedFDs(request), request.inherited.map(\.fd)))
        let elapsed = try await invoke("restore", CRIUCommand.restore(request), directory: request.imagesDirectory, log: request.logFile,
                                       inherited: inherited)
        guard let text = try? String(contentsOfFile: request.pidFile, encoding: .utf8) else {
            throw CRIUError.badPidFile(request.pidFile, "cannot read it")
        }
        guard let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 0 else {
            throw CRIUError.badPidFile(request.pidFile, "content \(text.prefix(40)) is not a pid")
        }
        // CRIU writes stats-restore next to the images; absent on older releases.
        let stats = (FileManager.default.contents(atPath: request.imagesDirectory + "/stats-restore")).flatMap { data in
            try? CheckpointImage.frames("stats-restore", [UInt8](data), header: ImageKind.stats.header)
        }.flatMap { try? CheckpointImage.restoreStats($0) }
        logger.info("criu restore done", metadata: ["pid": "\(pid)", "elapsed": "\(elapsed)"])
        return Restored(pid: pid, elapsed: elapsed, stats: stats)
    }

    private func invoke(_ action: String, _ arguments: [String], directory: String, log: String,
                        inherited: [Int32: Int32] = [:]) async throws -> Duration {
        logger.debug("running criu", metadata: ["args": "\(arguments.joined(separator: " "))"])
        let clock = ContinuousClock()
        let start = clock.now
        let result = try await criu.run(runner, arguments, inherited: inherited)
        let elapsed = clock.now - start
        guard result.exitStatus == 0 else {
            let logPath = log.hasPrefix("/") ? log : directory + "/" + log
            let tail = Self.logTail(path: logPath, fallback: result.output)
            logger.error("criu \(action) failed", metadata: ["status": "\(result.exitStatus)", "log": "\(logPath)"])
            throw CRIUError.failed(action: action, status: result.exitStatus, logTail: tail, log: logPath)
        }
        return elapsed
    }

    /// The error lines of a CRIU log (or its last lines when none is marked as an error).
    static func logTail(path: String, fallback: String, lines: Int = 8) -> String {
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? fallback
        let all = text.split(whereSeparator: \.isNewline)
        let errors = all.filter { $0.hasPrefix("Error") || $0.contains("Error (") }
        return (errors.isEmpty ? all.suffix(lines) : errors.suffix(lines)).joined(separator: "\n")
    }

    private func makeDirectory(_ path: String) throws {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
    }
}
