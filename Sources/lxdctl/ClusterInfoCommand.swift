import APITypes
import ArgumentParser
import LXDClient

/// `lxdctl cluster info`: each member's capacity (reported, or overridden by its `scheduler.*`
/// config) and what its instances take, as the scheduler sees them.
struct ClusterInfoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info", abstract: "Show each member's capacity and allocation (what the scheduler places against).")
    @OptionGroup var connection: ConnectionOptions
    @Option(name: [.customShort("f"), .long], help: "Output format: table, csv or json.") var format: OutputFormat = .table

    static let columns = ["NAME", "STATUS", "MODE", "INSTANCES", "CPU", "MEMORY", "DISK", "PROCESSES"]

    func run() async throws {
        let members = try await connection.client.clusterResources()
        try Output.listing(format, headers: Self.columns, rows: members.map(Self.row), json: members)
        // Under the table only: csv stays one line per member.
        if format == .table, let line = Self.idmapLine(members) { Output.stdout(line + "\n") }
    }

    /// How many isolated instances the answering member's uid/gid range holds (only it knows
    /// its own range; ids are allocated cluster-wide, so every member uses the same one).
    static func idmapLine(_ members: [MemberResources]) -> String? {
        guard let m = members.first(where: { $0.idmap != nil }), let r = m.idmap else { return nil }
        return "uid/gid range of \(m.serverName): \(r.start):\(r.size), room for \(r.instances) isolated instances"
    }

    /// e.g. CPU "3.5/8 (x4 of 2)", MEMORY "1.5GiB/4GiB (37%)".
    static func row(_ m: MemberResources) -> [String] {
        let cpuLimit = m.capacity.cpu * m.cpuOvercommit
        return [
            m.serverName, m.status.name, m.schedulerInstance, "\(m.instances)",
            "\(number(m.allocated.cpu))/\(number(cpuLimit)) (x\(number(m.cpuOvercommit)) of \(number(m.capacity.cpu)))",
            "\(bytes(m.allocated.memory))/\(bytes(m.capacity.memory)) (\(percent(Double(m.allocated.memory), Double(m.capacity.memory))))",
            m.capacity.disk.map { "\(bytes(m.allocated.disk ?? 0))/\(bytes($0))" } ?? "\(bytes(m.allocated.disk ?? 0))/-",
            m.capacity.processes.map { "\(m.allocated.processes ?? 0)/\($0)" } ?? "\(m.allocated.processes ?? 0)/-",
        ]
    }

    static func percent(_ used: Double, _ of: Double) -> String {
        of > 0 ? "\(Int(used / of * 100))%" : "-"
    }

    /// At most two decimals, no trailing zeros.
    static func number(_ value: Double) -> String {
        let hundredths = Int64(value * 100 + 0.5)
        let whole = hundredths / 100
        let fraction = hundredths % 100
        if fraction == 0 { return "\(whole)" }
        return fraction % 10 == 0 ? "\(whole).\(fraction / 10)" : "\(whole).\(fraction < 10 ? "0" : "")\(fraction)"
    }

    /// Binary units with one decimal ("1.5GiB").
    static func bytes(_ value: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
        var scaled = Double(value)
        var unit = 0
        while scaled >= 1024, unit < units.count - 1 {
            scaled /= 1024
            unit += 1
        }
        let tenths = Int64(scaled * 10 + 0.5)
        return tenths % 10 == 0 ? "\(tenths / 10)\(units[unit])" : "\(tenths / 10).\(tenths % 10)\(units[unit])"
    }
}
