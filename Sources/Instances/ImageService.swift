import APITypes
import ClusterDB
import Foundation
import Images
import Logging
import Operations

/// Image use cases: import a unified tarball into this member's layer store and the cluster's
/// image table, list, alias, delete (the layer survives while instances use it).
public final class ImageService: Sendable {
    let member: MemberIdentity
    let db: ClusterDB
    let store: ImageStore
    let operations: OperationRegistry
    let maxImageBytes: Int64
    let logger: Logger

    public init(member: MemberIdentity, db: ClusterDB, store: ImageStore, operations: OperationRegistry, maxImageBytes: Int64 = 4 << 30, logger: Logger) {
        self.member = member
        self.db = db
        self.store = store
        self.operations = operations
        self.maxImageBytes = maxImageBytes
        self.logger = logger
    }

    /// Imports an uploaded tarball (a temporary file this call takes ownership of).
    public func importTarball(at path: String, filename: String) async throws -> APIOperation {
        let member = self.member
        return await operations.start(description: "Importing image", resources: [:]) { [self] _ in
            defer { unlink(path) }
            let layer: ImportedLayer
            do {
                layer = try await Blocking.run { try self.store.importTarball(at: path, maxBytes: self.maxImageBytes) }
            } catch let e as ImageError {
                throw InstancesError.invalid("Invalid image: \(e)")
            }
            let now = Date()
            let created = layer.metadata.creationDate.map { Date(timeIntervalSince1970: TimeInterval($0)) } ?? now
            try await db.transaction { tx in
                var image = try tx.image(fingerprintPrefix: layer.fingerprint)
                if image?.fingerprint != layer.fingerprint {
                    image = try tx.insertImage(NewImage(
                        fingerprint: layer.fingerprint, filename: filename, size: layer.size,
                        architecture: layer.metadata.architecture, properties: layer.metadata.properties,
                        createdAt: created, uploadedAt: now))
                }
                try tx.addImageMember(imageID: image!.id, memberID: member.id)
            }
            self.announceImage(.imageCreated, fingerprint: layer.fingerprint)
            return ["fingerprint": .string(layer.fingerprint), "size": .int(Int(layer.size))]
        }
    }

    /// The original tarball of an image whose layer is on this member, for a member fetching it.
    public func exportPath(_ fingerprint: String) async throws -> String {
        let image = try await row(fingerprint)
        guard let path = store.tarballPath(fingerprint: image.fingerprint) else {
            throw InstancesError.notFound("Image \(image.fingerprint.prefix(12)) has no tarball on member \(member.name): fetch it from another member")
        }
        return path
    }

    public func list() async throws -> [Image] {
        try await db.transaction { tx in try tx.images() }.map(Self.apiImage)
    }

    public func get(_ fingerprint: String) async throws -> Image {
        Self.apiImage(try await row(fingerprint))
    }

    public func delete(_ fingerprint: String) async throws -> APIOperation {
        let image = try await row(fingerprint)
        return await operations.start(description: "Deleting image", resources: ["images": ["/1.0/images/\(image.fingerprint)"]]) { [self] _ in
            let users: Int = try await db.transaction { tx in
                _ = try tx.deleteImage(fingerprint: image.fingerprint)
                return try tx.instanceCount(usingImage: image.fingerprint)
            }
            // Instances still running from this layer keep it; the last one to go removes it.
            if users == 0 { try await Blocking.run { try self.store.removeLayer(fingerprint: image.fingerprint) } }
            self.announceImage(.imageDeleted, fingerprint: image.fingerprint)
            return nil
        }
    }

    public func createAlias(_ post: ImageAliasesPost) async throws {
        // Control characters (a NUL above all, which the database refuses) have no place in a name.
        guard !post.name.isEmpty, !post.name.contains("/"), post.name.count <= 255,
              !post.name.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw InstancesError.invalid("Invalid alias name \(post.name.debugDescription): use up to 255 characters, no '/' and no control characters")
        }
        if let description = post.description, description.utf8.contains(0) || description.utf8.count > 4096 {
            throw InstancesError.invalid("Invalid alias description: at most 4096 bytes, no NUL characters")
        }
        let image = try await row(post.target)
        do {
            try await db.transaction { tx in
                if try tx.imageByAlias(post.name) != nil { throw InstancesError.conflict("Alias \"\(post.name)\" already exists") }
                try tx.addAlias(name: post.name, imageID: image.id, description: post.description ?? "")
            }
        } catch let e as ClusterDBError {
            if case .alreadyExists = e { throw InstancesError.conflict("Alias \"\(post.name)\" already exists") }
            throw e
        }
        announceAlias(.imageAliasCreated, name: post.name)
    }

    public func aliases() async throws -> [ImageAliasEntry] {
        let images = try await db.transaction { tx in try tx.images() }
        return images.flatMap { img in img.aliases.map { ImageAliasEntry(name: $0.name, description: $0.description, target: img.fingerprint) } }
            .sorted { $0.name < $1.name }
    }

    public func alias(_ name: String) async throws -> ImageAliasEntry {
        guard let img = try await db.transaction({ tx in try tx.imageByAlias(name) }),
              let a = img.aliases.first(where: { $0.name == name }) else {
            throw InstancesError.notFound("Image alias \"\(name)\" not found")
        }
        return ImageAliasEntry(name: a.name, description: a.description, target: img.fingerprint)
    }

    public func deleteAlias(_ name: String) async throws {
        let deleted = try await db.transaction { tx in try tx.deleteAlias(name: name) }
        if !deleted { throw InstancesError.notFound("Image alias \"\(name)\" not found") }
        announceAlias(.imageAliasDeleted, name: name)
    }

    func row(_ fingerprint: String) async throws -> ImageRow {
        guard !fingerprint.isEmpty, fingerprint.allSatisfy(\.isHexDigit) else {
            throw InstancesError.invalid("Invalid image fingerprint \"\(fingerprint)\"")
        }
        do {
            guard let r = try await db.transaction({ tx in try tx.image(fingerprintPrefix: fingerprint) }) else {
                throw InstancesError.notFound("Image \"\(fingerprint)\" not found")
            }
            return r
        } catch let e as ClusterDBError {
            if case .ambiguous = e { throw InstancesError.invalid("Image fingerprint prefix \"\(fingerprint)\" is ambiguous: give more characters") }
            throw e
        }
    }

    static func apiImage(_ r: ImageRow) -> Image {
        Image(
            fingerprint: r.fingerprint, filename: r.filename, size: r.size, architecture: r.architecture,
            createdAt: InstanceContext.iso(r.createdAt), uploadedAt: InstanceContext.iso(r.uploadedAt),
            properties: r.properties, aliases: r.aliases.map { Image.Alias(name: $0.name, description: $0.description) })
    }
}
