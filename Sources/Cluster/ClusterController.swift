import APITypes
import ClusterDB
import Dqlite
import Foundation
import Identity
import Instances
import InstanceConfig
import LXDClient
import Logging
import Membership
import Operations
import Synchronization

/// Lets the join use case ask the agent to restart itself (new dqlite node, new database).
public final class RestartSignal: Sendable {
    public init() {}

    private let state = Mutex<(group: ServiceGroupHandle?, requested: Bool)>((nil, false))

    public func attach(_ group: ServiceGroupHandle) { state.withLock { $0.group = group } }
    public var requested: Bool { state.withLock { $0.requested } }

    public func request() async {
        let group = state.withLock { s -> ServiceGroupHandle? in
            s.requested = true
            return s.group
        }
        await group?.shutdown()
    }
}

public struct ServiceGroupHandle: Sendable {
    let shutdown: @Sendable () async -> Void

    public init(shutdown: @escaping @Sendable () async -> Void) { self.shutdown = shutdown }
}

/// A removal or admission in progress (`ClusterController.membershipOperation`); `end` is idempotent.
final class MembershipOperation: Sendable {
    private let onEnd: Mutex<(@Sendable () -> Void)?>

    init(_ onEnd: @escaping @Sendable () -> Void) { self.onEnd = Mutex(onEnd) }

    func end() {
        let run = onEnd.withLock { f in defer { f = nil }; return f }
        run?()
    }
}

/// Membership use cases: join tokens, admitting and joining, listing, removal, role balance.
/// Gateway's cluster routes reach them through their `ClusterService` port, which the agent
/// conforms this to.
public final class ClusterController: Sendable {
    let db: ClusterDB
    let local: LocalState
    let dataDir: String
    let identity: TLSIdentity
    let httpsAddress: String?
    let directory: PeerDirectory
    let bindAddress: String
    let restart: RestartSignal
    /// This binary's schema and API extensions: a joining member must run the same.
    let memberVersion: MemberVersion
    let logger: Logger
    /// Where member-added/removed lifecycle events are published (nil: nowhere).
    let events: EventHub?
    private let joining = Mutex(false)
    /// Clustering enabled (`cluster enable`, a bootstrap preseed, or a join): kept in member.json.
    private let enabledFlag: Mutex<Bool>

    public init(db: ClusterDB, local: LocalState, dataDir: String, identity: TLSIdentity, httpsAddress: String?, directory: PeerDirectory,
                bindAddress: String, memberVersion: MemberVersion, restart: RestartSignal, events: EventHub? = nil, logger: Logger) {
        self.memberVersion = memberVersion
        self.events = events
        self.db = db
        self.local = local
        self.dataDir = dataDir
        self.identity = identity
        self.httpsAddress = httpsAddress
        self.directory = directory
        self.bindAddress = bindAddress
        self.restart = restart
        self.logger = logger
        enabledFlag = Mutex(local.clusterEnabled ?? false)
    }

    public var isClustered: Bool { directory.all.count > 1 }
    /// Enabled on this member, or part of a cluster of several (members joined before the flag existed).
    public var isEnabled: Bool { enabledFlag.withLock { $0 } || isClustered }

    public func info() async throws -> ClusterInfo {
        ClusterInfo(serverName: local.name, enabled: isEnabled)
    }

    // MARK: Listing

    public func members() async throws -> [ClusterMemberInfo] {
        let (rows, peers) = try await db.transaction { tx in (try tx.members(), try tx.memberPeers()) }
        let configuration: DatabaseConfiguration
        do {
            configuration = try await db.databaseConfiguration()
        } catch {
            logger.warning("dqlite CLUSTER failed; roles unknown", metadata: ["error": "\(error)"])
            configuration = DatabaseConfiguration(servers: [], leader: nil)
        }
        let servers = configuration.servers, leader = configuration.leader ?? 0
        return rows.map { row in
            let role = servers.first { $0.id == UInt64(row.id) }?.role
            var roles: [String] = role == .voter ? ["database"] : role == .standby ? ["database-standby"] : []
            if leader == UInt64(row.id) { roles.append("database-leader") }
            return ClusterMemberInfo(
                serverName: row.name, url: "https://\(row.address)", database: role.map(Self.roleName) ?? "",
                status: row.state, message: Self.statusMessage(row.state),
                failureDomain: row.failureDomain, fingerprint: peers.first { $0.id == row.id }?.fingerprint ?? "",
                config: row.config, roles: roles, migration: MemberMigrationView.describe(row, among: rows))
        }
    }

    static func statusMessage(_ state: MemberStatus) -> String {
        switch state {
        case .online: "Fully operational"
        case .offline: "No heartbeat answered for \(OfflineDetector.defaultThreshold)"
        case .evacuated, .unknown: state.name
        }
    }

    static func roleName(_ role: DqliteRole) -> String {
        switch role {
        case .voter: "voter"
        case .standby: "stand-by"
        case .spare: "spare"
        }
    }

    // MARK: Issuing tokens

    /// Clustering needs HTTPS, and the HTTPS address must be the dqlite address (DESIGN "Addresses").
    private func requireClusterAddress() throws -> String {
        guard let https = httpsAddress else {
            throw ClusterUseCaseError.invalid("Clustering needs the HTTPS API: restart lxdd with --https-address HOST:PORT")
        }
        guard https == local.address else {
            throw ClusterUseCaseError.invalid("This member's cluster address \(local.address) is not its HTTPS address \(https): start it with a fresh data directory and --https-address only (the cluster address follows it)")
        }
        return https
    }

    public static func validateMemberName(_ name: String) throws {
        do { try MemberName.validate(name) } catch { throw ClusterUseCaseError.invalid(error.description) }
    }

    // MARK: Enabling

    /// Makes this member the first of a cluster, named `serverName`. Enabling is a flag and a name
    /// only: the dqlite address has been the HTTPS address since the first start (DESIGN "Addresses").
    /// A rename restarts the agent (the name is in the runtime's cgroup paths, operation locations, logs).
    public func enable(serverName: String) async throws {
        try Self.validateMemberName(serverName)
        if isEnabled {
            guard serverName == local.name else {
                throw ClusterUseCaseError.conflict("Clustering is already enabled on this member, as \"\(local.name)\": it cannot be renamed now")
            }
            return
        }
        _ = try requireClusterAddress()
        let oldName = local.name
        if serverName != oldName {
            try await db.transaction { tx in
                guard let row = try tx.member(name: oldName) else {
                    throw ClusterUseCaseError.internal("This member's row \"\(oldName)\" is missing from the database: restart lxdd")
                }
                // Containers live in cgroups named after the member: renaming under them would orphan them.
                let owned = try tx.instances(memberID: row.id)
                guard owned.isEmpty else {
                    throw ClusterUseCaseError.invalid("Cannot rename member \"\(oldName)\" to \"\(serverName)\" while it has instances: run `lxdctl cluster enable \(oldName)` to keep its name, or delete its instances first")
                }
                if try tx.member(name: serverName) != nil {
                    throw ClusterUseCaseError.conflict("A member named \"\(serverName)\" already exists")
                }
                try tx.renameMember(id: row.id, from: oldName, to: serverName)
            }
        }
        // Members are recognised by this certificate, found under the member's name.
        try await db.transaction { tx in try trustOwnCertificate(as: serverName, tx) }
        var state = try LocalState.load(from: dataDir) ?? local
        state.name = serverName
        state.clusterEnabled = true
        try state.save(to: dataDir)
        enabledFlag.withLock { $0 = true }
        logger.info("clustering enabled", metadata: ["server-name": "\(serverName)"])
        if serverName != oldName {
            logger.info("member renamed; restarting under its new name", metadata: ["from": "\(oldName)"])
            let restart = self.restart
            Task {
                // Let the answer reach the client first.
                try? await Task.sleep(for: .milliseconds(100))
                await restart.request()
            }
        }
    }

    /// Adds this member's own server certificate to the trust store under `name`, once.
    private func trustOwnCertificate(as name: String, _ tx: Transaction) throws {
        guard try tx.trustedCertificate(fingerprint: identity.fingerprint) == nil else { return }
        try tx.addTrustedCertificate(TrustedCertificate(fingerprint: identity.fingerprint, name: name, type: .server, certificate: identity.certificatePEM))
    }

    public func issueJoinToken(name: String) async throws -> IssuedJoinToken {
        _ = try requireClusterAddress()
        try Self.validateMemberName(name)
        // Unlike LXD, `cluster add` on a member that is not clustered yet enables clustering under
        // its current name: that changes nothing but a flag here (docs/clustering.md).
        if !isEnabled { try await enable(serverName: local.name) }
        let addresses = try await db.transaction { tx -> [String] in
            if try tx.member(name: name) != nil { throw ClusterUseCaseError.conflict("A member named \"\(name)\" already exists") }
            // Joining members pin this certificate (clusters enabled before enable() trusted it lack it).
            try trustOwnCertificate(as: local.name, tx)
            return try tx.members().map(\.address)
        }
        var rng = SystemRandomNumberGenerator()
        let ordered = [local.address] + addresses.filter { $0 != local.address }
        let token: JoinToken
        do {
            token = try JoinToken.issue(name: name, fingerprint: identity.fingerprint, addresses: ordered,
                                        now: Int64(Date().timeIntervalSince1970), using: &rng)
        } catch {
            throw ClusterUseCaseError.invalid("Cannot issue a join token: \(error)")
        }
        try await db.transaction { tx in
            try tx.addJoinToken(PendingJoinToken(name: name, secretSHA256: TrustToken.secretDigest(token.secret),
                                                 expiresAt: Date(timeIntervalSince1970: Double(token.expiresAt))))
        }
        try await refreshPeers()
        logger.info("join token issued", metadata: ["for": "\(name)"])
        return IssuedJoinToken(serverName: token.name, fingerprint: token.fingerprint, addresses: token.addresses,
                               secret: token.secret, expiresAt: token.expiresAt, encoded: token.encoded())
    }

    // MARK: Admitting (existing member)

    public func accept(_ request: ClusterAcceptRequest, presentedCertificate: [UInt8]) async throws -> ClusterAcceptResponse {
        _ = try requireClusterAddress()
        guard (try? CertificateText.der(from: request.certificate)) == presentedCertificate else {
            throw ClusterUseCaseError.forbidden("not authorized")
        }
        guard HostPort.parse(request.address) != nil else {
            throw ClusterUseCaseError.invalid("Invalid member address \"\(request.address)\": use host:port")
        }
        let fingerprint = Fingerprint.sha256(der: presentedCertificate)
        let name = request.serverName
        if let schema = request.schemaVersion, let extensions = request.apiExtensions {
            let joining = MemberVersion(schema: schema, apiExtensions: extensions)
            guard joining == memberVersion else {
                throw ClusterUseCaseError.conflict("Member \(name) runs lxdd with \(joining), this member \(memberVersion): install the same lxdd version on both, then join again (the token stays valid)")
            }
        }
        // The role balance stands aside while the newcomer is added (see `membershipOperation`).
        let operation = membershipOperation()
        defer { operation.end() }
        let memberID: Int64
        do {
            // Token, member row and certificate in one transaction: all or nothing.
            memberID = try await db.transaction { tx in
                _ = try tx.takeJoinToken(secretSHA256: TrustToken.secretDigest(request.secret), name: name, now: Date())
                let members = try tx.members()
                if members.contains(where: { $0.name == name }) { throw ClusterUseCaseError.conflict("A member named \"\(name)\" already exists") }
                if let other = members.first(where: { $0.address == request.address }) {
                    throw ClusterUseCaseError.conflict("Address \(request.address) is already used by member \"\(other.name)\"")
                }
                let id = try tx.insertMember(name: name, address: request.address)
                try tx.addTrustedCertificate(TrustedCertificate(fingerprint: fingerprint, name: name, type: .server,
                                                                certificate: CertificateText.pem(der: presentedCertificate)))
                return id
            }
        } catch let rejection as JoinTokenRejection {
            logger.notice("join refused", metadata: ["member": "\(name)", "reason": "\(rejection)"])
            throw ClusterUseCaseError.forbidden("not authorized")
        } catch ClusterDBError.alreadyExists(let what) {
            throw ClusterUseCaseError.conflict("Cannot admit \(name): \(what) already exists")
        }
        do {
            // A spare first: it neither votes nor replicates until the role balance promotes it.
            // Another membership change (a promotion, a removal) may be running: wait it out.
            let address = request.address
            try await waitingOutMembershipChange("admit \(name)") { [db] in try await db.addDatabaseNode(id: UInt64(memberID), address: address) }
        } catch {
            try? await db.transaction { tx in
                try? tx.deleteTrustedCertificate(fingerprint: fingerprint)
                _ = try tx.deleteMember(id: memberID)
            }
            // Still busy after the wait: 503, so the joiner knows a retry may work.
            let kind = (error as? any KindedError)?.kind ?? .internal
            throw ClusterUseCaseError(kind, "Adding \(name) to the database cluster failed: \(error); nothing was kept: issue a new token and join again")
        }
        let peers = try await refreshPeers()
        events?.lifecycle(.clusterMemberAdded, source: "/1.0/cluster/members/\(name)", name: name)
        logger.info("member admitted", metadata: ["joined": "\(name)", "address": "\(request.address)", "dqlite-id": "\(memberID)"])
        return ClusterAcceptResponse(dqliteID: UInt64(memberID), members: peers.map { p in
            ClusterPeerInfo(name: p.name, address: p.address, fingerprint: p.fingerprint, dqliteID: UInt64(p.id))
        })
    }

    /// Reloads the member list into the peer directory (and member.json when it changed).
    @discardableResult
    func refreshPeers() async throws -> [MemberPeer] {
        let peers = try await db.transaction { tx in try tx.memberPeers() }
        let locals = peers.map { LocalPeer(name: $0.name, address: $0.address, fingerprint: $0.fingerprint) }
        if directory.replace(locals) {
            var state = try LocalState.load(from: dataDir) ?? local
            state.peers = locals.count > 1 ? locals : nil
            try state.save(to: dataDir)
        }
        return peers
    }

    // MARK: Joining (new member)

    public func join(token text: String, serverName: String?) async throws {
        let address = try requireClusterAddress()
        let name = serverName ?? local.name
        try Self.validateMemberName(name)
        guard joining.withLock({ busy in defer { busy = true }; return !busy }) else {
            throw ClusterUseCaseError.conflict("A join is already in progress on this member")
        }
        var keepLock = false
        defer { if !keepLock { joining.withLock { $0 = false } } }
        guard !isEnabled, local.dqliteID == 1 else {
            throw ClusterUseCaseError.conflict("Member \(local.name) is already part of a cluster (clustering is enabled on it): only a fresh member can join")
        }
        let used = try await db.transaction { tx in try tx.holdsInstancesOrImages() }
        guard !used else {
            throw ClusterUseCaseError.invalid("Member \(local.name) has instances or images: only an empty member can join a cluster (its database is replaced)")
        }
        let started = ContinuousClock.now
        let answer = try await Self.requestAdmission(token: text, name: name, address: address, identity: identity, version: memberVersion)

        // Restart on the cluster: the next start runs a node with the new id (not bootstrapping)
        // and moves the single-member database aside (Agent.run).
        let state = Self.joinedState(local, name: name, answer: answer)
        // Marker first: whichever start comes next (restart below, or after a crash) moves the old database aside.
        guard FileManager.default.createFile(atPath: LocalState.joinMarkerPath(in: dataDir), contents: nil) else {
            throw ClusterUseCaseError.internal("Joined, but cannot write \(LocalState.joinMarkerPath(in: dataDir)): move \(dataDir)/database aside and restart lxdd")
        }
        try state.save(to: dataDir)
        keepLock = true
        logger.info("joined; restarting on the cluster", metadata: ["dqlite-id": "\(answer.dqliteID)", "accept-time": "\(ContinuousClock.now - started)"])
        let restart = self.restart
        Task {
            // Let the answer reach the client first.
            try? await Task.sleep(for: .milliseconds(100))
            await restart.request()
        }
    }

    /// Asks a member named in `token` to admit this one as `name` at `address`. The connector checks
    /// the token's fingerprint during the TLS handshake, before the secret is sent.
    public static func requestAdmission(token text: String, name: String, address: String, identity: TLSIdentity, version: MemberVersion,
                                        preferredAddress: String? = nil) async throws -> ClusterAcceptResponse {
        let token: JoinToken
        do {
            token = try JoinToken.decode(text)
            try token.check(forName: name, now: Int64(Date().timeIntervalSince1970))
        } catch {
            throw ClusterUseCaseError.invalid("\(error)")
        }
        let addresses = preferredAddress.map { p in [p] + token.addresses.filter { $0 != p } } ?? token.addresses
        // In order: the token names first the member whose certificate it pins.
        let client = LXDClient(transport: HTTPChannelTransport(connector: try TLSConnector(
            addresses: addresses, serverFingerprint: token.fingerprint, identity: identity, inOrder: true)))
        do {
            let answer = try await client.call(.POST, "/internal/cluster/accept", json: ClusterAcceptRequest(
                serverName: name, address: address, certificate: identity.certificatePEM, secret: token.secret,
                schemaVersion: version.schema, apiExtensions: version.apiExtensions), as: ClusterAcceptResponse.self)
            await client.transport.shutdown()
            return answer
        } catch let error as TransportError {
            await client.transport.shutdown()
            throw ClusterUseCaseError.unavailable("Cannot reach the cluster: \(error)")
        } catch {
            await client.transport.shutdown()
            throw error
        }
    }

    /// Local state after an accepted join: the new dqlite id, the members, clustering enabled.
    public static func joinedState(_ local: LocalState, name: String, answer: ClusterAcceptResponse) -> LocalState {
        var state = local
        state.name = name
        state.dqliteID = answer.dqliteID
        state.peers = answer.members.map { LocalPeer(name: $0.name, address: $0.address, fingerprint: $0.fingerprint) }
        state.clusterEnabled = true
        return state
    }

    // MARK: Member settings

    public func updateMember(name: String, _ put: ClusterMemberPut) async throws {
        // PUT replaces: the new settings do not depend on the stored ones, so they are checked first.
        let settings = try Self.memberSettings(put, over: nil)
        try await writeMemberSettings(name) { _ in settings }
    }

    /// `PATCH`: only the fields sent change; config keys are merged into the stored ones, in the
    /// same transaction that writes them, so two patches never undo each other's keys.
    public func patchMember(name: String, _ patch: ClusterMemberPut) async throws {
        try await writeMemberSettings(name) { row in try Self.memberSettings(patch, over: row) }
    }

    /// `GET /1.0/cluster/members/NAME`.
    public func member(named name: String) async throws -> ClusterMemberInfo {
        guard let member = try await members().first(where: { $0.serverName == name }) else {
            throw ClusterUseCaseError.notFound("Cluster member \"\(name)\" not found: see lxdctl cluster list")
        }
        return member
    }

    private func writeMemberSettings(_ name: String,
                                     _ settings: @escaping @Sendable (MemberRow) throws -> (config: [String: String], domain: String)) async throws {
        let domain = try await db.transaction { tx in
            guard let row = try tx.member(name: name) else {
                throw ClusterUseCaseError.notFound("Cluster member \"\(name)\" not found: see lxdctl cluster list")
            }
            let next = try settings(row)
            try tx.updateMemberConfig(id: row.id, config: next.config, failureDomain: next.domain)
            return next.domain
        }
        logger.info("member settings updated", metadata: ["target": "\(name)", "failure-domain": "\(domain)"])
        // The planner prefers distinct failure domains: let it look again now.
        rebalanceInBackground()
    }

    /// The config and failure domain `put` asks for, over `current` when it is a patch; checked
    /// against MemberConfigSchema.
    static func memberSettings(_ put: ClusterMemberPut, over current: MemberRow?) throws -> (config: [String: String], domain: String) {
        if let d = put.description, !d.isEmpty {
            throw ClusterUseCaseError.invalid("Member descriptions are not stored: send an empty description (use a user.* config key for notes)")
        }
        if let g = put.groups, !(g.isEmpty || g == ["default"]) {
            throw ClusterUseCaseError.invalid("The groups field is not supported: set scheduler.groups in the member's config instead")
        }
        var config = put.config ?? [:]
        var domain = put.failureDomain
        if let current {
            config = current.config.merging(config) { $1 }
            domain = domain ?? current.failureDomain
        }
        let chosen = domain.flatMap { $0.isEmpty ? nil : $0 } ?? "default"
        do {
            try MemberConfigSchema.validate(config)
            try MemberConfigSchema.validateFailureDomain(chosen)
        } catch {
            throw ClusterUseCaseError.invalid("\(error) (member config keys: \(MemberConfigSchema.knownKeys.joined(separator: ", ")), user.*)")
        }
        return (config, chosen)
    }

    // MARK: Removal

    /// Removes member `name`. Without `force` a member that owns instances is refused; with it, an
    /// OFFLINE member is removed together with its instances' rows (should it ever come back, its
    /// containers are not managed any more), as LXD's `cluster remove --force`.
    public func remove(name: String, force: Bool) async throws {
        // The role balance stands aside until the removal is done (see `membershipOperation`).
        let operation = membershipOperation()
        defer { operation.end() }
        let rows = try await db.transaction { tx in try tx.members() }
        guard let target = rows.first(where: { $0.name == name }) else {
            throw ClusterUseCaseError.notFound("Cluster member \"\(name)\" not found: see lxdctl cluster list")
        }
        guard target.name != local.name else {
            throw ClusterUseCaseError.invalid("A member cannot remove itself: run cluster remove on another member")
        }
        if force, target.state != .offline {
            throw ClusterUseCaseError.invalid("Member \(name) is \(target.state): --force removes only an OFFLINE member; move or delete its instances and remove it without --force")
        }
        let configuration = try await db.databaseConfiguration()
        let servers = configuration.servers, leader = configuration.leader ?? 0
        // A member already gone from the database configuration (after a quorum-loss recovery) has no role to check.
        let inDatabase = servers.contains(where: { $0.id == UInt64(target.id) })
        if inDatabase {
            let members = Self.plannerView(servers: servers, rows: rows)
            if case .refused(let reason) = RolePlanner.canRemove(UInt64(target.id), members: members, leader: leader) {
                throw ClusterUseCaseError.invalid("Cannot remove \(name): \(reason)")
            }
        }
        if !force {
            let owned = try await db.transaction { tx in try tx.instances(memberID: target.id).map(\.name) }
            guard owned.isEmpty else {
                throw ClusterUseCaseError.invalid("Member \(name) still owns instances (\(owned.sorted().joined(separator: ", "))): move or delete them first, or, if it is gone for good, run cluster remove \(name) --force")
            }
        }
        if inDatabase {
            try await removeFromDatabase(id: UInt64(target.id), name: name)
        }
        let dropped: Int64
        do {
            dropped = try await db.transaction { tx in
                let dropped = force ? try tx.deleteInstances(memberID: target.id) : 0
                if let c = try tx.trustedCertificates().first(where: { $0.name == name && $0.type == .server }) {
                    try tx.deleteTrustedCertificate(fingerprint: c.fingerprint)
                }
                _ = try tx.deleteMember(id: target.id)
                return dropped
            }
        } catch let error as DqliteError where error.isConstraintViolation {
            throw ClusterUseCaseError.invalid("Member \(name) left the database cluster but still owns instances: delete or move them, then remove it again (or use --force if it is gone for good)")
        }
        try await refreshPeers()
        operation.end()
        try? await rebalance()
        events?.lifecycle(.clusterMemberRemoved, source: "/1.0/cluster/members/\(name)", name: name)
        logger.info("member removed", metadata: ["removed": "\(name)", "forced": "\(force)", "instance-rows-dropped": "\(dropped)"])
    }

    /// Raft's REMOVE, waiting out another membership change (a role change from a rebalance, or
    /// the promotion of a member that died while catching up).
    private func removeFromDatabase(id: UInt64, name: String) async throws {
        try await waitingOutMembershipChange("remove \(name)") { [db] in try await db.removeDatabaseNode(id: id) }
    }

    /// Runs one raft membership change (ADD, REMOVE) through the leader. Raft takes one at a time
    /// and refuses another while one is in progress: then this retries for up to
    /// `membershipChangeWait` instead of failing at once. `what` completes "Cannot ... yet".
    /// (Handing leadership over to end a stuck promotion was tried and left the cluster without a
    /// leader once in four runs: not done.)
    private func waitingOutMembershipChange(_ what: String, _ change: @Sendable () async throws -> Void) async throws {
        let started = ContinuousClock.now
        while true {
            do {
                try await change()
                return
            } catch let error as DqliteError where error.isMembershipChangeInProgress {
                guard ContinuousClock.now - started < Self.membershipChangeWait else {
                    throw ClusterUseCaseError.unavailable("Cannot \(what) yet: another database membership change has been running for \(Self.membershipChangeWait); retry in a minute, and see the leader's log if it persists")
                }
                logger.debug("membership change waits for another one", metadata: ["waiting": "\(what)"])
                try await Task.sleep(for: .milliseconds(200))
            }
        }
    }

    static let membershipChangeWait: Duration = .seconds(15)

    // MARK: Roles

    static func plannerView(servers: [DqliteServerInfo], rows: [MemberRow], unresponsive: Set<UInt64> = []) -> [ClusterMember] {
        servers.map { s in
            let row = rows.first { UInt64($0.id) == s.id }
            return ClusterMember(id: s.id, name: row?.name ?? "", role: MemberRole(rawValue: UInt8(s.role.rawValue)) ?? .spare,
                                 online: row.map { $0.state != .offline } ?? false, failureDomain: row?.failureDomain ?? "default",
                                 responsive: !unresponsive.contains(s.id))
        }
    }

    /// Members whose latest heartbeat from this member (as leader) went unanswered; the heartbeat
    /// loop keeps it current, and the role planner does not promote them.
    let unresponsive = Mutex<Set<UInt64>>([])

    private let rebalancing = Mutex(false)
    /// Removals and admissions running on this member: the role balance stands aside meanwhile,
    /// so raft's one-change-at-a-time slot is theirs (a forced removal of a dead member must not
    /// queue behind role changes).
    private let membershipOperations = Mutex(0)
    private let roleBackoff = Mutex(RoleChangeBackoff())
    private let backoffOrigin = ContinuousClock.now

    /// Marks a removal or admission as running until the returned operation ends.
    func membershipOperation() -> MembershipOperation {
        membershipOperations.withLock { $0 += 1 }
        return MembershipOperation { [self] in membershipOperations.withLock { $0 -= 1 } }
    }

    var membershipOperationRunning: Bool { membershipOperations.withLock { $0 > 0 } }

    /// Starts a `rebalance` unless one is still running.
    func rebalanceInBackground() {
        guard !membershipOperationRunning else { return }
        guard rebalancing.withLock({ busy in defer { busy = true }; return !busy }) else { return }
        Task {
            defer { rebalancing.withLock { $0 = false } }
            do {
                try await rebalance()
            } catch {
                logger.debug("role rebalance failed", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Runs the role planner on dqlite's configuration and applies its changes (through the
    /// leader), one at a time, standing aside for a removal or admission that starts meanwhile.
    /// A change raft refuses is not tried again before its backoff ends (`RoleChangeBackoff`).
    func rebalance() async throws {
        guard !membershipOperationRunning else { return }
        let rows = try await db.transaction { tx in try tx.members() }
        let configuration = try await db.databaseConfiguration()
        let servers = configuration.servers, leader = configuration.leader ?? 0
        guard leader != 0 else { return }
        let plan = RolePlanner.plan(members: Self.plannerView(servers: servers, rows: rows, unresponsive: unresponsive.withLock { $0 }),
                                    leader: leader)
        roleBackoff.withLock { $0.keepOnly(plan.changes) }
        for change in plan.changes {
            guard let role = DqliteRole(rawValue: UInt64(change.to.rawValue)) else { continue }
            guard !membershipOperationRunning else {
                logger.debug("role rebalance stands aside for a membership change", metadata: ["next": "\(change)"])
                return
            }
            let now = ContinuousClock.now - backoffOrigin
            if let at = roleBackoff.withLock({ $0.retryAt(change, now: now) }) {
                logger.debug("role change waits after a refusal", metadata: ["change": "\(change)", "in": "\(at - now)"])
                return
            }
            logger.info("database role change", metadata: ["change": "\(change)"])
            do {
                try await db.assignDatabaseRole(id: change.id, role: role)
            } catch {
                let delay = roleBackoff.withLock { $0.refused(change, now: ContinuousClock.now - backoffOrigin) }
                logger.notice("database role change refused; not tried again for \(delay)", metadata: ["change": "\(change)", "error": "\(error)"])
                throw error
            }
            roleBackoff.withLock { $0.succeeded(change) }
        }
        if let blocked = plan.blocked { logger.notice("role balance blocked", metadata: ["reason": "\(blocked)"]) }
    }

    /// When the leader's last heartbeat arrived: a successor judges the silent old leader from then.
    let lastLeaderHeartbeat = Mutex<ContinuousClock.Instant?>(nil)

    public func receiveHeartbeat(_ heartbeat: ClusterHeartbeat) async throws {
        lastLeaderHeartbeat.withLock { $0 = .now }
        let peers = heartbeat.members.map { LocalPeer(name: $0.name, address: $0.address, fingerprint: $0.fingerprint) }
        // A list without this member is stale (or this member was removed): keep ours.
        guard peers.contains(where: { $0.address == local.address }), directory.replace(peers) else { return }
        var state = try LocalState.load(from: dataDir) ?? local
        state.peers = peers.count > 1 ? peers : nil
        try state.save(to: dataDir)
    }

    private let lastOnDemandRefresh = Mutex<ContinuousClock.Instant?>(nil)

    public func isMember(fingerprint: String) async -> Bool {
        if directory.contains(fingerprint: fingerprint) { return true }
        // A member admitted by another member a moment ago: look again, but at most every
        // 250 ms, so unknown certificates can't make every connection cost a database read.
        let now = ContinuousClock.now
        let due = lastOnDemandRefresh.withLock { last in
            guard last.map({ now - $0 >= .milliseconds(250) }) ?? true else { return false }
            last = now
            return true
        }
        guard due, (try? await refreshPeers()) != nil else { return false }
        return directory.contains(fingerprint: fingerprint)
    }

    public func servePeer(_ stream: any PeerStream) async {
        await DqlitePeerService.serve(stream, bindAddress: bindAddress, logger: logger)
    }
}
