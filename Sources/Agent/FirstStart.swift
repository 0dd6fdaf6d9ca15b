import APITypes
import Cluster
import ClusterDB
import Foundation
import Gateway
import Identity
import IdentityGenerator
import Logging

/// A member's first start: its local state, and what a preseed asks for (bootstrap or join).
enum FirstStart {
    /// Writes member.json when absent (applying `config.preseed`); returns the member settings the
    /// preseed wants written to the database once it is up, nil otherwise (and on later starts).
    static func prepare(_ config: AgentConfiguration, logger: Logger) async throws -> MemberSettings? {
        let dataDir = config.dataDir
        try claim(dataDirectory: dataDir)
        if let existing = try LocalState.load(from: dataDir) {
            if let preseed = config.preseed {
                // Re-running with the same preseed is fine (make run); a different identity is not silently ignored.
                if let name = preseed.serverName, name != existing.name {
                    throw AgentError.startup("the preseed names this member \(name), but \(dataDir) belongs to member \(existing.name): a preseed applies on the first start only; use another data directory")
                }
                logger.info("preseed not applied: this member was initialised before", metadata: ["member": "\(existing.name)"])
            }
            return nil
        }
        let name = config.preseed?.serverName ?? config.memberName
            ?? ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "member"
        var state = LocalState(name: name, dqliteID: 1, address: config.address, clusterEnabled: config.preseed?.clusterEnabled == true ? true : nil)
        if let join = config.preseed?.join {
            // Joining before the first node ever starts: no single-member database to move aside.
            let identity = try identity(dataDir: dataDir, name: name, httpsHost: config.httpsAddress.flatMap { HostPort.parse($0)?.host },
                                        address: config.address)
            let started = ContinuousClock.now
            let answer: ClusterAcceptResponse
            do {
                answer = try await ClusterController.requestAdmission(token: join.token, name: name, address: config.address,
                                                                      identity: identity, version: Agent.memberVersion,
                                                                      preferredAddress: join.clusterAddress)
            } catch {
                throw ClusterError.cluster("the preseed's join failed: \(error); nothing was kept: issue a new token (lxdctl cluster add \(name)) if this one was used or expired")
            }
            state = ClusterController.joinedState(state, name: name, answer: answer)
            logger.info("joined the cluster from the preseed", metadata: ["member": "\(name)", "dqlite-id": "\(state.dqliteID)",
                                                                          "accept-time": "\(ContinuousClock.now - started)"])
        } else if config.preseed?.clusterEnabled == true {
            logger.info("clustering enabled from the preseed", metadata: ["member": "\(name)"])
        }
        try state.save(to: dataDir)
        return config.preseed?.memberSettings
    }

    /// The agent owns its data directory: like LXD it makes it 0711 on every start, so the mapped
    /// root of an unprivileged container can walk through it to its root filesystem and console
    /// (it can list nothing). `mktemp -d` makes 0700, which would fail every launch. Parents are
    /// not ours to change: the runtime names the first one that still blocks.
    static func claim(dataDirectory dataDir: String) throws {
        guard chmod(dataDir, 0o711) == 0 else {
            let why = String(cString: strerror(errno))
            throw AgentError.startup("cannot make the data directory \(dataDir) 0711: \(why); it must be a directory this agent owns")
        }
    }

    /// The member's TLS identity: made on first start, pinned by clients and peers afterwards.
    static func identity(dataDir: String, name: String, httpsHost: String?, address: String) throws -> TLSIdentity {
        let hosts = Array(Set([httpsHost, HostPort.parse(address)?.host].compactMap { $0 })).sorted()
        return try IdentityGenerator.loadOrCreate(
            certPath: "\(dataDir)/server.crt", keyPath: "\(dataDir)/server.key", commonName: name,
            dnsNames: hosts.filter { IPAddressBytes.parse($0) == nil }, ipAddresses: hosts.filter { IPAddressBytes.parse($0) != nil })
    }
}

extension MemberSettings {
    /// Writes the preseed's failure domain and member config into this member's row.
    func apply(db: ClusterDB, memberID: Int64, logger: Logger) async throws {
        try await db.idempotentTransaction { tx in
            let current = try tx.member(id: memberID)?.config ?? [:]
            try tx.updateMemberConfig(id: memberID, config: current.merging(config) { $1 }, failureDomain: failureDomain)
        }
        logger.info("member settings from the preseed applied", metadata: ["failure-domain": "\(failureDomain ?? "default")", "config": "\(config)"])
    }
}
