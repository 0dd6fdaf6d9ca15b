import APITypes
import Cluster
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
import Synchronization

public struct AgentConfiguration: Sendable {
    public var dataDir: String
    public var memberName: String?
    /// The member's cluster address; also its dqlite address from the first start (DESIGN.md).
    public var address: String
    public var helperPath: String
    /// Where the HTTPS API listens (`host:port`); nil serves the unix socket only.
    public var httpsAddress: String?
    /// Applied on the first start only (FirstStart.swift).
    public var preseed: Preseed?
    /// Host ids for the containers' user namespaces (`--idmap-range`); nil: root's range in
    /// /etc/subuid, else LXD's default. Every member of a cluster must use the same range.
    public var idmapRange: IDMapRange?

    public init(dataDir: String, memberName: String? = nil, address: String = "127.0.0.1:8443", helperPath: String, httpsAddress: String? = nil,
                preseed: Preseed? = nil) {
        self.preseed = preseed
        self.httpsAddress = httpsAddress
        self.dataDir = dataDir
        self.memberName = memberName
        self.address = address
        self.helperPath = helperPath
    }

    /// Sets `idmapRange` from `START:COUNT`; the error says what is wrong with it.
    public mutating func setIDMapRange(_ text: String) throws(IDMapRangeError) {
        idmapRange = try IDMapRange(parsing: text)
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

        var settings = try await FirstStart.prepare(config, logger: baseLogger)
        // Joining a cluster restarts everything above the runtime on the new database.
        while true {
            guard let local = try LocalState.load(from: dataDir) else { throw ClusterError.localState("member.json vanished from \(dataDir)") }
            let marker = LocalState.joinMarkerPath(in: dataDir)
            if FileManager.default.fileExists(atPath: marker) {
                // Joined (maybe just before a crash): the single-member database stays behind, out of the way.
                let aside = "\(dataDir)/database.pre-join-\(Int(Date().timeIntervalSince1970))"
                if FileManager.default.fileExists(atPath: "\(dataDir)/database") {
                    try FileManager.default.moveItem(atPath: "\(dataDir)/database", toPath: aside)
                }
                try FileManager.default.removeItem(atPath: marker)
                baseLogger.info("joined a cluster: old database moved aside", metadata: ["to": "\(aside)"])
            }
            defer { settings = nil }
            guard try await runOnce(config, local: local, settings: settings, logger: baseLogger) else { break }
        }
    }

    /// One life of the agent on one dqlite node; true when it should start again (after a join).
    static func runOnce(_ config: AgentConfiguration, local: LocalState, settings: MemberSettings? = nil, logger baseLogger: Logger) async throws -> Bool {
        let dataDir = config.dataDir
        var logger = baseLogger
        logger[metadataKey: "member"] = "\(local.name)"
        // This member's events hub; its log records become `logging` events while someone watches.
        let events = EventHub(location: local.name)
        logger.handler = EventLogHandler(wrapping: logger.handler, hub: events)

        // The member's TLS identity: made on first start, pinned by clients and peers afterwards.
        let https = try config.httpsAddress.map { text in
            guard let hp = HostPort.parse(text) else {
                throw IdentityError.invalidAddress(text)
            }
            return hp
        }
        let identity = try FirstStart.identity(dataDir: dataDir, name: local.name, httpsHost: https?.host, address: local.address)

        // dqlite peers and SQL clients reach other members through their HTTPS listeners (NOTES-dqlite.md).
        let directory = PeerDirectory(local.peers ?? [])
        let bindAddress = local.dqliteBindAddress(dataDir: dataDir)
        let dialer = MemberLinkDialer(localAddress: local.address, localBindAddress: bindAddress, directory: directory, identity: identity)
        let node = try DqliteNode(
            DqliteNode.Configuration(id: local.dqliteID, address: local.address, dataDir: "\(dataDir)/database",
                                     bindAddress: bindAddress, peerDialer: dialer),
            logger: logger)
        try node.start()
        // Other members first: a node that has just joined knows no leader yet.
        let seeds = (local.peers ?? []).map(\.address).filter { $0 != local.address } + [local.address]
        let pool = DqlitePool(configuration: .init(seeds: seeds, dialer: dialer, leaderTimeout: .seconds(30),
                                                   sessionStatements: ClusterDB.sessionStatements), logger: logger)
        let links = try DatabaseLinkListener.start(https: https, peers: local.peers ?? [], directory: directory, identity: identity,
                                                   bindAddress: bindAddress, logger: logger)
        let db: ClusterDB
        let memberID: Int64
        do {
            // The links listener keeps serving until the full HTTPS listener takes the address over.
            (db, memberID) = try await ClusterDB.openAsMember(name: local.name, address: local.address, apiExtensions: memberVersion.apiExtensions,
                                                              pool: pool, logger: logger)
        } catch {
            await links?.stop()
            throw error
        }
        if let settings { try await settings.apply(db: db, memberID: memberID, logger: logger) }
        let member = MemberIdentity(id: memberID, name: local.name)

        let runtime = try ContainerRuntime(dataDir: dataDir, memberName: local.name, helperPath: config.helperPath, logger: logger)
        // Before adoption: containers of the layout before projects move to <project>_<name>.
        _ = runtime.upgradeLayout()
        let adopted = runtime.adopt()
        logger.info("agent starting", metadata: ["adopted": "\(adopted.count)", "socket": "\(dataDir)/unix.socket"])

        let store = ImageStore(directory: "\(dataDir)/images", logger: logger)
        // An import interrupted by a crash leaves temporary directories; no import runs yet.
        try store.removeLeftovers()
        let operations = OperationRegistry(location: local.name, memberID: memberID, logger: logger, events: events)
        let uploads = "\(dataDir)/uploads"
        let images = ImageService(member: member, db: db, store: store, operations: operations, logger: logger)
        try? FileManager.default.removeItem(atPath: uploads)
        try FileManager.default.createDirectory(atPath: uploads, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])

        let httpsAddresses = config.httpsAddress.map { [$0] } ?? []
        let trust = ClusterTrust(db: db, serverFingerprint: identity.fingerprint, serverAddresses: { httpsAddresses }, logger: logger)
        let restart = RestartSignal()
        let cluster = ClusterController(
            db: db, local: local, dataDir: dataDir, identity: identity, httpsAddress: config.httpsAddress, directory: directory,
            bindAddress: bindAddress, memberVersion: memberVersion, restart: restart, events: events, logger: logger)
        let members = MemberClient(db: db, identity: identity, localMemberID: memberID, localMemberName: local.name,
                                   clustered: { cluster.isClustered }, logger: logger)
        let idmaps = config.idmapRange ?? .fromHost()
        let source = config.idmapRange != nil ? "--idmap-range" : idmaps == IDMapRange.fromHostDefault ? "default (no root entry in /etc/subuid)" : "/etc/subuid"
        logger.info("uid/gid range for containers", metadata: ["range": "\(idmaps)", "isolated-instances": "\(idmaps.instances)", "source": "\(source)"])
        let criu = checkpointer(logger: logger)
        let instances = InstanceService(
            member: member, db: db, runtime: runtime, store: store, operations: operations, idmaps: idmaps,
            checkpointer: criu.checkpointer, dataDir: dataDir, imageFetcher: members, uploadDirectory: uploads,
            materialiser: members, moveTransport: members, logger: logger)

        let evacuation = MemberEvacuation(
            db: db, localMember: local.name, instances: InstanceEvacuationPort(instances: instances, db: db), remote: members,
            operations: operations, logger: logger)
        let routes = APIRoutes(
            instances: instances, images: images, operations: operations,
            serverInfo: { serverInfo(member: local.name, clustered: cluster.isEnabled) }, uploadDirectory: uploads, trust: trust,
            cluster: cluster,
            forwarder: members,
            memberState: evacuation,
            logger: logger)
        let heartbeater = Heartbeater(cluster: cluster, memberID: memberID, logger: logger)
        let reporter = CapacityReporter(placement: instances.placement, dataDir: dataDir, logger: logger)
        let abandoned = AbandonedPlacementSweeper(placement: instances.placement, logger: logger)
        let jobs = [
            // Instances that should run again after a host reboot or agent restart (LXD's rules,
            // InstanceLifecycle.startOnBoot); alongside the API, so clients are served meanwhile.
            // Moves cut by the last agent stop are settled first: a frozen source is continued or
            // removed, a half-made target copy removed, before anything autostarts.
            BackgroundJob("autostart") {
                await instances.lifecycle.settleMoves()
                await instances.lifecycle.startOnBoot()
            },
            BackgroundJob("move watchdog") { await instances.lifecycle.watchIncomingMoves() },
            // Other members plan live moves to here from what this writes (MoveModeRule).
            BackgroundJob("migration capabilities") { [logger] in
                await publishMigrationCapabilities(instances.lifecycle, missingReason: criu.missing, logger: logger)
            },
            BackgroundJob("heartbeats") { await heartbeater.run() },
            BackgroundJob("peer refresh") { await heartbeater.refreshPeers() },
            BackgroundJob("capacity report") { await reporter.run() },
            BackgroundJob("abandoned placement sweep") { await abandoned.run() },
        ]
        // Jobs first: services stop in reverse order, so the jobs stop last.
        var services = jobs.map(\.configuration)
        services.append(.init(service: APIServer.unixSocketService(routes: routes, socketPath: "\(dataDir)/unix.socket", logger: logger)))
        if let https {
            services.append(.init(service: DatabaseLinkHandover(links, then: try APIServer.httpsService(
                routes: routes, identity: identity, host: https.host, port: https.port, logger: logger))))
            logger.info("HTTPS API enabled", metadata: ["address": "\(https.host):\(https.port)", "fingerprint": "\(identity.fingerprint)"])
        }

        // Shut down first (services stop in reverse order): hand leadership over while the
        // listeners still carry the peers' links.
        services.append(.init(service: LeadershipHandover {
            await cluster.handOverLeadership()
        } then: {
            // Stopping the node now ends the peers' database links, which would otherwise keep
            // the listeners' graceful shutdown waiting (members stopping together wait on each other).
            if cluster.isClustered { try? node.stop() }
        }))

        let group = ServiceGroup(
            configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        restart.attach(ServiceGroupHandle { await group.triggerGracefulShutdown() })
        do {
            try await group.run()
        } catch {
            logger.error("agent stopped with an error", metadata: ["error": "\(error)"])
        }
        await members.closeConnections()
        await db.close()
        // Containers keep running; only our own node stops.
        try? node.stop()
        if restart.requested {
            logger.info("agent restarting on its new database")
            return true
        }
        logger.info("agent stopped; containers left running")
        return false
    }

    /// CRIU for stateful stop/start and live moves, when one is installed (scripts/install-criu);
    /// else why not.
    static func checkpointer(logger: Logger) -> (checkpointer: Checkpointer?, missing: String?) {
        do {
            let criu = try CRIU.locate()
            return (Checkpointer(driver: CRIUDriver(criu: criu, runner: SpawnerCommandRunner(), logger: logger), logger: logger), nil)
        } catch {
            logger.notice("stateful stop/start disabled", metadata: ["reason": "\(error)"])
            return (nil, "\(error)")
        }
    }

    /// Probes CRIU and writes the result to this member's row (when it changed), retrying while
    /// the database does not answer: until it is written, other members take this one as a
    /// member of an older build (stop-and-copy only, checked at the prepare).
    static func publishMigrationCapabilities(_ lifecycle: InstanceLifecycle, missingReason: String?, logger: Logger) async {
        let capabilities = await lifecycle.migrationCapabilities(missingReason: missingReason)
        let unavailable = MigrationMode.allCases.compactMap { mode in
            MoveModeRule.unavailability(of: mode, on: capabilities).map { "\(mode): \($0)" }
        }
        var attempt = 0
        while !Task.isCancelled {
            do {
                let changed = try await lifecycle.publishMigrationCapabilities(capabilities)
                logger.info("migration capabilities published", metadata: [
                    "changed": "\(changed)", "criu": "\(capabilities.criu.map { "\($0.version)" } ?? "none")",
                    "unavailable": "\(unavailable.joined(separator: "; "))",
                ])
                return
            } catch {
                attempt += 1
                logger.warning("publishing migration capabilities failed; retrying", metadata: ["error": "\(error)", "attempt": "\(attempt)"])
                try? await Task.sleep(for: .seconds(min(attempt, 10)))
            }
        }
    }

    /// What this API offers beyond LXD's base; members wait for each other to offer the same
    /// (ClusterDB.openAsMember), so append only. LXD's client sends /1.0/containers unless it
    /// sees "instances", and refuses consoles without "console".
    static let apiExtensions = ["instance_create_start", "container_exec_recording", "exec_control_websocket",
                                "instances_create_count", "instances_scheduler_policy", "cluster_member_resources",
                                "console", "instances", "cluster_internal_copy", "api_filtering", "container_full",
                                "clustering", "clustering_join_token", "clustering_evacuation"]

    /// This binary's version as members compare it (schema and API extensions).
    static let memberVersion = MemberVersion(migrations: SchemaMigration.all, apiExtensions: apiExtensions.count)

    static func serverInfo(member: String, clustered: Bool) -> Server {
        var uts = utsname()
        uname(&uts)
        func field<T>(_ v: T) -> String {
            withUnsafeBytes(of: v) { raw in String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self) }
        }
        let machine = field(uts.machine)
        return Server(
            apiExtensions: apiExtensions,
            auth: "trusted", config: [:],
            environment: .init(
                architectures: [machine], driver: "lxd-swift", driverVersion: version,
                kernel: field(uts.sysname), kernelVersion: field(uts.release), kernelArchitecture: machine,
                serverName: member, serverVersion: version, serverClustered: clustered, serverPid: getpid()))
    }
}
