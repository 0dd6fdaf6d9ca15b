import APITypes
import ArgumentParser
#if canImport(FoundationEssentials)
import FoundationEssentials  // not Foundation: it adds ~10 ms of ICU loading to every lxdctl run
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import Identity
import LXDClient

/// lxdctl's own state: the client identity and the known remotes, in `$LXDCTL_CONF`
/// (default `~/.config/lxdctl`): client.crt, client.key (0600) and config.json.
struct ClientConfig: Codable, Equatable {
    struct Remote: Codable, Equatable {
        var addresses: [String]
        /// The server certificate's SHA-256, pinned when the remote was added.
        var fingerprint: String
        /// The other cluster members' certificates, learned over the pinned connection when the
        /// remote was added (each member has its own); nil for a single server.
        var memberFingerprints: [String]? = nil

        enum CodingKeys: String, CodingKey {
            case addresses, fingerprint
            case memberFingerprints = "member_fingerprints"
        }
    }

    /// "local" is the unix socket; it is always there and cannot be removed.
    static let local = "local"

    var defaultRemote: String = ClientConfig.local
    var remotes: [String: Remote] = [:]

    enum CodingKeys: String, CodingKey {
        case defaultRemote = "default_remote"
        case remotes
    }

    static func directory(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let dir = environment["LXDCTL_CONF"], !dir.isEmpty { return dir }
        return (environment["HOME"] ?? "/root") + "/.config/lxdctl"
    }

    static func load(from dir: String) throws -> ClientConfig {
        guard let data = FileManager.default.contents(atPath: "\(dir)/config.json") else { return ClientConfig() }
        do {
            return try JSONDecoder().decode(ClientConfig.self, from: data)
        } catch {
            throw CLIError("\(dir)/config.json is not a valid lxdctl config (\(error)); fix or remove it")
        }
    }

    func save(to dir: String) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try encoder.encode(self)
        let tmp = "\(dir)/config.json.tmp"
        guard FileManager.default.createFile(atPath: tmp, contents: data), rename(tmp, "\(dir)/config.json") == 0 else {
            throw CLIError("cannot write \(dir)/config.json: \(String(cString: strerror(errno)))")
        }
    }

    /// Splits `REMOTE:NAME` (or `REMOTE:`) when REMOTE is known; a name without a colon is on
    /// the default remote. Instance names never contain a colon, so anything else is a mistake.
    func split(_ reference: String) throws -> (remote: String, name: String) {
        guard let colon = reference.firstIndex(of: ":") else { return (defaultRemote, reference) }
        let remote = String(reference[..<colon])
        guard remote == Self.local || remotes[remote] != nil else {
            throw CLIError("unknown remote \"\(remote)\": see lxdctl remote list")
        }
        return (remote, String(reference[reference.index(after: colon)...]))
    }
}

/// The client's TLS identity, made on first use by `lxd-keygen` (installed next to lxdctl):
/// generating needs swift-crypto, which would make every lxdctl start load full Foundation.
enum ClientIdentity {
    static func loadOrCreate(in dir: String) throws -> TLSIdentity {
        let cert = "\(dir)/client.crt", key = "\(dir)/client.key"
        let fm = FileManager.default
        if !fm.fileExists(atPath: cert) && !fm.fileExists(atPath: key) {
            try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try runKeygen(cert: cert, key: key, commonName: "lxdctl@" + ProcessInfo.processInfo.hostName)
        }
        do {
            return try TLSIdentity.load(certPath: cert, keyPath: key)
        } catch let error as IdentityError {
            throw CLIError("client certificate: \(error)")
        }
    }

    static func runKeygen(cert: String, key: String, commonName: String) throws {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let tool = String(exe[..<(exe.lastIndex(of: "/") ?? exe.startIndex)]) + "/lxd-keygen"
        let argv = [tool, cert, key, commonName]
        var cArgs = argv.map { strdup($0) } + [nil]
        defer { for p in cArgs { free(p) } }
        var devnull = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&devnull)
        defer { posix_spawn_file_actions_destroy(&devnull) }
        // Its stdout (the fingerprint) is not ours to print; stderr carries its errors.
        posix_spawn_file_actions_addopen(&devnull, 1, "/dev/null", O_WRONLY, 0)
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, tool, &devnull, nil, &cArgs, environ)
        guard rc == 0 else {
            throw CLIError("cannot run \(tool) to make the client certificate: \(String(cString: strerror(rc))); install lxd-keygen next to lxdctl")
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        guard status == 0 else { throw CLIError("\(tool) failed to make the client certificate in \(cert) (status \(status))") }
    }
}

extension ConnectionOptions {
    /// A client of `remote`: the unix socket for "local", HTTPS with our identity otherwise.
    func client(remote: String) throws -> LXDClient {
        if remote == ClientConfig.local { return LXDClient.unixSocket(socket ?? Self.rootSocket ?? LXDClient.defaultSocketPath()) }
        let dir = ClientConfig.directory()
        let config = try ClientConfig.load(from: dir)
        guard let r = config.remotes[remote] else { throw CLIError("unknown remote \"\(remote)\": see lxdctl remote list") }
        return try LXDClient.https(addresses: r.addresses, serverFingerprint: r.fingerprint, otherFingerprints: r.memberFingerprints ?? [],
                                   identity: try ClientIdentity.loadOrCreate(in: dir))
    }

    /// The client and the bare instance name for `REMOTE:NAME`. An explicit --socket means local.
    func target(_ reference: String) throws -> (client: LXDClient, name: String) {
        if socket != nil || Self.rootSocket != nil {
            return (client, reference.hasPrefix("local:") ? String(reference.dropFirst(6)) : reference)
        }
        let (remote, name) = try ClientConfig.load(from: ClientConfig.directory()).split(reference)
        return (try client(remote: remote), name)
    }
}

struct RemoteCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "remote", abstract: "Manage remote servers (HTTPS with mutual TLS).",
        subcommands: [Add.self, ListRemotes.self, Remove.self, Switch.self])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add a remote with a trust token from `lxdctl config trust add` on the server.")
        @Argument(help: "Remote name.") var name: String
        @Argument(help: "Address host:port, or several separated by commas (default: the token's addresses).") var addresses: String?
        @Option(name: .long, help: "Trust token printed by `lxdctl config trust add` on the server.") var token: String

        func run() async throws {
            guard !name.isEmpty, !name.contains(":"), name != ClientConfig.local else {
                throw CLIError("invalid remote name \"\(name)\": no colon, and \"local\" is reserved")
            }
            let dir = ClientConfig.directory()
            var config = try ClientConfig.load(from: dir)
            guard config.remotes[name] == nil else { throw CLIError("remote \"\(name)\" already exists; remove it first") }
            let parsed: TrustToken
            do {
                parsed = try TrustToken.decode(token)
            } catch let error as TrustTokenError {
                throw CLIError(error.description)
            }
            let list = addresses.map { $0.split(separator: ",").map { String($0.filter { $0 != " " }) }.filter { !$0.isEmpty } } ?? parsed.addresses
            guard !list.isEmpty else { throw CLIError("no address: pass one (host:port), the token has none") }
            let identity = try ClientIdentity.loadOrCreate(in: dir)
            let client = try LXDClient.https(addresses: list, serverFingerprint: parsed.fingerprint, identity: identity)
            // The GET pins the server (TLS handshake against the token's fingerprint) before the
            // secret is sent: a wrong server never sees it.
            var check = try await client.get(Server.self, "/1.0")
            if check.auth != "trusted" {
                try await client.addPresentedCertificate(name: parsed.clientName, trustToken: parsed.secret)
                check = try await client.get(Server.self, "/1.0")
                guard check.auth == "trusted" else { throw CLIError("the server accepted the token but still does not trust this client") }
            }
            // A cluster: every member's address and certificate, so requests spread over the
            // members and fail over when one is down (learned over the pinned connection).
            var all = list
            var others: [String]? = nil
            if check.environment.serverClustered, let members = try? await client.clusterMembers() {
                for m in members {
                    let address = m.url.hasPrefix("https://") ? String(m.url.dropFirst("https://".count)) : m.url
                    if !address.isEmpty, !all.contains(address) { all.append(address) }
                }
                others = members.map(\.fingerprint).filter { !$0.isEmpty && $0.lowercased() != parsed.fingerprint.lowercased() }
            }
            config.remotes[name] = .init(addresses: all, fingerprint: parsed.fingerprint, memberFingerprints: others)
            try config.save(to: dir)
            Output.stdout("Remote \(name) added (\(all.joined(separator: ",")), fingerprint \(parsed.fingerprint.prefix(12)))\n")
        }
    }

    struct ListRemotes: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "List remotes.")
        @Option(name: [.customShort("f"), .long], help: "Output format: table, csv or json.") var format: OutputFormat = .table

        func run() async throws {
            let config = try ClientConfig.load(from: ClientConfig.directory())
            var rows = [[ClientConfig.local + (config.defaultRemote == ClientConfig.local ? " (current)" : ""), "unix://", ""]]
            for (name, r) in config.remotes.sorted(by: { $0.key < $1.key }) {
                rows.append([name + (config.defaultRemote == name ? " (current)" : ""), r.addresses.joined(separator: ","), String(r.fingerprint.prefix(12))])
            }
            try Output.listing(format, headers: ["NAME", "ADDRESSES", "FINGERPRINT"], rows: rows, json: config.remotes)
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Forget a remote.")
        @Argument(help: "Remote name.") var name: String

        func run() async throws {
            let dir = ClientConfig.directory()
            var config = try ClientConfig.load(from: dir)
            guard config.remotes.removeValue(forKey: name) != nil else { throw CLIError("unknown remote \"\(name)\": see lxdctl remote list") }
            if config.defaultRemote == name { config.defaultRemote = ClientConfig.local }
            try config.save(to: dir)
        }
    }

    struct Switch: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Make a remote the default for names without a REMOTE: prefix.")
        @Argument(help: "Remote name (local for the unix socket).") var name: String

        func run() async throws {
            let dir = ClientConfig.directory()
            var config = try ClientConfig.load(from: dir)
            guard name == ClientConfig.local || config.remotes[name] != nil else { throw CLIError("unknown remote \"\(name)\": see lxdctl remote list") }
            config.defaultRemote = name
            try config.save(to: dir)
        }
    }
}

/// `lxdctl config trust ...`: the server's trust store.
struct TrustCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trust", abstract: "Manage trusted client certificates.",
        subcommands: [AddToken.self, ListTrust.self, RemoveTrust.self, AddCertificate.self])

    struct AddToken: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "add", abstract: "Print a single-use trust token for a new client.")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Client name ([REMOTE:]NAME).") var name: String
        @Option(name: .long, help: "Token lifetime in seconds (default: no expiry).") var expiry: Int?

        func run() async throws {
            let (client, name) = try connection.target(self.name)
            let expiresAt = expiry.map { Date().addingTimeInterval(TimeInterval($0)) }
            let token = try await client.createTrustToken(name: name, expiresAt: expiresAt)
            Output.stdout("Client \(name) certificate add token:\n\(token)\n")
        }
    }

    struct AddCertificate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "add-certificate", abstract: "Trust a certificate file (PEM).")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Certificate file.") var path: String
        @Option(name: .long, help: "Name (default: the fingerprint's start).") var name: String?

        func run() async throws {
            guard let data = FileManager.default.contents(atPath: path) else { throw CLIError("cannot read \(path)") }
            let pem = String(decoding: data, as: UTF8.self)
            let fingerprint: String
            do { fingerprint = try Fingerprint.of(certificate: pem) } catch { throw CLIError("\(path): \(error)") }
            try await connection.client.addCertificate(pem, name: name ?? String(fingerprint.prefix(12)))
        }
    }

    struct ListTrust: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "List trusted certificates.")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Remote (REMOTE:).") var remote: String?
        @Option(name: [.customShort("f"), .long], help: "Output format: table, csv or json.") var format: OutputFormat = .table

        func run() async throws {
            let client = try remote.map { try connection.target($0).client } ?? connection.client
            let certificates = try await client.certificates()
            try Output.listing(format, headers: ["NAME", "TYPE", "FINGERPRINT"],
                               rows: certificates.map { [$0.name, $0.type, String($0.fingerprint.prefix(12))] }, json: certificates)
        }
    }

    struct RemoveTrust: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "remove", abstract: "Stop trusting a certificate.")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Fingerprint or a unique prefix of it ([REMOTE:]FP).") var fingerprint: String

        func run() async throws {
            let (client, fp) = try connection.target(fingerprint)
            try await client.deleteCertificate(fp)
        }
    }
}
