/// A CRIU release number as printed by `criu --version` ("Version: 4.2.1").
public struct CRIUVersion: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    public var major: Int
    public var minor: Int
    public var patch: Int

    public init(_ major: Int, _ minor: Int, _ patch: Int = 0) {
        self.major = major
        self.minor = minor
        self.patch = patch
    }

    /// The oldest CRIU we drive: 4.1.x cannot dump inet sockets on kernels >= 6.16 and older
    /// releases do not start at all on kernels >= 6.13 (NOTES-criu.md).
    public static let minimum = CRIUVersion(4, 2)

    /// Parses the output of `criu --version`; nil when no "Version:" line is found.
    public static func parse(versionOutput: String) -> CRIUVersion? {
        for line in versionOutput.split(whereSeparator: \.isNewline) {
            let trimmed = line.trimmingPrefix(while: \.isWhitespace)
            guard trimmed.hasPrefix("Version:") else { continue }
            let number = trimmed.dropFirst("Version:".count).trimmingPrefix(while: \.isWhitespace)
            let digits = number.prefix { $0.isNumber || $0 == "." }
            let parts = digits.split(separator: ".", omittingEmptySubsequences: false).map { Int($0) }
            guard parts.count >= 2, parts.count <= 3, let major = parts[0], let minor = parts[1] else { return nil }
            let patch = parts.count == 3 ? parts[2] : 0
            guard let patch else { return nil }
            return CRIUVersion(major, minor, patch)
        }
        return nil
    }

    public static func < (a: CRIUVersion, b: CRIUVersion) -> Bool {
        (a.major, a.minor, a.patch) < (b.major, b.minor, b.patch)
    }

    public var description: String { "\(major).\(minor).\(patch)" }
}

/// What the CRIU on one host can do, as probed there. Exchanged between the two ends of a
/// move so `MigrationModeChoice` can decide on both (hence Codable).
public struct CRIUFeatures: Sendable, Hashable, Codable {
    /// Pipe capacity CRIU's lazy-pages daemon asks for; without it post-copy fails.
    public static let lazyPagesPipeSize = 4 * 1024 * 1024

    public var version: CRIUVersion
    /// `criu check` passed (the basic checkpoint/restore requirements of this kernel).
    public var checkPassed: Bool
    /// `criu check --feature mem_dirty_track`: soft-dirty tracking, needed by pre-dump.
    public var memDirtyTrack: Bool
    /// `criu check --feature uffd-noncoop`: userfaultfd as the lazy-pages daemon needs it.
    public var userfaultfd: Bool
    /// fs.pipe-max-size in bytes (0 when unreadable).
    public var pipeMaxSize: Int
    /// The agent may raise fs.pipe-max-size itself (`PostCopyHost.ensurePipes`) when a post-copy
    /// move starts; nil in probes published before this was recorded (taken as false).
    public var pipeMaxSizeRaisable: Bool?

    public init(version: CRIUVersion, checkPassed: Bool, memDirtyTrack: Bool, userfaultfd: Bool, pipeMaxSize: Int,
                pipeMaxSizeRaisable: Bool? = nil) {
        self.version = version
        self.checkPassed = checkPassed
        self.memDirtyTrack = memDirtyTrack
        self.userfaultfd = userfaultfd
        self.pipeMaxSize = pipeMaxSize
        self.pipeMaxSizeRaisable = pipeMaxSizeRaisable
    }

    /// Iterative pre-copy (`pre-dump --track-mem`) works: without soft-dirty CRIU aborts.
    public var supportsPreCopy: Bool { checkPassed && memDirtyTrack }

    /// Post-copy (`--lazy-pages`) works: userfaultfd plus 4 MiB pipes (root here lacks
    /// CAP_SYS_RESOURCE, so the sysctl must allow them, or the agent must be able to raise it).
    public var supportsPostCopy: Bool { postCopyBlocker == nil }

    /// Why post-copy is unavailable here, or nil when it is available.
    public var postCopyBlocker: String? {
        if !checkPassed { return "criu check fails" }
        if !userfaultfd { return "userfaultfd (uffd-noncoop) is unsupported" }
        if pipeMaxSize < Self.lazyPagesPipeSize, pipeMaxSizeRaisable != true {
            return "fs.pipe-max-size is \(pipeMaxSize), lazy pages need \(Self.lazyPagesPipeSize) (sysctl fs.pipe-max-size=\(Self.lazyPagesPipeSize))"
        }
        return nil
    }

    /// Why pre-copy is unavailable here, or nil when it is available.
    public var preCopyBlocker: String? {
        if !checkPassed { return "criu check fails" }
        if !memDirtyTrack { return "the kernel has no soft-dirty memory tracking (mem_dirty_track)" }
        return nil
    }
}
