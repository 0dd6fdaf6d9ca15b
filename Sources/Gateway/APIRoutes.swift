import APITypes
import Hummingbird
import Instances
import Logging
import Operations

typealias Context = APIContext

/// Routes of the REST API, one file per resource (ServerRoutes, InstanceRoutes, ImageRoutes,
/// OperationRoutes, EventRoutes, CertificateRoutes, ClusterRoutes, InternalInstanceRoutes).
/// Handlers parse HTTP, call a use case and reply; no business rules here.
public struct APIRoutes: Sendable {
    let lifecycle: any InstanceLifecycleUseCases
    let access: any InstanceAccessUseCases
    let scheduling: any SchedulingUseCases
    let images: any ImageUseCases
    public let operations: OperationRegistry
    public let serverInfo: @Sendable () async -> Server
    public let limits: BodyLimits
    public let uploadDirectory: String
    /// The trust store: /1.0/certificates and the HTTPS listener's client check.
    public let trust: any TrustService
    /// Cluster membership: /1.0/cluster routes and the members-only check.
    public let cluster: any ClusterService
    /// Reaches other members; nil (a single member) forwards nothing.
    public let forwarder: (any MemberForwarder)?
    /// Evacuate and restore (`POST /1.0/cluster/members/NAME/state`); nil answers 501.
    public let memberState: (any MemberStateService)?
    let logger: Logger

    /// The routes over this member's instance and image services.
    public init(instances: InstanceService, images: ImageService, operations: OperationRegistry, serverInfo: @escaping @Sendable () async -> Server, limits: BodyLimits = .init(), uploadDirectory: String, trust: any TrustService, cluster: any ClusterService, forwarder: (any MemberForwarder)? = nil, memberState: (any MemberStateService)? = nil, logger: Logger) {
        self.init(lifecycle: instances.lifecycle, access: instances.access, scheduling: instances.placement, images: images, operations: operations,
                  serverInfo: serverInfo, limits: limits, uploadDirectory: uploadDirectory, trust: trust, cluster: cluster, forwarder: forwarder,
                  memberState: memberState, logger: logger)
    }

    /// The routes over any implementation of the use cases (route tests pass fakes).
    public init(lifecycle: any InstanceLifecycleUseCases, access: any InstanceAccessUseCases, scheduling: any SchedulingUseCases, images: any ImageUseCases,
                operations: OperationRegistry, serverInfo: @escaping @Sendable () async -> Server, limits: BodyLimits = .init(), uploadDirectory: String,
                trust: any TrustService, cluster: any ClusterService, forwarder: (any MemberForwarder)? = nil,
                memberState: (any MemberStateService)? = nil, logger: Logger) {
        self.forwarder = forwarder
        self.memberState = memberState
        self.trust = trust
        self.cluster = cluster
        self.lifecycle = lifecycle
        self.access = access
        self.scheduling = scheduling
        self.images = images
        self.operations = operations
        self.serverInfo = serverInfo
        self.limits = limits
        self.uploadDirectory = uploadDirectory
        self.logger = logger
    }

    /// The routes of one listener, behind the front door that normalises paths and admits callers
    /// per endpoint. `remote` (HTTPS) checks client certificates (read by `peerCertificate`;
    /// route tests present one without TLS); the unix socket is root's.
    func build(remote: Bool = false, peerCertificate: @escaping AccessControl.PeerCertificate = AccessControl.tlsPeerCertificate) -> GuardedRouter {
        let router = Router(context: Context.self)
        router.add(middleware: ErrorReplies())
        // After admission: only callers allowed on the endpoint get forwarded.
        if let forwarder {
            router.add(middleware: ForwardingMiddleware(forwarder: forwarder, instances: lifecycle, bodyLimit: limits.file))
        }
        addServerRoutes(router)
        addSchedulingRoutes(router)
        addInternalInstanceRoutes(router)
        addCertificateRoutes(router, trust)
        addClusterRoutes(router, cluster)
        addEventRoutes(router)
        addInstanceRoutes(router)
        addImageRoutes(router)
        addOperationRoutes(router)
        Self.checkAgainstTable(router)
        let trust = self.trust, cluster = self.cluster
        var isTrusted: (@Sendable (String) async throws -> Bool)? = nil
        if remote { isTrusted = { @Sendable fingerprint in try await trust.isTrusted(fingerprint: fingerprint) } }
        let isMember: @Sendable (String) async -> Bool = { fingerprint in await cluster.isMember(fingerprint: fingerprint) }
        return GuardedRouter(router: router, endpoints: Endpoints.all, access: AccessControl(isTrusted: isTrusted, isMember: isMember, peerCertificate: peerCertificate))
    }

    /// The router serves exactly the endpoint table: a route missing from the table would have
    /// no declared access, and a table entry without a route would be documented but not served.
    static func checkAgainstTable(_ router: Router<Context>) {
        let served = Set(router.routes.map { "\($0.method.rawValue) \($0.path.description)" })
        let table = Set(Endpoints.all.map(\.description))
        precondition(served == table, "the router and Endpoints.all disagree: only routed \(served.subtracting(table).sorted()), only in the table \(table.subtracting(served).sorted())")
    }
}
