import APITypes
import ClusterDB
import Foundation
import Images
import Logging

/// Downloads an image's original tarball from another member (the agent implements it over
/// mutual TLS). Throws when the member is unreachable or does not have it.
public protocol ImageTarballFetcher: Sendable {
    func fetchTarball(fingerprint: String, from member: String, timeout: Duration) async throws -> [UInt8]
}

/// Brings an image's layer onto this member from a member that holds it, on first use.
struct ImageFetch: Sendable {
    let member: MemberIdentity
    let db: ClusterDB
    let store: any LayerStore
    let fetcher: any ImageTarballFetcher
    let uploadDirectory: String
    let maxImageBytes: Int64
    let logger: Logger
    /// Per member: an unreachable one is skipped after this, not waited for.
    static let perMemberTimeout = Duration.seconds(30)

    /// Imports the layer of `image` from the first holder that answers with the right bytes, then
    /// records this member as a holder. The hash check refuses a peer that sends other content.
    func ensureLayer(_ image: ImageRow) async throws -> ImportedLayer {
        if let layer = store.layer(fingerprint: image.fingerprint) { return layer }
        let holders = try await db.transaction { tx in try tx.imageMembers(imageID: image.id) }
            .map(\.name).filter { $0 != member.name }
        guard !holders.isEmpty else {
            throw InstancesError.unavailable("Image \(image.fingerprint.prefix(12)) is on no other member to fetch from: import it on member \(member.name)")
        }
        var failures: [String] = []
        for holder in holders {
            do {
                let started = ContinuousClock.now
                let bytes = try await fetcher.fetchTarball(fingerprint: image.fingerprint, from: holder, timeout: Self.perMemberTimeout)
                let layer = try await importFetched(bytes, fingerprint: image.fingerprint)
                try await db.transaction { tx in try tx.addImageMember(imageID: image.id, memberID: member.id) }
                logger.info("image fetched from member", metadata: [
                    "image": "\(image.fingerprint.prefix(12))", "from": "\(holder)", "bytes": "\(bytes.count)",
                    "duration": "\(ContinuousClock.now - started)"])
                return layer
            } catch {
                logger.warning("image fetch failed", metadata: ["image": "\(image.fingerprint.prefix(12))", "from": "\(holder)", "error": "\(error)"])
                failures.append("\(holder): \(error)")
            }
        }
        throw InstancesError.unavailable("Cannot fetch image \(image.fingerprint.prefix(12)) onto member \(member.name) (\(failures.joined(separator: "; "))): import it there")
    }

    private func importFetched(_ bytes: [UInt8], fingerprint: String) async throws -> ImportedLayer {
        guard bytes.count <= maxImageBytes else { throw InstancesError.tooLarge("Fetched image is larger than \(maxImageBytes) bytes") }
        let path = "\(uploadDirectory)/fetch-\(UUID().uuidString)"
        guard FileManager.default.createFile(atPath: path, contents: Data(bytes), attributes: [.posixPermissions: 0o600]) else {
            throw InstancesError.internal("Cannot write fetched image to \(uploadDirectory): check the data directory is writable")
        }
        defer { unlink(path) }
        let store = self.store, maxBytes = maxImageBytes
        return try await Blocking.run {
            // A concurrent create may have imported it meanwhile.
            if let present = store.layer(fingerprint: fingerprint) { return present }
            return try store.importTarball(at: path, maxBytes: maxBytes, expectedFingerprint: fingerprint)
        }
    }
}
