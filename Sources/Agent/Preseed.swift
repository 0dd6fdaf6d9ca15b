import Cluster
import Foundation
import Identity
import InstanceConfig
import Membership
import Yams

/// A preseed file (`lxdd --preseed FILE`), LXD's shape restricted to what a member needs on its
/// first start: its HTTPS (= cluster) address, its name, and either bootstrapping a cluster or
/// joining one with a token. Parsing is pure and strict: an unknown key, a wrong type or a bad
/// address is refused with the key's path, before anything is created.
///
/// ```yaml
/// config:
///   core.https_address: 127.0.0.2:8443
/// cluster:
///   server_name: m2
///   enabled: true
///   failure_domain: rack2            # optional
///   member_config:                   # optional: member config keys (MemberConfigSchema)
///     user.note: second member
///   cluster_token: <from `lxdctl cluster add m2`>      # join; absent = bootstrap
///   cluster_address: 127.0.0.1:8443                    # join, optional: member to ask first
///   cluster_certificate_fingerprint: <sha256 hex>      # join, optional: must match the token's
/// ```
public struct Preseed: Equatable, Sendable {
    public var httpsAddress: String?
    public var serverName: String?
    public var clusterEnabled = false
    public var failureDomain: String?
    public var memberConfig: [String: String] = [:]
    public var join: Join?

    public struct Join: Equatable, Sendable {
        public var token: String
        public var clusterAddress: String?
    }

    /// The member's settings to write into its database row once the database is up.
    var memberSettings: MemberSettings? {
        guard failureDomain != nil || !memberConfig.isEmpty else { return nil }
        return MemberSettings(config: memberConfig, failureDomain: failureDomain)
    }

    public static func load(path: String) throws -> Preseed {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw PreseedError(file: path, key: nil, message: "cannot read the file: \(error.localizedDescription)")
        }
        do {
            return try parse(text)
        } catch var error as PreseedError {
            error.file = path
            throw error
        }
    }

    public static func parse(_ text: String) throws -> Preseed {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            throw PreseedError(key: nil, message: "not valid YAML: \(error)")
        }
        guard let root else { throw PreseedError(key: nil, message: "the file is empty") }
        let top = try YAMLFields(root, path: "")
        try top.allow(["config", "cluster"])
        var preseed = Preseed()

        if let config = try top.mapping("config") {
            try config.allow(["core.https_address"])
            preseed.httpsAddress = try config.address("core.https_address")
        }
        guard let cluster = try top.mapping("cluster") else { return preseed }
        try cluster.allow(["server_name", "enabled", "server_address", "cluster_address", "cluster_token",
                           "cluster_certificate_fingerprint", "failure_domain", "member_config"])
        preseed.clusterEnabled = try cluster.bool("enabled") ?? false
        guard preseed.clusterEnabled else {
            throw PreseedError(key: "cluster.enabled", message: "must be true in a cluster section (leave the section out for a member that is not clustered)")
        }
        guard let name = try cluster.string("server_name") else {
            throw PreseedError(key: "cluster.server_name", message: "is required: the member's name in the cluster")
        }
        do {
            try ClusterController.validateMemberName(name)
        } catch {
            throw PreseedError(key: "cluster.server_name", message: "\"\(name)\" is not a valid member name: use 1-63 characters without spaces, slashes, commas or colons")
        }
        preseed.serverName = name
        if let serverAddress = try cluster.address("server_address") {
            if let https = preseed.httpsAddress, https != serverAddress {
                throw PreseedError(key: "cluster.server_address", message: "\(serverAddress) differs from config.core.https_address \(https): the cluster address is the HTTPS address")
            }
            preseed.httpsAddress = serverAddress
        }
        guard preseed.httpsAddress != nil else {
            throw PreseedError(key: "config.core.https_address", message: "is required to enable clustering (members talk over HTTPS)")
        }
        if let domain = try cluster.string("failure_domain") {
            do {
                try MemberConfigSchema.validateFailureDomain(domain)
            } catch {
                throw PreseedError(key: "cluster.failure_domain", message: "\(error)")
            }
            preseed.failureDomain = domain
        }
        if let config = try cluster.mapping("member_config") {
            let values = try config.stringMap()
            do {
                try MemberConfigSchema.validate(values)
            } catch {
                throw PreseedError(key: "cluster.member_config", message: "\(error)")
            }
            preseed.memberConfig = values
        }

        let clusterAddress = try cluster.address("cluster_address")
        let fingerprint = try cluster.string("cluster_certificate_fingerprint")
        guard let tokenText = try cluster.string("cluster_token") else {
            if clusterAddress != nil || fingerprint != nil {
                throw PreseedError(key: "cluster.cluster_token", message: "is required to join (cluster_address and cluster_certificate_fingerprint only help find and check the cluster)")
            }
            return preseed
        }
        let token: JoinToken
        do {
            token = try JoinToken.decode(tokenText)
        } catch {
            throw PreseedError(key: "cluster.cluster_token", message: "\(error): paste the whole token `lxdctl cluster add \(name)` printed")
        }
        guard token.name == name else {
            throw PreseedError(key: "cluster.cluster_token", message: "was issued for member \"\(token.name)\", not \"\(name)\": issue one with `lxdctl cluster add \(name)`")
        }
        if let fingerprint, fingerprint.lowercased() != token.fingerprint.lowercased() {
            throw PreseedError(key: "cluster.cluster_certificate_fingerprint", message: "does not match the token's cluster certificate: the token comes from another cluster")
        }
        preseed.join = Join(token: tokenText, clusterAddress: clusterAddress)
        return preseed
    }
}

/// A preseed's member settings, applied to the member's row on its first start.
struct MemberSettings: Sendable, Equatable {
    var config: [String: String]
    var failureDomain: String?
}

public struct PreseedError: Error, CustomStringConvertible, Equatable {
    /// What the file is, for the message: "preseed" or "cluster layout".
    public var kind = "preseed"
    public var file: String?
    /// Dotted path of the offending key (`cluster.enabled`); nil for the whole file.
    public var key: String?
    public var message: String

    init(file: String? = nil, key: String?, message: String) {
        self.file = file
        self.key = key
        self.message = message
    }

    public var description: String {
        let place = file.map { "\(kind) \($0)" } ?? kind
        return key.map { "\(place): \($0) \(message)" } ?? "\(place): \(message)"
    }
}

/// Typed access to a YAML mapping that names every key it complains about.
private struct YAMLFields {
    let path: String
    let pairs: [(key: String, value: Node)]

    init(_ node: Node, path: String) throws {
        self.path = path
        guard let mapping = node.mapping else {
            throw PreseedError(key: path.isEmpty ? nil : path, message: path.isEmpty ? "must be a mapping of sections (config, cluster)" : "must be a mapping")
        }
        var pairs: [(String, Node)] = []
        for (k, v) in mapping {
            guard let key = k.scalar?.string else { throw PreseedError(key: path.isEmpty ? nil : path, message: "has a key that is not text") }
            if pairs.contains(where: { $0.0 == key }) { throw PreseedError(key: Self.full(key, path), message: "appears twice") }
            pairs.append((key, v))
        }
        self.pairs = pairs
    }

    func allow(_ keys: Set<String>) throws {
        if let unknown = pairs.first(where: { !keys.contains($0.key) }) {
            throw PreseedError(key: full(unknown.key, path), message: "is not a known key (known here: \(keys.sorted().joined(separator: ", ")))")
        }
    }

    func value(_ key: String) -> Node? {
        guard let v = pairs.first(where: { $0.key == key })?.value else { return nil }
        // `key:` with nothing after it is null: treat as absent.
        if v.null != nil { return nil }
        return v
    }

    func mapping(_ key: String) throws -> YAMLFields? {
        guard let v = value(key) else { return nil }
        return try YAMLFields(v, path: full(key, path))
    }

    func string(_ key: String) throws -> String? {
        guard let v = value(key) else { return nil }
        guard let s = v.scalar else { throw PreseedError(key: full(key, path), message: "must be text, not a list or mapping") }
        return s.string
    }

    func bool(_ key: String) throws -> Bool? {
        guard let v = value(key) else { return nil }
        guard let b = v.bool else { throw PreseedError(key: full(key, path), message: "must be true or false, not \"\(v.scalar?.string ?? "a list or mapping")\"") }
        return b
    }

    /// A `host:port` address (the port is required: it is stored as the member's cluster address).
    func address(_ key: String) throws -> String? {
        guard let text = try string(key) else { return nil }
        guard text.contains(":"), let hp = HostPort.parse(text), !hp.host.contains(where: \.isWhitespace) else {
            throw PreseedError(key: full(key, path), message: "\"\(text)\" is not a host:port address (e.g. 127.0.0.1:8443)")
        }
        return text
    }

    func stringMap() throws -> [String: String] {
        var out: [String: String] = [:]
        for (k, v) in pairs {
            guard let s = v.scalar else { throw PreseedError(key: full(k, path), message: "must be text, not a list or mapping") }
            out[k] = s.string
        }
        return out
    }

    private static func full(_ key: String, _ path: String) -> String { path.isEmpty ? key : "\(path).\(key)" }
    private func full(_ key: String, _ path: String) -> String { Self.full(key, path) }
}

extension AgentConfiguration {
    /// Takes the preseed's name and HTTPS address; flags that contradict it are refused rather
    /// than silently overridden. `addressFlag` is lxdd's --address, if given.
    public mutating func apply(_ preseed: Preseed, addressFlag: String?) throws {
        if let https = preseed.httpsAddress {
            if let flag = httpsAddress, flag != https {
                throw PreseedError(key: "config.core.https_address", message: "\(https) differs from --https-address \(flag): give one of them")
            }
            httpsAddress = https
        }
        if let name = preseed.serverName {
            if let flag = memberName, flag != name {
                throw PreseedError(key: "cluster.server_name", message: "\(name) differs from --name \(flag): give one of them")
            }
            memberName = name
        }
        if preseed.clusterEnabled, let flag = addressFlag, let https = httpsAddress, flag != https {
            throw PreseedError(key: "cluster.server_address", message: "the cluster address is the HTTPS address \(https): drop --address \(flag)")
        }
        address = addressFlag ?? httpsAddress ?? address
        self.preseed = preseed
    }
}
