/// What one member can do for a live move, as it publishes it in the cluster database when its
/// agent starts: its CRIU probe, or why it has no usable CRIU. Stateless and cold moves need
/// neither, so a member without CRIU still takes those.
public struct MigrationCapabilities: Sendable, Hashable, Codable {
    /// The probe of this member's CRIU; nil when none is usable.
    public var criu: CRIUFeatures?
    /// Why no CRIU is usable (not found, its probe failed); nil when `criu` is set.
    public var criuUnavailable: String?

    enum CodingKeys: String, CodingKey {
        case criu
        case criuUnavailable = "criu_unavailable"
    }

    public static func probed(_ features: CRIUFeatures) -> MigrationCapabilities {
        MigrationCapabilities(criu: features, criuUnavailable: nil)
    }

    public static func withoutCRIU(_ reason: String) -> MigrationCapabilities {
        MigrationCapabilities(criu: nil, criuUnavailable: reason)
    }

    /// Why this member alone cannot move memory in `mode` (as either end); nil when its CRIU can.
    /// Whether this build runs the mode is `MoveModeRule`'s business, not the probe's.
    public func blocker(for mode: MigrationMode) -> String? {
        guard let criu else {
            return "no usable CRIU (\(criuUnavailable ?? "reason unknown")): run scripts/install-criu"
        }
        if !criu.checkPassed { return "criu check fails (criu \(criu.version)): run scripts/install-criu" }
        if criu.version < CRIUVersion.minimum {
            return "criu \(criu.version) is older than \(CRIUVersion.minimum): run scripts/install-criu"
        }
        switch mode {
        case .stopAndCopy: return nil
        case .postCopy: return criu.postCopyBlocker
        case .preCopy: return criu.preCopyBlocker
        }
    }
}

/// Decides, before a move claims or freezes anything, which memory mode it uses: from the
/// method, the mode the user asked for (if any), and both members' published capabilities.
/// Pure: no I/O, same inputs same answer.
///
/// The rules:
/// - A mode applies to a live move only: one asked for a stateless or cold move is refused.
/// - A live move needs usable CRIU on the source; on the target too, once the target has
///   published its capabilities. A target that has not (an agent of an older build) is taken
///   as it was before members published anything: stop-and-copy, its CRIU checked when it
///   answers the prepare; any other mode asked of it is refused (nothing can vouch for it).
/// - Otherwise `MigrationModeChoice` decides (post-copy only when asked for; versions must match).
/// - A mode the probes allow but this build does not run (`notInThisBuild`) is refused when
///   asked for; chosen implicitly (pre-copy), stop-and-copy is used instead.
public enum MoveModeRule {
    public enum Decision: Sendable, Hashable {
        /// A stateless or cold move: no memory moves, no mode applies.
        case noMemory
        case use(MigrationMode)
        case refuse(String)
    }

    /// Modes the probes may allow but this build does not execute, with the reason given
    /// (`lxdctl cluster show` reads the same table).
    public static let notInThisBuild: [MigrationMode: String] = [
        .preCopy: "pre-copy is not implemented",
    ]

    /// - Parameters:
    ///   - method: what the move does with the instance (live, stateless, cold).
    ///   - requested: the mode the user asked for, nil for the default.
    ///   - source: this member's capabilities.
    ///   - target: the target's published capabilities; nil when it published none.
    public static func decide(method: MoveMachine.Method, requested: MigrationMode?,
                              source: MigrationCapabilities, target: MigrationCapabilities?,
                              sourceName: String, targetName: String) -> Decision {
        guard method == .live else {
            guard let requested else { return .noMemory }
            let what = method == .cold ? "the instance is stopped, so it moves cold" : "a stateless move stops the instance"
            return .refuse("migration mode \(requested) applies to a live move only: \(what); leave the mode out")
        }
        guard let sourceCRIU = source.criu else {
            return .refuse("a live move needs CRIU >= \(CRIUVersion.minimum) on member \(sourceName), which has none usable (\(source.criuUnavailable ?? "reason unknown")): run scripts/install-criu there, or move with --stateless")
        }
        guard let target else {
            if let requested, requested != .stopAndCopy {
                return .refuse("member \(targetName) has not published its migration capabilities (its agent runs an older build): \(requested) cannot be checked there; ask for stop-and-copy or leave the mode out")
            }
            return .use(.stopAndCopy)
        }
        guard let targetCRIU = target.criu else {
            return .refuse("member \(targetName) has no usable CRIU (\(target.criuUnavailable ?? "reason unknown")): run scripts/install-criu there, or move with --stateless")
        }
        switch MigrationModeChoice.choose(source: sourceCRIU, target: targetCRIU, requested: requested) {
        case .refuse(let why):
            return .refuse("\(why) (source \(sourceName), target \(targetName))")
        case .use(let mode):
            guard let missing = notInThisBuild[mode] else { return .use(mode) }
            if requested == nil { return .use(.stopAndCopy) }
            return .refuse("\(missing): ask for stop-and-copy or leave the mode out")
        }
    }

    /// Whether member `name` could do `mode` as either end of a live move, judged on its own
    /// capabilities and this build (what `lxdctl cluster show` lists): nil when it could.
    public static func unavailability(of mode: MigrationMode, on capabilities: MigrationCapabilities?) -> String? {
        guard let capabilities else {
            return "the member has not published its migration capabilities (its agent runs an older build or has not started)"
        }
        if let why = capabilities.blocker(for: mode) { return why }
        return notInThisBuild[mode]
    }
}
