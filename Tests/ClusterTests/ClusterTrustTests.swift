import APITypes
@testable import Cluster
import ClusterDB
import DatabaseTestSupport
import Dqlite
import Foundation
import Identity
import IdentityGenerator
import Logging
import Synchronization
import Testing

/// The trust use cases over a real single-node dqlite database (in-process, no root).
final class TrustHarness: Sendable {
    let database: InProcessDatabase
    let trust: ClusterTrust
    var db: ClusterDB { database.db }

    init() async throws {
        database = try await InProcessDatabase(label: "cluster")
        trust = ClusterTrust(db: database.db, serverFingerprint: String(repeating: "ab", count: 32), serverAddresses: { ["127.0.0.1:8443"] },
                             logger: Logger(label: "test.trust"))
    }

    func shutdown() async { await database.close() }

    /// Runs `body` on a fresh harness and shuts it down whatever happens.
    static func with(_ body: (TrustHarness) async throws -> Void) async throws {
        let h = try await TrustHarness()
        do { try await body(h) } catch { await h.shutdown(); throw error }
        await h.shutdown()
    }
}

/// The kind of failure an operation reports, or nil when it succeeds.
func kind(_ body: () async throws -> Void) async -> ErrorKind? {
    do { try await body(); return nil } catch let e as ClusterUseCaseError { return e.kind } catch {
        Issue.record("expected a ClusterUseCaseError, got \(error)")
        return nil
    }
}

@Suite struct ClusterTrustTests {
    /// Stands in for a client certificate: trust stores DER bytes and their SHA-256.
    let der: [UInt8] = Array("a client certificate".utf8)

    @Test func aTrustTokenAddsThePresentedCertificateOnce() async throws {
        try await TrustHarness.with { h in
            let token = try await h.trust.createToken(name: "laptop", expiresAt: nil)
            let fingerprint = try await h.trust.add(presented: der, trustToken: token.encoded(), name: nil)
            #expect(fingerprint == Fingerprint.sha256(der: der))
            #expect(try await h.trust.isTrusted(fingerprint: fingerprint))
            #expect(try await h.trust.get(String(fingerprint.prefix(8))).name == "laptop")
            let other: [UInt8] = Array("another certificate".utf8)
            #expect(await kind { _ = try await h.trust.add(presented: other, trustToken: token.encoded(), name: nil) } == .forbidden)
            #expect(try await !h.trust.isTrusted(fingerprint: Fingerprint.sha256(der: other)))
        }
    }

    @Test func anUnknownSecretIsRefusedLikeAUsedOne() async throws {
        try await TrustHarness.with { h in
            #expect(await kind { _ = try await h.trust.add(presented: der, trustToken: "not-a-secret", name: "x") } == .forbidden)
            let trusted = try await h.trust.list()
            #expect(trusted.isEmpty)
        }
    }

    @Test func aMembersServerCertificateCannotBeDeletedOrAdded() async throws {
        try await TrustHarness.with { h in
            let server = TrustedCertificate(fingerprint: String(repeating: "cd", count: 32), name: "m2", type: .server,
                                            certificate: CertificateText.pem(der: Array("m2".utf8)))
            try await h.db.transaction { tx in try tx.addTrustedCertificate(server) }
            #expect(await kind { try await h.trust.delete("cdcd") } == .invalid)
            #expect(try await h.trust.isTrusted(fingerprint: server.fingerprint))
            let pem = CertificateText.pem(der: der)
            #expect(await kind { _ = try await h.trust.add(certificate: pem, name: "m3", type: "server") } == .invalid)
        }
    }

    @Test func aClientCertificateAddedByAnAdminCanBeDeleted() async throws {
        try await TrustHarness.with { h in
            // An admin's add parses the certificate: it must be a real one.
            let pem = try IdentityGenerator.generate(commonName: "laptop").certificatePEM
            #expect(await kind { _ = try await h.trust.add(certificate: CertificateText.pem(der: der), name: nil, type: nil) } == .invalid)
            let fingerprint = try await h.trust.add(certificate: pem, name: nil, type: nil)
            #expect(try await h.trust.get(fingerprint).name == String(fingerprint.prefix(12)))
            #expect(await kind { _ = try await h.trust.add(certificate: pem, name: nil, type: nil) } == .conflict)
            try await h.trust.delete(fingerprint)
            #expect(try await !h.trust.isTrusted(fingerprint: fingerprint))
            #expect(await kind { _ = try await h.trust.get(fingerprint) } == .notFound)
        }
    }

    @Test func aTokenNeedsAClientName() async throws {
        try await TrustHarness.with { h in
            #expect(await kind { _ = try await h.trust.createToken(name: "", expiresAt: nil) } == .invalid)
        }
    }
}
