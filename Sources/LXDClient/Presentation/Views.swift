import APITypes

/// What lxdctl prints for each resource (pure: values in, text out).
public enum Views {
    // MARK: list

    public static let instanceColumns = ["NAME", "STATE", "PID", "MEMORY", "LOCATION"]

    /// One row per instance; PID and MEMORY are empty when the instance has no live process.
    public static func instanceRows(_ instances: [Instance]) -> [[String]] {
        instances.sorted { $0.name < $1.name }.map { instance in
            let state = instance.state
            let running = (state?.pid ?? 0) > 0
            return [
                instance.name,
                instance.status.uppercased(),
                running ? String(state!.pid) : "",
                running ? ByteSize.human(state!.memory.usage) : "",
                instance.location,
            ]
        }
    }

    // MARK: info

    /// `member`: the instance's member as the cluster shows it; its migration capabilities are
    /// listed (nil, or a member that shows none: no such section).
    public static func info(_ instance: Instance, state: InstanceState?, member: ClusterMemberInfo? = nil) -> String {
        var lines = [
            "Name: \(instance.name)",
            "Status: \(instance.status.uppercased())",
            "Type: \(instance.type)",
            "Architecture: \(instance.architecture)",
            "Location: \(instance.location)",
            "Created: \(instance.createdAt)",
            "Last Used: \(instance.lastUsedAt)",
        ]
        if let state, state.pid > 0 {
            lines += [
                "PID: \(state.pid)",
                "Processes: \(state.processes)",
                "",
                "Resources:",
                "  CPU usage:",
                "    CPU usage (in seconds): \(state.cpu.usage / 1_000_000_000)",
                "  Memory usage:",
                "    Memory (current): \(ByteSize.human(state.memory.usage))",
                "    Memory (peak): \(ByteSize.human(state.memory.usagePeak))",
            ]
        }
        if let member, let migration = member.migration {
            lines += ["", "Migration (member \(member.serverName)):"]
            lines += migrationLines(migration)
        }
        lines += ["", "Config:"]
        lines += instance.config.keys.sorted().map { "  \($0): \(yamlScalar(instance.config[$0]!))" }
        return lines.joined(separator: "\n") + "\n"
    }

    // MARK: migration

    /// The memory modes first in their usual order, then any this client does not know.
    static let modeOrder = ["stop-and-copy", "post-copy", "pre-copy"]

    /// A member's live-move capabilities, two spaces in: CRIU, each mode with why it is
    /// unavailable, and per other member whether a live move there is possible and why not.
    /// Stateless and cold moves need no CRIU, so they are always possible and not listed.
    public static func migrationLines(_ m: MemberMigration) -> [String] {
        var lines = ["  criu: \(m.criuVersion ?? "none usable")", "  modes:"]
        let names = modeOrder.filter { m.modes[$0] != nil } + m.modes.keys.filter { !modeOrder.contains($0) }.sorted()
        for name in names {
            let mode = m.modes[name]!
            lines.append("    \(name): " + (mode.available ? "available" : "unavailable (\(mode.reason ?? "no reason given"))"))
        }
        if !m.liveMoves.isEmpty {
            lines.append("  live moves:")
            for (member, move) in m.liveMoves.sorted(by: { $0.key < $1.key }) {
                lines.append("    to \(member): " + (move.possible ? "possible (\(move.mode ?? "stop-and-copy"))" : "impossible (\(move.reason ?? "no reason given"))"))
            }
        }
        return lines
    }

    // MARK: config show

    /// The writable part of an instance as YAML (`config show`), keys sorted.
    public static func configShow(_ instance: Instance) -> String {
        var lines = ["architecture: \(yamlScalar(instance.architecture))"]
        lines += mapping("config", instance.config)
        if instance.devices.isEmpty {
            lines.append("devices: {}")
        } else {
            lines.append("devices:")
            for name in instance.devices.keys.sorted() {
                lines.append("  \(yamlScalar(name)):")
                let device = instance.devices[name]!
                lines += device.keys.sorted().map { "    \(yamlScalar($0)): \(yamlScalar(device[$0]!))" }
            }
        }
        lines.append("ephemeral: \(instance.ephemeral)")
        lines.append(instance.profiles.isEmpty ? "profiles: []" : "profiles:")
        lines += instance.profiles.map { "- \(yamlScalar($0))" }
        lines.append("stateful: \(instance.stateful)")
        lines.append("description: \(yamlScalar(instance.description))")
        return lines.joined(separator: "\n") + "\n"
    }

    static func mapping(_ key: String, _ values: [String: String]) -> [String] {
        guard !values.isEmpty else { return ["\(key): {}"] }
        return ["\(key):"] + values.keys.sorted().map { "  \(yamlScalar($0)): \(yamlScalar(values[$0]!))" }
    }

    /// Quotes a string when plain YAML would read it as something else (empty, a number-like
    /// or boolean-like word, leading/trailing space, or YAML punctuation).
    public static func yamlScalar(_ s: String) -> String {
        let reserved: Set<String> = ["true", "false", "yes", "no", "on", "off", "null", "~", "y", "n"]
        let special: Set<Character> = [":", "#", "{", "}", "[", "]", ",", "&", "*", "!", "|", ">", "'", "\"", "%", "@", "`"]
        let needsQuotes = s.isEmpty
            || reserved.contains(s.lowercased())
            || Double(s) != nil
            || s.first == " " || s.last == " " || s.first == "-" || s.first == "?"
            || s.contains(where: { special.contains($0) || $0 == "\n" || $0 == "\t" })
        guard needsQuotes else { return s }
        var out = "\""
        for c in s {
            switch c {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            default: out.append(c)
            }
        }
        return out + "\""
    }

    // MARK: images

    public static let imageColumns = ["ALIAS", "FINGERPRINT", "ARCHITECTURE", "SIZE", "UPLOAD DATE"]

    public static func imageRows(_ images: [Image]) -> [[String]] {
        images.sorted { ($0.aliases.first?.name ?? "~" + $0.fingerprint) < ($1.aliases.first?.name ?? "~" + $1.fingerprint) }.map { image in
            [
                image.aliases.map(\.name).sorted().joined(separator: ","),
                String(image.fingerprint.prefix(12)),
                image.architecture,
                ByteSize.human(image.size),
                image.uploadedAt,
            ]
        }
    }

    // MARK: operations

    public static let operationColumns = ["ID", "CLASS", "DESCRIPTION", "CREATED", "STATUS", "CANCELABLE", "LOCATION"]

    public static func operationRows(_ operations: [APITypes.Operation]) -> [[String]] {
        operations.map { op in
            [op.id, op.class.uppercased(), op.description, op.createdAt, op.status.uppercased(), op.mayCancel ? "YES" : "NO", op.location]
        }
    }

    public static func operationShow(_ op: APITypes.Operation) -> String {
        var lines = [
            "id: \(yamlScalar(op.id))",
            "class: \(yamlScalar(op.class))",
            "description: \(yamlScalar(op.description))",
            "created_at: \(yamlScalar(op.createdAt))",
            "updated_at: \(yamlScalar(op.updatedAt))",
            "status: \(yamlScalar(op.status))",
            "status_code: \(op.statusCode)",
        ]
        if op.resources.isEmpty {
            lines.append("resources: {}")
        } else {
            lines.append("resources:")
            for key in op.resources.keys.sorted() {
                lines.append("  \(yamlScalar(key)):")
                lines += op.resources[key]!.map { "  - \(yamlScalar($0))" }
            }
        }
        lines.append("metadata: \(op.metadata.map { flowJSON(.object($0)) } ?? "null")")
        lines.append("may_cancel: \(op.mayCancel)")
        lines.append("err: \(yamlScalar(op.err))")
        lines.append("location: \(yamlScalar(op.location))")
        return lines.joined(separator: "\n") + "\n"
    }

    /// Compact JSON (also valid YAML flow style), keys sorted for stable output.
    public static func flowJSON(_ value: JSONValue) -> String {
        switch value {
        case .null: return "null"
        case .bool(let b): return String(b)
        case .int(let i): return String(i)
        case .double(let d): return String(d)
        case .string(let s): return jsonString(s)
        case .array(let a): return "[" + a.map(flowJSON).joined(separator: ",") + "]"
        case .object(let o): return "{" + o.keys.sorted().map { jsonString($0) + ":" + flowJSON(o[$0]!) }.joined(separator: ",") + "}"
        }
    }

    static func jsonString(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
