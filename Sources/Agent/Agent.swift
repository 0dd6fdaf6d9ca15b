import APITypes
import ClusterDB
import Dqlite
import Foundation
import Gateway
import Identity
import IdentityGenerator
import Images
import Instances
import Logging
import Migration
import Operations
import Runtime
import ServiceLifecycle

public struct AgentConfiguration: Sendable {
    public var dataDir: String
    public var memberName: String?
    /// The member's cluster address; also its dqlite address from the first start (DESIGN.md).
    public var address: String
    public var helperPath: String
    /// Where the HTTPS API listens (`host:port`); nil serves the unix socket only.
    public var httpsAddress: String?

    public init(dataDir: String, memberName: String? = nil, address: String = "127.0.0.1:8443", helperPath: String, httpsAddress: String? = nil) {
        self.httpsAddress = httpsAddress
        self.dataDir = dataDir
        self.memberName = memberName
        self.address = address
        self.helperPath = helperPath
    }
}

/// Startup and shutdown of one member: local state, the dqlite node, ClusterDB, the runtime
/// (re-adopting containers that kept running), the use cases and the API.
public enum Agent {
    public static let version = "0.1.0"

    public static func run(_ config: AgentConfiguration, logger baseLogger: Logger) async throws {
        // A peer or client dying mid-write must not kill the agent (libuv writes without MSG_NOSIGNAL).
        signal(SIGPIPE, SIG_IGN)
        let dataDir = config.dataDir
        try FileManager.default.createDirectory(atPath: dataDir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o711])

        var state = try LocalState.load(from: dataDir)
        if state == nil {
            let name = config.memberName ?? ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "member"
            state = LocalState(name: name, dqliteID: 1, address: config.address)
            try state!.save(to: dataDir)
        }
        let local = state!
        var logger = baseLogger
        logger[metadataKey: "member"] = "\(local.name)"

        let node = try DqliteNode(
            id: local.dqliteID, address: local.address, dataDir: "\(dataDir)/database",
            bindAddress: dqliteBindAddress(dataDir: dataDir), logger: logger)
        try node.start()
        let db = try await ClusterDB.open(node: node, logger: logger)
        let memberID = try await db.transaction { tx in try tx.ensureMember(name: local.name, address: local.address) }
        let member = MemberIdentity(id: memberID, name: local.name)

        let runtime = try ContainerRuntime(dataDir: dataDir, memberName: local.name, helperPath: config.helperPath, logger: logger)
        let adopted = runtime.adopt()
        logger.info("agent starting", metadata: ["adopted": "\(adopted.count)", "socket": "\(dataDir)/unix.socket"])

        let store = ImageStore(directory: "\(dataDir)/images", logger: logger)
        // An import interrupted by a crash leaves temporary directories; no import runs yet.
        try store.removeLeftovers()
        let operations = OperationRegistry(location: local.name, logger: logger)
        let instances = InstanceService(
            member: member, db: db, runtime: runtime, store: store, operations: operations, idmaps: .fromHost(),
            checkpointer: checkpointer(logger: logger), dataDir: dataDir, logger: logger)
        let images = ImageService(member: member, db: db, store: store, operations: operations, logger: logger)
        let uploads = "\(dataDir)/uploads"
        try? FileManager.default.removeItem(atPath: uploads)
        try FileManager.default.createDirectory(atPath: uploads, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])

        // The member's TLS identity: made on first start, pinned by clients and peers afterwards.
        let https = try config.httpsAddress.map { text in
            guard let hp = HostPort.parse(text) else {
                throw IdentityError.invalidAddress(text)
            }
            return hp
        }
        let hosts = Array(Set([https?.host, HostPort.parse(local.address)?.host].compactMap { $0 })).sorted()
        let identity = try IdentityGenerator.loadOrCreate(
            certPath: "\(dataDir)/server.crt", keyPath: "\(dataDir)/server.key", commonName: local.name,
            dnsNames: hosts.filter { IPAddressBytes.parse($0) == nil }, ipAddresses: hosts.filter { IPAddressBytes.parse($0) != nil })
        let httpsAddresses = config.httpsAddress.map { [$0] } ?? []
        let trust = TrustService(db: db, serverFingerprint: identity.fingerprint, serverAddresses: { httpsAddresses }, logger: logger)

        let routes = APIRoutes(
            instances: instances, images: images, operations: operations,
            serverInfo: { serverInfo(member: local.name) }, uploadDirectory: uploads, trust: trust, logger: logger)
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: APIServer.unixSocketService(routes: routes, socketPath: "\(dataDir)/unix.socket", logger: logger)),
        ]
        if let https {
            services.append(.init(service: try APIServer.httpsService(routes: routes, identity: identity, host: https.host, port: https.port, logger: logger)))
            logger.info("HTTPS API enabled", metadata: ["address": "\(https.host):\(https.port)", "fingerprint": "\(identity.fingerprint)"])
        }

        let group = ServiceGroup(
            configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        // Instances that should run again after a host reboot or agent restart (LXD's rules,
        // InstanceService.startOnBoot); alongside the API, so clients are served meanwhile.
        let autostart = Task { await instances.startOnBoot() }
        do {
            try await group.run()
        } catch {
            logger.error("agent stopped with an error", metadata: ["error": "\(error)"])
        }
        autostart.cancel()
        // Containers keep running; only our own node stops.
        try? node.stop()
        logger.info("agent stopped; containers left running")
    }

    /// CRIU for stateful stop/start, when one is installed (scripts/install-criu).
    static func checkpointer(logger: Logger) -> Checkpointer? {
        do {
            let criu = try CRIU.locate()
            return Checkpointer(driver: CRIUDriver(criu: criu, runner: SpawnerCommandRunner(), logger: logger), logger: logger)
        } catch {
            logger.notice("stateful stop/start disabled", metadata: ["reason": "\(error)"])
            return nil
        }
    }

    static func serverInfo(member: String) -> Server {
        var uts = utsname()
        uname(&uts)
        func field<T>(_ v: T) -> String {
            withUnsafeBytes(of: v) { raw in String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self) }
        }
        let machine = field(uts.machine)
        return Server(
            apiExtensions: ["instance_create_start", "container_exec_recording", "exec_control_websocket"],
            auth: "trusted", config: [:],
            environment: .init(
                architectures: [machine], driver: "lxd-swift", driverVersion: version,
                kernel: field(uts.sysname), kernelVersion: field(uts.release), kernelArchitecture: machine,
                serverName: member, serverVersion: version, serverClustered: false, serverPid: getpid()))
    }
}
