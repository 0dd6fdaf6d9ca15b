import Crypto
import Glibc
import Logging

/// A base layer present on this member.
public struct ImportedLayer: Sendable, Equatable {
    /// sha256 of the original tarball's bytes, lowercase hex (as LXD computes it for unified tarballs).
    public var fingerprint: String
    /// Size in bytes of the original tarball.
    public var size: Int64
    public var metadata: ImageMetadata
    /// The unpacked root filesystem: `<images>/<fingerprint>/rootfs`.
    public var rootfsPath: String

    public init(fingerprint: String, size: Int64, metadata: ImageMetadata, rootfsPath: String) {
        self.fingerprint = fingerprint
        self.size = size
        self.metadata = metadata
        self.rootfsPath = rootfsPath
    }
}

/// The content-addressed image layers of one member, under `$LXD_DIR/images`:
///
///     images/<fingerprint>/metadata.yaml, rootfs/, templates/   (0700)
///     images/<fingerprint>.tar[.gz|.xz]                        the original tarball
///     images/.incoming-*, .unpack-*, .removing-*                in progress; removed by `removeLeftovers()`
///
/// A layer appears under its final name only complete: the tarball is copied
/// in while hashed (so what is unpacked is exactly what was hashed), unpacked
/// into a temporary directory beside the final one, checked, then renamed.
/// Any failure removes everything the import created.
///
/// Thread safety: no mutable state; concurrent imports of the same tarball
/// both unpack and the loser of the final rename discards its copy.
/// Refcounting layers against instances is the caller's business.
///
/// All calls do blocking file I/O (an import of a few hundred MB takes
/// seconds): call them from a thread pool, never on an event loop.
/// Must run as root: owners from the tarball are kept.
public final class ImageStore: Sendable {
    public let directory: String
    private let logger: Logger

    public init(directory: String, logger: Logger) {
        self.directory = directory
        self.logger = logger
    }

    // MARK: - Import

    /// Imports a unified image tarball (plain, gzip or xz).
    ///
    /// - Parameters:
    ///   - maxBytes: limit for the tarball and for its unpacked archive stream.
    ///   - expectedFingerprint: when fetched from a peer under a fingerprint,
    ///     the tarball must hash to it.
    /// - Returns: the layer; if it already exists it is returned as is.
    public func importTarball(at path: String, maxBytes: Int64, expectedFingerprint: String? = nil) throws -> ImportedLayer {
        let imagesFD = try openImagesDirectory(create: true)
        defer { close(imagesFD) }

        let incoming = ".incoming-\(Self.randomSuffix())"
        let (fingerprint, size) = try copyHashing(from: path, to: incoming, in: imagesFD, maxBytes: maxBytes)
        var incomingExists = true
        defer { if incomingExists { try? FileTree.remove(incoming, in: imagesFD, displayPath: "\(directory)/\(incoming)") } }

        if let expected = expectedFingerprint, expected.lowercased() != fingerprint {
            throw ImageError.fingerprintMismatch(expected: expected, actual: fingerprint)
        }

        let compression = try Self.compression(of: incoming, in: imagesFD, displayPath: path)
        if let existing = layer(fingerprint: fingerprint) {
            if tarballPath(fingerprint: fingerprint) == nil {
                try rename(incoming, to: fingerprint + compression.tarballSuffix, in: imagesFD)
                incomingExists = false
            }
            logger.debug("image layer already present", metadata: ["fingerprint": "\(fingerprint)"])
            return existing
        }

        let unpackName = ".unpack-\(fingerprint.prefix(12))-\(Self.randomSuffix())"
        let unpackPath = "\(directory)/\(unpackName)"
        guard mkdirat(imagesFD, unpackName, 0o700) == 0 else {
            throw ImageError.io(operation: "create directory", path: unpackPath, errno: errno)
        }
        var unpackExists = true
        defer { if unpackExists { try? FileTree.remove(unpackName, in: imagesFD, displayPath: unpackPath) } }

        let started = ContinuousClock.now
        let metadata = try unpack(incoming, compression: compression, in: imagesFD, into: unpackName, displayPath: path, maxBytes: maxBytes)

        try rename(incoming, to: fingerprint + compression.tarballSuffix, in: imagesFD)
        incomingExists = false
        if renameat(imagesFD, unpackName, imagesFD, fingerprint) != 0 {
            let e = errno
            // Another import of the same tarball finished first: keep its layer.
            if e == ENOTEMPTY || e == EEXIST, let existing = layer(fingerprint: fingerprint) { return existing }
            throw ImageError.io(operation: "rename into place", path: "\(directory)/\(fingerprint)", errno: e)
        }
        unpackExists = false
        logger.info("imported image layer", metadata: [
            "fingerprint": "\(fingerprint)", "bytes": "\(size)", "compression": "\(compression.rawValue)",
            "duration": "\(ContinuousClock.now - started)",
        ])
        return ImportedLayer(fingerprint: fingerprint, size: size, metadata: metadata, rootfsPath: "\(directory)/\(fingerprint)/rootfs")
    }

    // MARK: - Queries

    /// The layer with this fingerprint, if it is present on this member.
    public func layer(fingerprint: String) -> ImportedLayer? {
        guard Self.isFingerprint(fingerprint) else { return nil }
        let layerPath = "\(directory)/\(fingerprint)"
        guard let text = Self.readSmallFile("\(layerPath)/metadata.yaml", limit: Self.maxMetadataSize) else { return nil }
        let metadata: ImageMetadata
        do {
            metadata = try ImageMetadata.parse(text)
        } catch {
            logger.warning("image layer has unreadable metadata", metadata: ["fingerprint": "\(fingerprint)", "error": "\(error)"])
            return nil
        }
        var size: Int64 = 0
        if let tarball = tarballPath(fingerprint: fingerprint) {
            var st = stat()
            if stat(tarball, &st) == 0 { size = Int64(st.st_size) }
        }
        return ImportedLayer(fingerprint: fingerprint, size: size, metadata: metadata, rootfsPath: "\(layerPath)/rootfs")
    }

    /// Path of the original tarball kept for this layer (for export and peers).
    public func tarballPath(fingerprint: String) -> String? {
        guard Self.isFingerprint(fingerprint) else { return nil }
        for compression in Compression.allCases {
            let path = "\(directory)/\(fingerprint)\(compression.tarballSuffix)"
            var st = stat()
            if lstat(path, &st) == 0, st.st_mode & S_IFMT == S_IFREG { return path }
        }
        return nil
    }

    /// Fingerprints of the layers present, sorted.
    public func fingerprints() throws -> [String] {
        try entryNames().filter { Self.isFingerprint($0) && layer(fingerprint: $0) != nil }.sorted()
    }

    // MARK: - Removal

    /// Removes the layer and its tarball. Absent is not an error.
    /// The directory is renamed away first, so the layer vanishes at once.
    public func removeLayer(fingerprint: String) throws {
        guard Self.isFingerprint(fingerprint) else {
            throw ImageError.invalidImage("\(fingerprint) is not an image fingerprint (64 hex digits)")
        }
        guard access(directory, F_OK) == 0 else { return }
        let imagesFD = try openImagesDirectory(create: false)
        defer { close(imagesFD) }
        let removing = ".removing-\(fingerprint.prefix(12))-\(Self.randomSuffix())"
        var existed = renameat(imagesFD, fingerprint, imagesFD, removing) == 0
        if !existed && errno != ENOENT {
            throw ImageError.io(operation: "rename", path: "\(directory)/\(fingerprint)", errno: errno)
        }
        for compression in Compression.allCases {
            let name = fingerprint + compression.tarballSuffix
            if unlinkat(imagesFD, name, 0) == 0 {
                existed = true
            } else if errno != ENOENT {
                throw ImageError.io(operation: "remove", path: "\(directory)/\(name)", errno: errno)
            }
        }
        try FileTree.remove(removing, in: imagesFD, displayPath: "\(directory)/\(removing)")
        if existed { logger.info("removed image layer", metadata: ["fingerprint": "\(fingerprint)"]) }
    }

    /// Removes what interrupted imports and removals left behind. Call at
    /// startup, before any import runs (an import in progress looks the same).
    public func removeLeftovers() throws {
        let imagesFD = try openImagesDirectory(create: true)
        defer { close(imagesFD) }
        for name in try entryNames() where [".incoming-", ".unpack-", ".removing-"].contains(where: { name.hasPrefix($0) }) {
            logger.notice("removing leftover of an interrupted image operation", metadata: ["path": "\(directory)/\(name)"])
            try FileTree.remove(name, in: imagesFD, displayPath: "\(directory)/\(name)")
        }
    }

    // MARK: - Steps

    static let maxMetadataSize = 1 << 20

    /// Unpacks the archive into `target` and returns its parsed metadata.
    private func unpack(
        _ tarball: String, compression: Compression, in imagesFD: Int32, into target: String,
        displayPath: String, maxBytes: Int64
    ) throws -> ImageMetadata {
        let tarFD = openat(imagesFD, tarball, O_RDONLY | O_CLOEXEC)
        guard tarFD >= 0 else { throw ImageError.io(operation: "open", path: "\(directory)/\(tarball)", errno: errno) }
        defer { close(tarFD) }
        let targetFD = openat(imagesFD, target, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard targetFD >= 0 else { throw ImageError.io(operation: "open", path: "\(directory)/\(target)", errno: errno) }
        defer { close(targetFD) }

        let reader = TarReader(try decompressing(FileDescriptorSource(fd: tarFD, path: displayPath), compression), maxBytes: maxBytes)
        let writer = LayerWriter(rootFD: targetFD, rootPath: "\(directory)/\(target)", logger: logger)
        var metadataBytes: [UInt8]?
        var entries = 0
        while let entry = try reader.next() {
            entries += 1
            let place = try ImagePlace.check(entry)
            if place == .archiveRoot { continue }
            if place == .metadata {
                guard entry.size <= Int64(Self.maxMetadataSize) else {
                    throw ImageError.invalidImage("image metadata.yaml is larger than \(Self.maxMetadataSize) bytes")
                }
                var bytes: [UInt8] = []
                try writer.write(entry, at: place.components) { sink in
                    try reader.readData { chunk in
                        bytes.append(contentsOf: chunk)
                        try sink(chunk)
                    }
                }
                metadataBytes = bytes
            } else {
                try writer.write(entry, at: place.components) { sink in try reader.readData(sink) }
            }
        }
        try writer.finish()

        guard let metadataBytes else { throw ImageError.invalidImage("image has no metadata.yaml") }
        var st = stat()
        guard fstatat(targetFD, "rootfs", &st, AT_SYMLINK_NOFOLLOW) == 0, st.st_mode & S_IFMT == S_IFDIR else {
            throw ImageError.invalidImage("image has no rootfs/ directory; only unified image tarballs are supported")
        }
        // The layer directory itself stays private whatever the archive said about "./".
        guard fchmod(targetFD, 0o700) == 0 else { throw ImageError.io(operation: "chmod", path: "\(directory)/\(target)", errno: errno) }
        if !writer.skippedDevices.isEmpty {
            logger.notice("image device nodes skipped", metadata: ["count": "\(writer.skippedDevices.count)"])
        }
        logger.debug("unpacked image", metadata: ["entries": "\(entries)", "bytes": "\(reader.bytesRead)"])
        let metadata = try ImageMetadata.parse(String(decoding: metadataBytes, as: UTF8.self))
        // Every template must be readable now, so a layer in the store never fails at a start.
        for (path, template) in metadata.templates.sorted(by: { $0.key < $1.key }) {
            _ = try Self.readTemplate(template.template, in: targetFD, layerPath: "\(directory)/\(target)", for: path)
        }
        return metadata
    }

    /// Template files are held in memory whole when rendered.
    public static let maxTemplateSize = 1 << 20

    /// The text of template file `name` of a layer (below its templates/ directory), for rendering.
    public func template(fingerprint: String, name: String) throws -> String {
        guard Self.isFingerprint(fingerprint) else {
            throw ImageError.invalidImage("\(fingerprint) is not an image fingerprint (64 hex digits)")
        }
        let layerPath = "\(directory)/\(fingerprint)"
        let fd = open(layerPath, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw ImageError.io(operation: "open image layer", path: layerPath, errno: errno) }
        defer { close(fd) }
        return try Self.readTemplate(name, in: fd, layerPath: layerPath, for: nil)
    }

    /// Reads `templates/<name>` below a layer directory without following any symlink: each
    /// directory is opened O_NOFOLLOW, and the file must be a regular file within the size limit.
    private static func readTemplate(_ name: String, in layerFD: Int32, layerPath: String, for target: String?) throws -> String {
        let shown = "templates/\(name)" + (target.map { " (template for \($0))" } ?? "")
        func refuse(_ why: String) -> ImageError { .invalidImage("image template file \(shown) \(why)") }
        let components = ["templates"] + name.split(separator: "/").map(String.init)
        guard !components.contains(".."), !components.contains(".") else { throw refuse("contains '.' or '..'") }
        var dirFD = dup(layerFD)
        guard dirFD >= 0 else { throw ImageError.io(operation: "dup", path: layerPath, errno: errno) }
        defer { close(dirFD) }
        for part in components.dropLast() {
            let next = openat(dirFD, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard next >= 0 else {
                if errno == ENOENT { throw refuse("is missing from the image; add it to the tarball's templates/ directory") }
                throw refuse("is not below a plain directory (a symlink or not a directory: \(String(cString: strerror(errno))))")
            }
            close(dirFD)
            dirFD = next
        }
        let fd = openat(dirFD, components.last!, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT { throw refuse("is missing from the image; add it to the tarball's templates/ directory") }
            if errno == ELOOP { throw refuse("is a symlink; template files must be regular files") }
            throw ImageError.io(operation: "open", path: "\(layerPath)/templates/\(name)", errno: errno)
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw ImageError.io(operation: "stat", path: "\(layerPath)/templates/\(name)", errno: errno) }
        guard st.st_mode & S_IFMT == S_IFREG else { throw refuse("is not a regular file") }
        guard st.st_size <= maxTemplateSize else { throw refuse("is larger than \(maxTemplateSize) bytes") }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw ImageError.io(operation: "read", path: "\(layerPath)/templates/\(name)", errno: errno) }
            if n == 0 { break }
            bytes.append(contentsOf: buffer[..<n])
            guard bytes.count <= maxTemplateSize else { throw refuse("is larger than \(maxTemplateSize) bytes") }
        }
        guard let text = String(validating: bytes, as: UTF8.self) else { throw refuse("is not UTF-8 text") }
        return text
    }

    /// Copies `source` to `name` in the images directory, returning its sha256 and size.
    private func copyHashing(from source: String, to name: String, in imagesFD: Int32, maxBytes: Int64) throws -> (String, Int64) {
        let input = open(source, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw ImageError.io(operation: "open image tarball", path: source, errno: errno) }
        defer { close(input) }
        var st = stat()
        guard fstat(input, &st) == 0 else { throw ImageError.io(operation: "stat", path: source, errno: errno) }
        guard st.st_mode & S_IFMT == S_IFREG else {
            throw ImageError.invalidImage("image tarball \(source) is not a regular file")
        }
        guard Int64(st.st_size) <= maxBytes else { throw ImageError.tooLarge(limit: maxBytes) }

        let output = openat(imagesFD, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard output >= 0 else { throw ImageError.io(operation: "create", path: "\(directory)/\(name)", errno: errno) }
        defer { close(output) }

        var hasher = SHA256()
        var total: Int64 = 0
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 256 * 1024, alignment: 16)
        defer { buffer.deallocate() }
        let source = FileDescriptorSource(fd: input, path: source)
        while true {
            let n = try source.read(into: buffer)
            if n == 0 { break }
            total += Int64(n)
            // The file may grow while we read it.
            guard total <= maxBytes else { throw ImageError.tooLarge(limit: maxBytes) }
            let chunk = UnsafeRawBufferPointer(rebasing: buffer[..<n])
            hasher.update(bufferPointer: chunk)
            var offset = 0
            while offset < n {
                let w = write(output, chunk.baseAddress! + offset, n - offset)
                if w < 0 {
                    if errno == EINTR { continue }
                    throw ImageError.io(operation: "write", path: "\(directory)/\(name)", errno: errno)
                }
                offset += w
            }
        }
        let hex = hasher.finalize().map { byte in
            let digits = Array("0123456789abcdef")
            return String([digits[Int(byte >> 4)], digits[Int(byte & 0xf)]])
        }.joined()
        return (hex, total)
    }

    private static func compression(of name: String, in dirFD: Int32, displayPath: String) throws -> Compression {
        let fd = openat(dirFD, name, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ImageError.io(operation: "open", path: displayPath, errno: errno) }
        defer { close(fd) }
        var magic = [UInt8](repeating: 0, count: 6)
        let n = magic.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 6, 0) }
        guard n >= 0 else { throw ImageError.io(operation: "read", path: displayPath, errno: errno) }
        return Compression.detect(magic: magic.prefix(n))
    }

    private func rename(_ from: String, to: String, in dirFD: Int32) throws {
        guard renameat(dirFD, from, dirFD, to) == 0 else {
            throw ImageError.io(operation: "rename \(directory)/\(from) to", path: "\(directory)/\(to)", errno: errno)
        }
    }

    /// Opens the images directory, creating it and missing parents (0700) when asked.
    private func openImagesDirectory(create: Bool) throws -> Int32 {
        if create {
            var prefix = directory.hasPrefix("/") ? "" : "."
            for part in directory.split(separator: "/") {
                prefix += "/" + part
                if mkdir(prefix, 0o700) != 0 && errno != EEXIST {
                    throw ImageError.io(operation: "create directory", path: prefix, errno: errno)
                }
            }
        }
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw ImageError.io(operation: "open images directory", path: directory, errno: errno) }
        return fd
    }

    private func entryNames() throws -> [String] {
        guard let dir = opendir(directory) else {
            if errno == ENOENT { return [] }
            throw ImageError.io(operation: "read directory", path: directory, errno: errno)
        }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    static func isFingerprint(_ s: String) -> Bool {
        s.utf8.count == 64 && s.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
    }

    private static func randomSuffix() -> String {
        String(UInt64.random(in: 0...UInt64.max), radix: 16)
    }

    private static func readSmallFile(_ path: String, limit: Int) -> String? {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while bytes.count <= limit {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            bytes.append(contentsOf: buffer[..<n])
        }
        guard bytes.count <= limit else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }
}
