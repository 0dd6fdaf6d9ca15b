/// How a running instance's memory moves.
public enum MigrationMode: String, Sendable, Hashable, Codable, CaseIterable, CustomStringConvertible {
    /// Freeze, dump everything, copy, restore: downtime grows with memory size.
    case stopAndCopy = "stop-and-copy"
    /// Restore first, then fault pages in from the source (`--lazy-pages`): shortest downtime,
    /// but once the target runs, a lost source or link loses the instance's memory.
    case postCopy = "post-copy"
    /// Copy memory while running (`pre-dump --track-mem`) and only the last dirty pages frozen.
    case preCopy = "pre-copy"

    public var description: String { rawValue }
}

/// The outcome of choosing a mode: a mode, or a refusal that says which end lacks what.
public enum MigrationModeDecision: Sendable, Hashable {
    case use(MigrationMode)
    case refuse(String)
}

/// Chooses the migration mode from both ends' probes. Pure: no I/O, same inputs same answer.
public enum MigrationModeChoice {
    /// - Parameters:
    ///   - source, target: each host's `CRIUFeatures`.
    ///   - requested: a mode the caller insists on; refused (with the reason) when either end
    ///     cannot do it. When nil, the safest live mode both ends support is used: pre-copy,
    ///     else stop-and-copy. Post-copy is never picked implicitly: after the switch a failure
    ///     cannot resume the source (DESIGN.md: an instance is never lost).
    public static func choose(source: CRIUFeatures, target: CRIUFeatures,
                              requested: MigrationMode? = nil) -> MigrationModeDecision {
        for (end, f) in [("source", source), ("target", target)] {
            if !f.checkPassed {
                return .refuse("criu check fails on the \(end) (criu \(f.version)); run scripts/install-criu there")
            }
            if f.version < CRIUVersion.minimum {
                return .refuse("criu \(f.version) on the \(end) is older than \(CRIUVersion.minimum); run scripts/install-criu there")
            }
        }
        // Images are not portable across releases (4.2 images are unreadable by 4.1).
        if source.version != target.version {
            return .refuse("criu versions differ: source \(source.version), target \(target.version); install the same release on both")
        }
        switch requested {
        case nil:
            return .use(source.supportsPreCopy && target.supportsPreCopy ? .preCopy : .stopAndCopy)
        case .stopAndCopy?:
            return .use(.stopAndCopy)
        case .preCopy?:
            if let why = source.preCopyBlocker { return .refuse("pre-copy impossible on the source: \(why)") }
            if let why = target.preCopyBlocker { return .refuse("pre-copy impossible on the target: \(why)") }
            return .use(.preCopy)
        case .postCopy?:
            if let why = source.postCopyBlocker { return .refuse("post-copy impossible on the source: \(why)") }
            if let why = target.postCopyBlocker { return .refuse("post-copy impossible on the target: \(why)") }
            return .use(.postCopy)
        }
    }
}
