/// The table of instance config keys this server understands: how each is validated,
/// whether it applies to a running instance, and who may set it.
public struct ConfigKey: Sendable {
    public enum Scope: Sendable {
        /// Users may set it.
        case user
        /// Only the server sets it (`volatile.*`, `image.*`); users get an error.
        case server
    }

    public let name: String
    public let scope: Scope
    /// True when a change applies to a running instance without a restart.
    public let liveUpdatable: Bool
    let validate: @Sendable (String) throws -> Void
}

public enum InstanceConfigError: Error, CustomStringConvertible, Equatable {
    case unknownKey(String)
    case serverOnly(String)
    case invalidValue(key: String, reason: String)
    case notLiveUpdatable(String)

    public var description: String {
        switch self {
        case .unknownKey(let k): "Unknown configuration key: \(k)"
        case .serverOnly(let k): "Configuration key \(k) is set by the server and cannot be changed"
        case .invalidValue(let k, let r): "Invalid value for configuration key \(k): \(r)"
        case .notLiveUpdatable(let k): "Configuration key \(k) cannot be changed while the instance is running: stop it first"
        }
    }
}

public enum InstanceConfigSchema {
    static let boolValues: Set<String> = ["true", "false", "1", "0", "yes", "no", "on", "off"]

    static func bool(_ v: String) throws {
        guard boolValues.contains(v.lowercased()) else {
            throw InstanceConfigError.invalidValue(key: "", reason: "\"\(v)\" is not a boolean (true or false)")
        }
    }

    static let keys: [String: ConfigKey] = {
        let list: [ConfigKey] = [
            ConfigKey(name: "limits.memory", scope: .user, liveUpdatable: true) { _ = try Quantity.bytes($0) },
            ConfigKey(name: "limits.cpu", scope: .user, liveUpdatable: true) { _ = try Quantity.cpu($0) },
            ConfigKey(name: "limits.processes", scope: .user, liveUpdatable: true) { _ = try Quantity.positiveInteger($0) },
            ConfigKey(name: "security.privileged", scope: .user, liveUpdatable: false, validate: bool),
            ConfigKey(name: "boot.autostart", scope: .user, liveUpdatable: true, validate: bool),
            // A placement group's name (`lxdctl placement-group create`); checked when the instance is placed.
            ConfigKey(name: "placement.group", scope: .user, liveUpdatable: false) { v in
                do { try InstanceName.validate(v) } catch {
                    throw InstanceConfigError.invalidValue(key: "", reason: "\"\(v)\" is not a placement group name (letters, digits, hyphens)")
                }
            },
            // What `lxdctl cluster evacuate` does with the instance (LXD's key and values).
            ConfigKey(name: "cluster.evacuate", scope: .user, liveUpdatable: true) { v in
                guard ["auto", "live-migrate", "migrate", "stop"].contains(v) else {
                    throw InstanceConfigError.invalidValue(key: "", reason: "\"\(v)\" is not an evacuation mode: use auto, live-migrate, migrate or stop")
                }
            },
            // The member an evacuation moved the instance from, or stopped it on; `cluster restore` reads it.
            ConfigKey(name: "volatile.evacuate.origin", scope: .server, liveUpdatable: true) { _ in },
            ConfigKey(name: "volatile.base_image", scope: .server, liveUpdatable: true) { _ in },
            ConfigKey(name: "volatile.idmap.base", scope: .server, liveUpdatable: true) { _ in },
            ConfigKey(name: "volatile.last_state.power", scope: .server, liveUpdatable: true) { _ in },
            // Image templates still to render at the next start: "create" or "copy" (LXD's key).
            ConfigKey(name: "volatile.apply_template", scope: .server, liveUpdatable: true) { _ in },
        ]
        return Dictionary(uniqueKeysWithValues: list.map { ($0.name, $0) })
    }()

    /// Free-form namespaces: `user.*` (anything), `environment.*` (passed to init and exec), `image.*` (server).
    static func prefixKey(_ name: String) -> ConfigKey? {
        if name.hasPrefix("user."), name.count > 5 {
            return ConfigKey(name: name, scope: .user, liveUpdatable: true) { _ in }
        }
        if name.hasPrefix("environment."), name.count > 12 {
            return ConfigKey(name: name, scope: .user, liveUpdatable: false) { _ in }
        }
        if name.hasPrefix("image."), name.count > 6 {
            return ConfigKey(name: name, scope: .server, liveUpdatable: true) { _ in }
        }
        return nil
    }

    public static func key(_ name: String) -> ConfigKey? { keys[name] ?? prefixKey(name) }

    /// Validates a user-supplied config. `previous` is the instance's current config (server keys
    /// already present there may be passed back unchanged, as `lxc config edit` does).
    public static func validate(user config: [String: String], previous: [String: String] = [:], running: Bool = false) throws(InstanceConfigError) {
        for name in config.keys.sorted() {
            let value = config[name]!
            guard let key = key(name) else { throw .unknownKey(name) }
            if key.scope == .server {
                if previous[name] == value { continue }
                throw .serverOnly(name)
            }
            do {
                try key.validate(value)
            } catch let e as Quantity.Error {
                throw .invalidValue(key: name, reason: e.description)
            } catch let e as InstanceConfigError {
                if case .invalidValue(_, let reason) = e { throw .invalidValue(key: name, reason: reason) }
                throw e
            } catch {
                throw .invalidValue(key: name, reason: "\(error)")
            }
            if running, !key.liveUpdatable, previous[name] != value { throw .notLiveUpdatable(name) }
        }
        if running {
            for name in previous.keys where config[name] == nil {
                if let key = key(name), key.scope == .user, !key.liveUpdatable { throw .notLiveUpdatable(name) }
            }
        }
    }

    public static func isTrue(_ v: String?) -> Bool {
        guard let v = v?.lowercased() else { return false }
        return v == "true" || v == "1" || v == "yes" || v == "on"
    }
}

/// The resource limits an instance's config asks for, parsed once.
public struct ResourceLimits: Equatable, Sendable {
    public var memoryBytes: Int64?
    public var cpu: Quantity.CPU?
    public var processes: Int64?

    public init(memoryBytes: Int64? = nil, cpu: Quantity.CPU? = nil, processes: Int64? = nil) {
        self.memoryBytes = memoryBytes
        self.cpu = cpu
        self.processes = processes
    }

    /// From a config already validated by `InstanceConfigSchema.validate`.
    public init(config: [String: String]) {
        memoryBytes = config["limits.memory"].flatMap { try? Quantity.bytes($0) }
        cpu = config["limits.cpu"].flatMap { try? Quantity.cpu($0) }
        processes = config["limits.processes"].flatMap { try? Quantity.positiveInteger($0) }
    }
}
