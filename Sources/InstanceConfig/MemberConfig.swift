/// The table of cluster *member* config keys (`lxdctl cluster set NAME key=value`, a preseed's
/// `member_config`): one line per key with its validator. Add a key by adding a line here; the
/// API, the CLI and preseeds all validate through `MemberConfigSchema.validate`.
public enum MemberConfigSchema {
    static let keys: [String: @Sendable (String) throws -> Void] = [
        // Scheduler placement: "all" (default), "group" (only when a group is targeted), "manual" (only --target).
        "scheduler.instance": { v in
            guard ["all", "group", "manual"].contains(v) else {
                throw InstanceConfigError.invalidValue(key: "", reason: "\"\(v)\" is not one of all, group, manual")
            }
        },
        // Capacity this member reports to the scheduler, overriding what the host has
        // (members sharing a test host: DESIGN.md "Capacity").
        "scheduler.cpu": { _ = try Quantity.cpu($0) },
        "scheduler.memory": { _ = try Quantity.bytes($0) },
        "scheduler.disk": { _ = try Quantity.bytes($0) },
        "scheduler.processes": { _ = try Quantity.positiveInteger($0) },
        // Comma-separated cluster groups besides "default" (targeted with --target @group).
        "scheduler.groups": { v in
            for g in v.split(separator: ",", omittingEmptySubsequences: false) where g.isEmpty || g.contains(where: { $0.isWhitespace || $0 == "/" }) {
                throw InstanceConfigError.invalidValue(key: "", reason: "\"\(v)\" must be group names separated by commas, without spaces or slashes")
            }
        },
    ]

    /// Free-form: `user.*` (anything, for the operator's own notes).
    static func isFreeForm(_ key: String) -> Bool { key.hasPrefix("user.") && key.count > 5 }

    public static var knownKeys: [String] { keys.keys.sorted() }

    /// Throws for the first unknown key or bad value (sorted by key, so the error is stable).
    public static func validate(_ config: [String: String]) throws(InstanceConfigError) {
        for key in config.keys.sorted() {
            let value = config[key] ?? ""
            if isFreeForm(key) { continue }
            guard let check = keys[key] else { throw .unknownKey(key) }
            do {
                try check(value)
            } catch let error as InstanceConfigError {
                if case .invalidValue(_, let reason) = error { throw .invalidValue(key: key, reason: reason) }
                throw error
            } catch {
                throw .invalidValue(key: key, reason: "\(error)")
            }
        }
    }

    /// A failure domain is a label: non-empty, no spaces or slashes.
    public static func validateFailureDomain(_ domain: String) throws(InstanceConfigError) {
        guard !domain.isEmpty, domain.count <= 64, !domain.contains(where: { $0.isWhitespace || $0 == "/" || $0 == "," }) else {
            throw .invalidValue(key: "failure_domain", reason: "\"\(domain)\" must be 1-64 characters without spaces, slashes or commas")
        }
    }
}
