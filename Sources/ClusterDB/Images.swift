import Dqlite
import Foundation

public struct NewImage: Sendable, Equatable {
    /// sha256 of the image, 64 lowercase hex digits.
    public var fingerprint: String
    public var filename: String
    public var size: Int64
    public var architecture: String
    public var properties: [String: String]
    public var createdAt: Date
    public var uploadedAt: Date

    public init(fingerprint: String, filename: String = "", size: Int64, architecture: String,
                properties: [String: String] = [:], createdAt: Date = Date(), uploadedAt: Date = Date()) {
        self.fingerprint = fingerprint
        self.filename = filename
        self.size = size
        self.architecture = architecture
        self.properties = properties
        self.createdAt = createdAt
        self.uploadedAt = uploadedAt
    }
}

public struct ImageAliasRow: Sendable, Equatable {
    public var name: String
    public var description: String

    public init(name: String, description: String) {
        self.name = name
        self.description = description
    }
}

public struct ImageRow: Sendable, Equatable {
    public var id: Int64
    public var fingerprint: String
    public var filename: String
    public var size: Int64
    public var architecture: String
    public var properties: [String: String]
    public var createdAt: Date
    public var uploadedAt: Date
    /// Sorted by name.
    public var aliases: [ImageAliasRow]

    public init(id: Int64, fingerprint: String, filename: String, size: Int64, architecture: String, properties: [String: String], createdAt: Date, uploadedAt: Date, aliases: [ImageAliasRow]) {
        self.id = id
        self.fingerprint = fingerprint
        self.filename = filename
        self.size = size
        self.architecture = architecture
        self.properties = properties
        self.createdAt = createdAt
        self.uploadedAt = uploadedAt
        self.aliases = aliases
    }
}

extension Transaction {
    private static let imageColumns = "id, fingerprint, filename, size, architecture, properties, created_at, uploaded_at"

    private func imageRows(_ rows: DqliteRows) throws -> [ImageRow] {
        try rows.rows.map { values in
            let r = Row(values: values, table: "images")
            let id = try r.int(0, "id")
            return ImageRow(id: id, fingerprint: try r.text(1, "fingerprint"), filename: try r.text(2, "filename"),
                            size: try r.int(3, "size"), architecture: try r.text(4, "architecture"),
                            properties: try r.stringMap(5, "properties"), createdAt: try r.date(6, "created_at"),
                            uploadedAt: try r.date(7, "uploaded_at"), aliases: try imageAliases(imageID: id))
        }
    }

    private func imageAliases(imageID: Int64) throws -> [ImageAliasRow] {
        try query("SELECT name, description FROM image_aliases WHERE image_id = ? ORDER BY name", .integer(imageID)).rows.map {
            let r = Row(values: $0, table: "image_aliases")
            return ImageAliasRow(name: try r.text(0, "name"), description: try r.text(1, "description"))
        }
    }

    static func isFingerprintPrefix(_ s: String) -> Bool {
        !s.isEmpty && s.count <= 64 && s.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }

    /// Inserts an image. Throws `alreadyExists` for a known fingerprint, `invalidArgument` for a malformed one.
    public func insertImage(_ new: NewImage) throws -> ImageRow {
        guard new.fingerprint.count == 64, Self.isFingerprintPrefix(new.fingerprint) else {
            throw ClusterDBError.invalidArgument("image fingerprint \(new.fingerprint.debugDescription) is not 64 lowercase hex digits (sha256)")
        }
        do {
            let id = try exec("""
                INSERT INTO images (fingerprint, filename, size, architecture, properties, created_at, uploaded_at)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                """,
                .text(new.fingerprint), .text(new.filename), .integer(new.size), .text(new.architecture),
                .text(JSONText.encode(new.properties)), .integer(Timestamp.nanoseconds(new.createdAt)),
                .integer(Timestamp.nanoseconds(new.uploadedAt))).lastInsertID
            return ImageRow(id: id, fingerprint: new.fingerprint, filename: new.filename, size: new.size,
                            architecture: new.architecture, properties: new.properties,
                            createdAt: Timestamp.date(fromNanoseconds: Timestamp.nanoseconds(new.createdAt)),
                            uploadedAt: Timestamp.date(fromNanoseconds: Timestamp.nanoseconds(new.uploadedAt)), aliases: [])
        } catch let error as DqliteError {
            throw error.mappingUnique("image \(new.fingerprint)")
        }
    }

    /// The one image whose fingerprint starts with `prefix` (lowercase hex); nil when none,
    /// `ambiguous` when several, `invalidArgument` when the prefix is not hex.
    public func image(fingerprintPrefix prefix: String) throws -> ImageRow? {
        guard Self.isFingerprintPrefix(prefix) else {
            throw ClusterDBError.invalidArgument("image fingerprint prefix \(prefix.debugDescription) is not lowercase hex")
        }
        // substr instead of LIKE: LIKE is case-insensitive and treats _ and % as wildcards.
        let rows = try query("SELECT \(Self.imageColumns) FROM images WHERE substr(fingerprint, 1, ?) = ? LIMIT 2",
                             .integer(Int64(prefix.utf8.count)), .text(prefix))
        if rows.rows.count > 1 { throw ClusterDBError.ambiguous("image fingerprint prefix \(prefix)") }
        return try imageRows(rows).first
    }

    public func image(id: Int64) throws -> ImageRow? {
        try imageRows(query("SELECT \(Self.imageColumns) FROM images WHERE id = ?", .integer(id))).first
    }

    public func imageByAlias(_ name: String) throws -> ImageRow? {
        try imageRows(query("""
            SELECT \(Self.imageColumns.split(separator: ",").map { "i." + $0.trimmingCharacters(in: .whitespaces) }.joined(separator: ", "))
            FROM images i JOIN image_aliases a ON a.image_id = i.id WHERE a.name = ?
            """, .text(name))).first
    }

    /// All images with their aliases, ordered by upload time.
    public func images() throws -> [ImageRow] {
        try imageRows(query("SELECT \(Self.imageColumns) FROM images ORDER BY uploaded_at, id"))
    }

    /// Deletes the image row (aliases and member records go with it). True when it existed.
    @discardableResult
    public func deleteImage(fingerprint: String) throws -> Bool {
        try exec("DELETE FROM images WHERE fingerprint = ?", .text(fingerprint)).rowsAffected > 0
    }

    /// Points a new alias at an image. Throws `alreadyExists` for a taken name, `notFound` for a missing image.
    public func addAlias(name: String, imageID: Int64, description: String = "") throws {
        guard !name.isEmpty else { throw ClusterDBError.invalidArgument("alias name is empty") }
        do {
            try exec("INSERT INTO image_aliases (name, image_id, description) VALUES (?, ?, ?)",
                     .text(name), .integer(imageID), .text(description))
        } catch let error as DqliteError {
            if error.isConstraintViolation, case .server(_, let message, _) = error, message.contains("FOREIGN KEY") {
                throw ClusterDBError.notFound("image \(imageID)")
            }
            throw error.mappingUnique("image alias \(name)")
        }
    }

    @discardableResult
    public func deleteAlias(name: String) throws -> Bool {
        try exec("DELETE FROM image_aliases WHERE name = ?", .text(name)).rowsAffected > 0
    }

    /// Records that `memberID` holds the image's base layer (idempotent).
    public func addImageMember(imageID: Int64, memberID: Int64) throws {
        do {
            try exec("INSERT OR IGNORE INTO images_members (image_id, member_id) VALUES (?, ?)", .integer(imageID), .integer(memberID))
        } catch let error as DqliteError where error.isConstraintViolation {
            throw ClusterDBError.notFound("image \(imageID) or member \(memberID)")
        }
    }

    @discardableResult
    public func removeImageMember(imageID: Int64, memberID: Int64) throws -> Bool {
        try exec("DELETE FROM images_members WHERE image_id = ? AND member_id = ?", .integer(imageID), .integer(memberID)).rowsAffected > 0
    }

    /// Members holding the image, ordered by id.
    public func imageMembers(imageID: Int64) throws -> [MemberRow] {
        let ids = try query("SELECT member_id FROM images_members WHERE image_id = ? ORDER BY member_id", .integer(imageID)).rows.map {
            try Row(values: $0, table: "images_members").int(0, "member_id")
        }
        return try ids.compactMap { try member(id: $0) }
    }
}
