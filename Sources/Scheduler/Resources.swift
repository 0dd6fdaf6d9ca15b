/// Amounts of the four resources the scheduler accounts for.
///
/// Used both for what an instance takes (its footprint) and for what a member has handed out
/// (the sum of its instances' footprints). Bytes and process counts are `Int64` because that is
/// what ClusterDB's SQL `SUM` returns.
public struct Resources: Sendable, Hashable {
    /// CPU cores (fractional: `limits.cpu.allowance` style shares count as parts of a core).
    public var cpu: Double
    public var memory: Int64
    public var disk: Int64
    public var processes: Int64

    public init(cpu: Double = 0, memory: Int64 = 0, disk: Int64 = 0, processes: Int64 = 0) {
        self.cpu = cpu
        self.memory = memory
        self.disk = disk
        self.processes = processes
    }

    public static let zero = Resources()

    public static func + (lhs: Resources, rhs: Resources) -> Resources {
        Resources(cpu: lhs.cpu + rhs.cpu, memory: lhs.memory + rhs.memory,
                  disk: lhs.disk + rhs.disk, processes: lhs.processes + rhs.processes)
    }

    public static func += (lhs: inout Resources, rhs: Resources) { lhs = lhs + rhs }
}

/// An instance's limits as configured; `nil` means "not set", filled from
/// ``SchedulerSettings/defaultFootprint`` so an unlimited instance still counts for something.
public struct ResourceLimits: Sendable, Hashable {
    public var cpu: Double?
    public var memory: Int64?
    public var disk: Int64?
    public var processes: Int64?

    public init(cpu: Double? = nil, memory: Int64? = nil, disk: Int64? = nil, processes: Int64? = nil) {
        self.cpu = cpu
        self.memory = memory
        self.disk = disk
        self.processes = processes
    }

    /// The footprint the scheduler accounts for. ClusterDB's allocation sums must use the same
    /// defaults, or the scheduler's view drifts from what the rows say.
    public func footprint(defaults: Resources) -> Resources {
        Resources(cpu: cpu ?? defaults.cpu, memory: memory ?? defaults.memory,
                  disk: disk ?? defaults.disk, processes: processes ?? defaults.processes)
    }
}

/// What a member offers. `cpu` and `memory` are always known; `disk` and `processes` are `nil`
/// when the member does not report them, and are then not checked.
public struct MemberCapacity: Sendable, Hashable {
    public var cpu: Double
    public var memory: Int64
    public var disk: Int64?
    public var processes: Int64?

    public init(cpu: Double, memory: Int64, disk: Int64? = nil, processes: Int64? = nil) {
        self.cpu = cpu
        self.memory = memory
        self.disk = disk
        self.processes = processes
    }

    /// The capacity after a configured override (members sharing one test host each report the
    /// whole host; an operator gives each its share). Fields left `nil` in the override keep the
    /// reported value.
    public func overridden(by override: CapacityOverride) -> MemberCapacity {
        MemberCapacity(cpu: override.cpu ?? cpu, memory: override.memory ?? memory,
                       disk: override.disk ?? disk, processes: override.processes ?? processes)
    }
}

/// Per-member configured capacity, replacing what the member reports.
public struct CapacityOverride: Sendable, Hashable {
    public var cpu: Double?
    public var memory: Int64?
    public var disk: Int64?
    public var processes: Int64?

    public init(cpu: Double? = nil, memory: Int64? = nil, disk: Int64? = nil, processes: Int64? = nil) {
        self.cpu = cpu
        self.memory = memory
        self.disk = disk
        self.processes = processes
    }
}

/// Binary size units for messages ("512MiB", "1.5GiB").
public enum ByteSize {
    private static let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]

    /// Largest unit in which the value is at least 1; one decimal unless the value is whole.
    public static func format(_ bytes: Int64) -> String {
        if bytes < 0 { return "-" + format(bytes == .min ? .max : -bytes) }
        var unit = 0
        var scale: Int64 = 1
        while unit < units.count - 1, bytes / scale >= 1024 {
            scale *= 1024
            unit += 1
        }
        if bytes % scale == 0 { return "\(bytes / scale)\(units[unit])" }
        // Tenths, rounded half up (by truncating +0.5: `rounded()` would pull in libm).
        let tenths = Int64(Double(bytes) / Double(scale) * 10 + 0.5)
        let whole = tenths / 10
        let fraction = tenths % 10
        return fraction == 0 ? "\(whole)\(units[unit])" : "\(whole).\(fraction)\(units[unit])"
    }
}

/// Short decimal for cpu figures in messages: at most two decimals, no trailing zeros.
func formatCores(_ value: Double) -> String {
    guard value.isFinite, abs(value) < 1e15 else { return "\(value)" }
    if value < 0 { return "-" + formatCores(-value) }
    let hundredths = Int64(value * 100 + 0.5)  // half up without libm's round()
    let whole = hundredths / 100
    let fraction = abs(hundredths % 100)
    if fraction == 0 { return "\(whole)" }
    if fraction % 10 == 0 { return "\(whole).\(fraction / 10)" }
    return "\(whole).\(fraction < 10 ? "0" : "")\(fraction)"
}
