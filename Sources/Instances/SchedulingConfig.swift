import APITypes
import Foundation
import ClusterDB
import InstanceConfig

/// The scheduling keys of a member's config, as the scheduler reads them. They are validated
/// when set (`MemberConfigSchema`, `PUT/PATCH /1.0/cluster/members/NAME`); a value that does not
/// parse here is ignored rather than blocking every launch.
///
/// - `scheduler.instance`: `all` (default), `manual` or `group`, with LXD's meaning.
/// - `scheduler.cpu`, `scheduler.memory`, `scheduler.disk`, `scheduler.processes`: capacity that
///   replaces what the member reports (members sharing one host each report the whole host).
/// - `scheduler.groups`: comma-separated cluster groups besides `default` (`--target @group`).
public struct MemberSchedulingConfig: Sendable, Equatable {
    public var mode: String = "all"
    public var cpu: Double?
    public var memory: Int64?
    public var disk: Int64?
    public var processes: Int64?
    public var groups: [String] = []

    public init() {}

    public init(config: [String: String]) {
        if let value = config["scheduler.instance"], ["all", "manual", "group"].contains(value) { mode = value }
        cpu = config["scheduler.cpu"].flatMap { try? Quantity.cpu($0).cores }
        memory = config["scheduler.memory"].flatMap { try? Quantity.bytes($0) }
        disk = config["scheduler.disk"].flatMap { try? Quantity.bytes($0) }
        processes = config["scheduler.processes"].flatMap { try? Quantity.positiveInteger($0) }
        groups = (config["scheduler.groups"] ?? "").split(separator: ",").map(String.init).filter { !$0.isEmpty }
    }
}

/// Cluster-wide server config keys (`PUT/PATCH /1.0` `config`), stored in ClusterDB's config table.
public enum ServerConfigKeys {
    /// `fewest` (LXD's rule, default), `spread` or `binpack`.
    public static let policy = "scheduler.policy"
    /// How far cpu limits may add up past a member's cores (default 4.0).
    public static let cpuOvercommit = "scheduler.cpu_overcommit"

    public static let policies = ["fewest", "spread", "binpack"]

    /// Throws `InstancesError` (invalid) for an unknown key or a bad value; `""` means unset.
    public static func validate(_ key: String, _ value: String) throws {
        switch key {
        case policy:
            guard value.isEmpty || policies.contains(value) else {
                throw InstancesError.invalid("Invalid value for \(policy): \"\(value)\": use \(policies.joined(separator: ", "))")
            }
        case cpuOvercommit:
            guard value.isEmpty || (Double(value).map { $0.isFinite && $0 > 0 && $0 <= 1000 } ?? false) else {
                throw InstancesError.invalid("Invalid value for \(cpuOvercommit): \"\(value)\": use a ratio > 0 (e.g. 4 or 1.5)")
            }
        default:
            throw InstancesError.invalid("Unknown server configuration key: \(key) (known: \(policy), \(cpuOvercommit))")
        }
    }
}

extension InstanceFootprint {
    /// The footprint of an instance from its (validated) config. `limits.cpu` as a set counts its
    /// cpus. Disk is not set: there are no root disk devices yet, so every instance counts the
    /// default disk footprint.
    init(instanceConfig config: [String: String]) {
        let limits = InstanceConfig.ResourceLimits(config: config)
        self.init(cpu: limits.cpu?.cores, memory: limits.memoryBytes, disk: nil, processes: limits.processes)
    }
}
