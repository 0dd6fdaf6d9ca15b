import Foundation
import Glibc
import Testing
@testable import Images

/// Imports real tarballs (made with /usr/bin/tar, gzip, xz) and crafted
/// malicious ones into a store under /tmp, and checks the unpacked tree.
@Suite struct ImageStoreTests {
    static let tools = ["/usr/bin/tar", "/usr/bin/gzip", "/usr/bin/xz", "/usr/bin/sha256sum", "/usr/bin/mkfifo"]
    static let toolsPresent = tools.allSatisfy { access($0, X_OK) == 0 }
    static let isRoot = getuid() == 0

    static let longDir = "rootfs/usr/share/" + String(repeating: "long-directory-name/", count: 6)

    /// A busybox-like tree: binary + symlinks + hard link, setuid/setgid,
    /// sticky /tmp, owned files, a fifo, a path longer than 100 bytes, templates.
    static func makeTree(in scratch: Scratch) throws -> String {
        let src = scratch.path + "/src"
        let fm = FileManager.default
        for d in ["rootfs/bin", "rootfs/usr/bin", "rootfs/home/user", "rootfs/tmp", "rootfs/etc", "rootfs/run", "templates", longDir] {
            try fm.createDirectory(atPath: "\(src)/\(d)", withIntermediateDirectories: true)
        }
        try """
        architecture: x86_64
        creation_date: 1700000000
        properties:
          description: Busybox test image
          os: Busybox
        templates:
          /etc/hostname:
            when:
              - create
            template: hostname.tpl
        """.write(toFile: "\(src)/metadata.yaml", atomically: false, encoding: .utf8)
        try fm.copyItem(atPath: "/usr/bin/busybox", toPath: "\(src)/rootfs/bin/busybox")
        try fm.createSymbolicLink(atPath: "\(src)/rootfs/bin/sh", withDestinationPath: "busybox")
        try fm.createSymbolicLink(atPath: "\(src)/rootfs/bin/ls", withDestinationPath: "/bin/busybox")
        #expect(link("\(src)/rootfs/bin/busybox", "\(src)/rootfs/bin/hard") == 0)
        for (path, text, mode, uid, gid) in [
            ("rootfs/usr/bin/passwd", "setuid", 0o4755, 0, 0),
            ("rootfs/usr/bin/wall", "setgid", 0o2755, 0, 5),
            ("rootfs/home/user/notes", "mine", 0o640, 1000, 1000),
            ("rootfs/etc/hostname", "busybox", 0o644, 0, 0),
            ("templates/hostname.tpl", "{{ container.name }}", 0o644, 0, 0),
            (longDir + "deep-file-beyond-one-hundred-bytes", "deep", 0o600, 0, 0),
        ] {
            try text.write(toFile: "\(src)/\(path)", atomically: false, encoding: .utf8)
            #expect(chown("\(src)/\(path)", uid_t(uid), gid_t(gid)) == 0)
            #expect(chmod("\(src)/\(path)", mode_t(mode)) == 0)
        }
        #expect(chmod("\(src)/rootfs/tmp", 0o1777) == 0)
        #expect(chown("\(src)/rootfs/home/user", 1000, 1000) == 0)
        #expect(chmod("\(src)/rootfs/home/user", 0o700) == 0)
        try run(["/usr/bin/mkfifo", "-m", "0620", "\(src)/rootfs/run/initctl"])
        var times = [timespec(tv_sec: 1_577_836_800, tv_nsec: 0), timespec(tv_sec: 1_577_836_800, tv_nsec: 0)]
        #expect(utimensat(AT_FDCWD, "\(src)/rootfs/etc/hostname", &times, 0) == 0)
        #expect(utimensat(AT_FDCWD, "\(src)/rootfs/etc", &times, 0) == 0)
        return src
    }

    static func makeTarball(_ scratch: Scratch, format: String = "gnu", compress: String? = nil) throws -> String {
        let src = scratch.path + "/src"
        if access(src, F_OK) != 0 { _ = try makeTree(in: scratch) }
        let tar = "\(scratch.path)/image-\(format).tar"
        try run(["/usr/bin/tar", "--format=\(format)", "--numeric-owner", "-C", src, "-cf", tar, "."])
        guard let compress else { return tar }
        try run([compress, "-k", "-f", tar])
        return tar + (compress.hasSuffix("gzip") ? ".gz" : ".xz")
    }

    static func sha256sum(_ path: String) throws -> String {
        String(try run(["/usr/bin/sha256sum", path]).prefix(64))
    }

    func checkTree(_ layer: ImportedLayer, _ scratch: Scratch) throws {
        let root = layer.rootfsPath
        let layerDir = scratch.images + "/" + layer.fingerprint
        #expect(root == layerDir + "/rootfs")
        #expect(lstatOf(layerDir)!.st_mode & 0o7777 == 0o700)
        #expect(layer.metadata.architecture == "x86_64")
        #expect(layer.metadata.creationDate == 1_700_000_000)
        #expect(layer.metadata.properties == ["description": "Busybox test image", "os": "Busybox"])
        #expect(contents(layerDir + "/templates/hostname.tpl") == "{{ container.name }}")

        let busybox = try #require(lstatOf(root + "/bin/busybox"))
        #expect(busybox.st_mode & 0o7777 == 0o755 && busybox.st_size == lstatOf("/usr/bin/busybox")!.st_size)
        #expect(FileManager.default.contentsEqual(atPath: root + "/bin/busybox", andPath: "/usr/bin/busybox"))
        #expect(lstatOf(root + "/bin/hard")?.st_ino == busybox.st_ino)
        #expect(busybox.st_nlink == 2)
        #expect(readLink(root + "/bin/sh") == "busybox")
        #expect(readLink(root + "/bin/ls") == "/bin/busybox")
        #expect(lstatOf(root + "/usr/bin/passwd")!.st_mode & 0o7777 == 0o4755)
        let wall = try #require(lstatOf(root + "/usr/bin/wall"))
        #expect(wall.st_mode & 0o7777 == 0o2755 && wall.st_gid == 5)
        let notes = try #require(lstatOf(root + "/home/user/notes"))
        #expect(notes.st_uid == 1000 && notes.st_gid == 1000 && notes.st_mode & 0o7777 == 0o640)
        let home = try #require(lstatOf(root + "/home/user"))
        #expect(home.st_uid == 1000 && home.st_mode & 0o7777 == 0o700)
        #expect(lstatOf(root + "/tmp")!.st_mode & 0o7777 == 0o1777)
        let fifo = try #require(lstatOf(root + "/run/initctl"))
        #expect(fifo.st_mode & S_IFMT == S_IFIFO && fifo.st_mode & 0o7777 == 0o620)
        #expect(lstatOf(root + "/etc/hostname")!.st_mtim.tv_sec == 1_577_836_800)
        #expect(lstatOf(root + "/etc")!.st_mtim.tv_sec == 1_577_836_800)
        #expect(contents(root + "/" + Self.longDir.dropFirst("rootfs/".count) + "deep-file-beyond-one-hundred-bytes") == "deep")
    }

    @Test(.enabled(if: toolsPresent && isRoot, "needs root and tar, gzip, xz, sha256sum, mkfifo"),
          arguments: [("gnu", nil), ("pax", nil), ("gnu", "/usr/bin/gzip"), ("ustar", "/usr/bin/xz")] as [(String, String?)])
    func importsARealImage(format: String, compress: String?) throws {
        let scratch = Scratch()
        defer { scratch.cleanup() }
        if format == "ustar" {
            // ustar cannot hold the long path; it still carries all the rest.
            _ = try Self.makeTree(in: scratch)
            try FileManager.default.removeItem(atPath: scratch.path + "/src/rootfs/usr/share")
        }
        let tarball = try Self.makeTarball(scratch, format: format, compress: compress)
        let store = scratch.store()
        let layer = try store.importTarball(at: tarball, maxBytes: 64 << 20)

        #expect(layer.fingerprint == (try Self.sha256sum(tarball)))
        #expect(layer.size == Int64(lstatOf(tarball)!.st_size))
        let kept = try #require(store.tarballPath(fingerprint: layer.fingerprint))
        let suffix = compress == nil ? ".tar" : compress!.hasSuffix("gzip") ? ".tar.gz" : ".tar.xz"
        #expect(kept == scratch.images + "/" + layer.fingerprint + suffix)
        #expect(FileManager.default.contentsEqual(atPath: kept, andPath: tarball))
        #expect(lstatOf(scratch.images)!.st_mode & 0o7777 == 0o700)
        if format == "ustar" {
            #expect(lstatOf(layer.rootfsPath + "/usr/share") == nil)
            #expect(lstatOf(layer.rootfsPath + "/usr/bin/passwd")!.st_mode & 0o7777 == 0o4755)
        } else {
            try checkTree(layer, scratch)
        }
        #expect(store.layer(fingerprint: layer.fingerprint) == layer)
        #expect(scratch.imagesEntries() == [layer.fingerprint, layer.fingerprint + suffix].sorted())
    }

    @Test(.enabled(if: toolsPresent && isRoot, "needs root and tar, gzip, xz, sha256sum, mkfifo"))
    func importingTwiceGivesOneLayer() throws {
        let scratch = Scratch()
        defer { scratch.cleanup() }
        let tarball = try Self.makeTarball(scratch, compress: "/usr/bin/gzip")
        let store = scratch.store()
        let first = try store.importTarball(at: tarball, maxBytes: 64 << 20)
        // Mark the layer: a second import must not unpack again.
        let marker = scratch.images + "/" + first.fingerprint + "/rootfs/marker"
        #expect(FileManager.default.createFile(atPath: marker, contents: nil))
        let second = try store.importTarball(at: tarball, maxBytes: 64 << 20, expectedFingerprint: first.fingerprint)
        #expect(first == second)
        #expect(lstatOf(marker) != nil)
        #expect(try store.fingerprints() == [first.fingerprint])
        #expect(scratch.imagesEntries() == [first.fingerprint, first.fingerprint + ".tar.gz"])

        try store.removeLayer(fingerprint: first.fingerprint)
        #expect(store.layer(fingerprint: first.fingerprint) == nil)
        #expect(store.tarballPath(fingerprint: first.fingerprint) == nil)
        #expect(scratch.imagesEntries() == [])
        try store.removeLayer(fingerprint: first.fingerprint)  // absent: no error
    }

    @Test(.enabled(if: isRoot, "the store keeps the tarball's owners, which needs root"))
    func wrongExpectedFingerprintLeavesNothing() throws {
        let scratch = Scratch()
        defer { scratch.cleanup() }
        var w = TarWriter()
        w.metadata()
        w.dir("rootfs/")
        w.end()
        let tarball = scratch.write("img.tar", w.bytes)
        #expect(throws: ImageError.self) {
            try scratch.store().importTarball(at: tarball, maxBytes: 1 << 20, expectedFingerprint: String(repeating: "0", count: 64))
        }
        #expect(scratch.imagesEntries() == [])
    }

    @Test(.enabled(if: isRoot, "the store keeps the tarball's owners, which needs root"))
    func largeFileIsStreamed() throws {
        let scratch = Scratch()
        defer { scratch.cleanup() }
        // 24 MiB through a 64 KiB buffer, compared byte for byte.
        var generator = SystemRandomNumberGenerator()
        var content = [UInt8](repeating: 0, count: 24 << 20)
        for i in stride(from: 0, to: content.count, by: 8) {
            withUnsafeBytes(of: generator.next() as UInt64) { content.replaceSubrange(i..<(i + 8), with: $0) }
        }
        var w = TarWriter()
        w.metadata()
        w.dir("rootfs/")
        w.entry("rootfs/blob", type: "0", data: content)
        w.end()
        let tarball = scratch.write("img.tar", w.bytes)
        content = []
        let layer = try scratch.store().importTarball(at: tarball, maxBytes: 64 << 20)
        let unpacked = try #require(FileManager.default.contents(atPath: layer.rootfsPath + "/blob"))
        let expected = Array(w.bytes[(512 * 3 + 512)..<(512 * 3 + 512 + (24 << 20))])
        #expect(unpacked == Data(expected))
    }

    @Test(.enabled(if: isRoot, "the store keeps the tarball's owners, which needs root"))
    func concurrentImportsOfOneTarballGiveOneLayer() async throws {
        let scratch = Scratch()
        defer { scratch.cleanup() }
        var w = TarWriter()
        w.metadata()
        w.dir("rootfs/")
        for i in 0..<300 { w.file("rootfs/f\(i)", String(repeating: "x", count: i * 10)) }
        w.end()
        let tarball = scratch.write("img.tar", w.bytes)
        let store = scratch.store()
        let layers = try await withThrowingTaskGroup(of: ImportedLayer.self) { group in
            for _ in 0..<4 { group.addTask { try store.importTarball(at: tarball, maxBytes: 16 << 20) } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(Set(layers.map(\.fingerprint)).count == 1)
        let fp = layers[0].fingerprint
        #expect(scratch.imagesEntries() == [fp, fp + ".tar"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: layers[0].rootfsPath).count == 300)
    }

    /// A tree shaped like a small distribution (many small files): checks every
    /// file arrived and prints the time, for the figures in the report.
    @Test(.enabled(if: toolsPresent && isRoot, "needs root and tar, gzip"))
    func manySmallFiles() throws {
        let scratch = Scratch()
        defer { scratch.cleanup() }
        let src = scratch.path + "/src"
        let fm = FileManager.default
        try fm.createDirectory(atPath: src + "/rootfs", withIntermediateDirectories: true)
        try "architecture: x86_64\n".write(toFile: src + "/metadata.yaml", atomically: false, encoding: .utf8)
        for d in 0..<100 {
            let dir = "\(src)/rootfs/usr/share/pkg\(d)"
            try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
            for f in 0..<50 { try String(repeating: "line \(f)\n", count: f).write(toFile: "\(dir)/file\(f)", atomically: false, encoding: .utf8) }
        }
        let tar = scratch.path + "/many.tar"
        try run(["/usr/bin/tar", "--numeric-owner", "-C", src, "-czf", tar, "."])
        let clock = ContinuousClock()
        var layer: ImportedLayer?
        let elapsed = try clock.measure { layer = try scratch.store().importTarball(at: tar, maxBytes: 256 << 20) }
        let root = try #require(layer).rootfsPath
        var files = 0
        for d in 0..<100 { files += try fm.contentsOfDirectory(atPath: "\(root)/usr/share/pkg\(d)").count }
        #expect(files == 5000)
        #expect(contents("\(root)/usr/share/pkg7/file3") == "line 3\nline 3\nline 3\n")
        print("images: imported 5000 files + 100 dirs (tar.gz) in \(elapsed)")
    }
}
