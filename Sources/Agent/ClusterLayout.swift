import Cluster
import Identity
import Yams

/// A description of a whole cluster on one host (`cluster-configs/three-members.yaml`): the
/// members `make run` starts, in order (the first bootstraps, the others join). Parsed strictly,
/// like a preseed; `lxdd cluster layout FILE` prints it for scripts/run-local.
///
/// ```yaml
/// members:
///   - server_name: m1
///     https_address: 127.0.0.1:8443
///     data_dir: m1            # under $LXD_SWIFT_ROOT (scripts/run-local)
///     failure_domain: rack1   # optional
/// ```
public struct ClusterLayout: Equatable, Sendable {
    public struct Member: Equatable, Sendable {
        public var serverName: String
        public var httpsAddress: String
        public var dataDir: String
        public var failureDomain: String?
    }

    public var members: [Member]

    public static func load(path: String) throws -> ClusterLayout {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            var refusal = PreseedError(file: path, key: nil, message: "cannot read the file: \(error.localizedDescription)")
            refusal.kind = "cluster layout"
            throw refusal
        }
        do {
            return try parse(text)
        } catch var error as PreseedError {
            error.file = path
            error.kind = "cluster layout"
            throw error
        }
    }

    public static func parse(_ text: String) throws -> ClusterLayout {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            throw PreseedError(key: nil, message: "not valid YAML: \(error)")
        }
        guard let top = root?.mapping else { throw PreseedError(key: nil, message: "must be a mapping with a members list") }
        for (k, _) in top where k.string != "members" {
            throw PreseedError(key: k.string ?? "?", message: "is not a known key (known here: members)")
        }
        guard let list = top["members"]?.sequence, !list.isEmpty else {
            throw PreseedError(key: "members", message: "must be a non-empty list of members")
        }
        var members: [Member] = []
        for (i, node) in list.enumerated() {
            let path = "members[\(i)]"
            guard let m = node.mapping else { throw PreseedError(key: path, message: "must be a mapping") }
            let known: Set<String> = ["server_name", "https_address", "data_dir", "failure_domain"]
            for (k, _) in m where !known.contains(k.string ?? "") {
                throw PreseedError(key: "\(path).\(k.string ?? "?")", message: "is not a known key (known here: \(known.sorted().joined(separator: ", ")))")
            }
            func text(_ key: String, required: Bool = true) throws -> String? {
                guard let v = m[key] else {
                    if required { throw PreseedError(key: "\(path).\(key)", message: "is required") }
                    return nil
                }
                guard let s = v.scalar?.string, !s.isEmpty else { throw PreseedError(key: "\(path).\(key)", message: "must be non-empty text") }
                return s
            }
            let name = try text("server_name")!
            do {
                try ClusterController.validateMemberName(name)
            } catch {
                throw PreseedError(key: "\(path).server_name", message: "\"\(name)\" is not a valid member name")
            }
            let address = try text("https_address")!
            guard address.contains(":"), HostPort.parse(address) != nil else {
                throw PreseedError(key: "\(path).https_address", message: "\"\(address)\" is not a host:port address")
            }
            let dir = try text("data_dir", required: false) ?? name
            guard !dir.hasPrefix("/"), !dir.split(separator: "/").contains(".."), !dir.contains(where: \.isWhitespace) else {
                throw PreseedError(key: "\(path).data_dir", message: "\"\(dir)\" must be a relative path under $LXD_SWIFT_ROOT without .. or spaces")
            }
            let domain = try text("failure_domain", required: false)
            if members.contains(where: { $0.serverName == name }) { throw PreseedError(key: "\(path).server_name", message: "\(name) is listed twice") }
            if members.contains(where: { $0.httpsAddress == address }) { throw PreseedError(key: "\(path).https_address", message: "\(address) is used twice") }
            if members.contains(where: { $0.dataDir == dir }) { throw PreseedError(key: "\(path).data_dir", message: "\(dir) is used twice") }
            members.append(Member(serverName: name, httpsAddress: address, dataDir: dir, failureDomain: domain))
        }
        return ClusterLayout(members: members)
    }
}
