import Foundation
import Glibc
import Testing
@testable import Images

/// Every bad image is refused with a clear error and leaves nothing under
/// the images directory (no layer, no temporary directory, no tarball copy).
@Suite(.enabled(if: getuid() == 0, "the store keeps the tarball's owners, which needs root"))
struct BadImageTests {
    /// Imports `bytes` and returns the error's description; records an issue if it succeeded.
    func refusal(_ bytes: [UInt8], maxBytes: Int64 = 16 << 20, in scratch: Scratch, _ location: SourceLocation = #_sourceLocation) -> String {
        let tarball = scratch.write("bad.tar", bytes)
        do {
            let layer = try scratch.store().importTarball(at: tarball, maxBytes: maxBytes)
            Issue.record("import succeeded: \(layer)", sourceLocation: location)
            return ""
        } catch {
            #expect(scratch.imagesEntries() == [], "left behind", sourceLocation: location)
            return "\(error)"
        }
    }

    func image(_ body: (inout TarWriter) -> Void) -> [UInt8] {
        var w = TarWriter()
        w.metadata()
        w.dir("rootfs/")
        w.dir("rootfs/etc/")
        w.file("rootfs/etc/hostname", "ok")
        body(&w)
        w.end()
        return w.bytes
    }

    @Test func missingMetadata() {
        let scratch = Scratch()
        defer { scratch.cleanup() }
        var w = TarWriter()
        w.dir("rootfs/")
        w.file("rootfs/hello", "hi")
        w.end()
        #expect(refusal(w.bytes, in: scratch) == "image has no metadata.yaml")
    }

    @Test func missingRootfs() {
        let scratch = Scratch()
        defer { scratch.cleanup() }
        var w = TarWriter()
        w.metadata()
        w.end()
        #expect(refusal(w.bytes, in: scratch).contains("no rootfs/"))
    }

    @Test func dotDotEscape() {
        let scratch = Scratch()
        defer { scratch.cleanup() }
        let error = refusal(image { $0.file("rootfs/../../../escaped", "x") }, in: scratch)
        #expect(error.contains("contains '..'"))
        #expect(lstatOf(scratch.path + "/escaped") == nil && lstatOf(scratch.path + "/lxd/escaped") == nil)
    }

    @Test func absolutePath() {
        let scratch = Scratch()
        defer { scratch.cleanup() }
        let target = scratch.path + "/absolute-victim"
        #expect(refusal(image { $0.file(target, "x") }, in: scratch).contains("absolute path"))
        #expect(lstatOf(target) == nil)
    }

    @Test func entryOutsideRootfs() {
        let scratch = Scratch()
        defer { scratch.cleanup() }
        #expect(refusal(image { $0.file("etc/passwd", "x") }, in: scratch).contains("outside rootfs/"))
    }

    @Test func writeThroughSymlinkIsRefused() throws {
        let scratch = Scratch()
        defer { scratch.cleanup() }
        // Stand-in for the host's /etc.
        let host = scratch.path + "/host-etc"
        try FileManager.default.createDirectory(atPath: host, withIntermediateDirectories: false)
        let absolute = refusal(image {
            $0.symlink("rootfs/hostetc", to: host)
            $0.file("rootfs/hostetc/passwd", "root::0:0::/:/bin/sh\n")
        }, in: scratch)
        #expect(absolute.contains("through the symlink rootfs/hostetc"))
        let relative = refusal(image {
            $0.symlink("rootfs/up", to: "../../../..")
            $0.dir("rootfs/up/host-etc/")
            $0.file("rootfs/up/host-etc/passwd", "x")
        }, in: scratch)
        #expect(relative.contains("through the symlink rootfs/up"))
        let viaHardlink = refusal(image {
            $0.symlink("rootfs/hostetc", to: host)
            $0.hardlink("rootfs/stolen", to: "rootfs/hostetc/secret")
        }, in: scratch)
        #expect(viaHardlink.contains("through the symlink rootfs/hostetc"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: host) == [])
    }

    @Test func fileReplacingASymlinkDoesNotWriteThroughIt() throws {
        let scratch = Scratch()
        defer { scratch.cleanup() }
        let victim = scratch.path + "/victim"
        try "keep".write(toFile: victim, atomically: false, encoding: .utf8)
        let tarball = scratch.write("img.tar", image {
            $0.symlink("rootfs/x", to: victim)
            $0.file("rootfs/x", "replaced")
            $0.hardlink("rootfs/y", to: "rootfs/etc/hostname")
            $0.file("rootfs/y", "new y")
        })
        let layer = try scratch.store().importTarball(at: tarball, maxBytes: 1 << 20)
        #expect(contents(victim) == "keep")
        #expect(contents(layer.rootfsPath + "/x") == "replaced")
        #expect(lstatOf(layer.rootfsPath + "/x")!.st_mode & S_IFMT == S_IFREG)
        // Replacing a hard-linked name must not change the other name's content.
        #expect(contents(layer.rootfsPath + "/etc/hostname") == "ok")
        #expect(contents(layer.rootfsPath + "/y") == "new y")
    }

    @Test func hardlinkEscape() {
        let scratch = Scratch()
        defer { scratch.cleanup() }
        for target in ["../../../../etc/passwd", "/etc/passwd", "metadata.yaml", "rootfs/../metadata.yaml"] {
            let error = refusal(image { $0.hardlink("rootfs/passwd", to: target) }, in: scratch)
            #expect(error.contains("..") || error.contains("outside rootfs/"), "\(target): \(error)")
        }
        #expect(refusal(image { $0.hardlink("rootfs/missing", to: "rootfs/not-there") }, in: scratch).contains("does not come before it"))
    }

    @Test func corruptChecksum() {
        let scratch = Scratch()
        defer { scratch.cleanup() }
        let error = refusal(image { $0.entry("rootfs/bad", type: "0", data: [1, 2, 3], corruptChecksum: true) }, in: scratch)
        #expect(error.contains("checksum mismatch"))
    }

    @Test func notATarball() {
        let scratch = Scratch()
        defer { scratch.cleanup() }
        #expect(refusal(Array(String(repeating: "this is not a tarball\n", count: 100).utf8), in: scratch).contains("corrupt image tarball"))
        #expect(refusal([], in: scratch).contains("truncated"))
    }

    @Test func truncatedArchive() {
        let scratch = Scratch()
        defer { scratch.cleanup() }
        let full = image { $0.file("rootfs/data", String(repeating: "d", count: 5000)) }
        for cut in [full.count - 1024 - 1000, full.count - 1024, full.count - 1024 - 5120 - 100] {
            let error = refusal(Array(full[..<cut]), in: scratch)
            #expect(error.contains("truncated"), "cut at \(cut): \(error)")
        }
    }

    @Test(.enabled(if: access("/usr/bin/gzip", X_OK) == 0 && access("/usr/bin/xz", X_OK) == 0, "needs gzip and xz"))
    func truncatedCompressedArchive() throws {
        let scratch = Scratch()
        defer { scratch.cleanup() }
        var content = [UInt8](repeating: 0, count: 200_000)
        var rng = SystemRandomNumberGenerator()
        for i in content.indices { content[i] = UInt8(truncatingIfNeeded: rng.next() as UInt64) }
        let plain = image { $0.entry("rootfs/random", type: "0", data: content) }
        for tool in ["/usr/bin/gzip", "/usr/bin/xz"] {
            let path = scratch.write("t.tar", plain)
            try run([tool, "-f", path])
            let compressed = Array(try Data(contentsOf: URL(fileURLWithPath: path + (tool.hasSuffix("gzip") ? ".gz" : ".xz"))))
            let error = refusal(Array(compressed[..<(compressed.count / 2)]), in: scratch)
            #expect(error.contains("truncated"), "\(tool): \(error)")
            var damaged = compressed
            damaged[damaged.count / 2] ^= 0xff
            let damage = refusal(damaged, in: scratch)
            #expect(damage.contains("cannot decompress") || damage.contains("corrupt"), "\(tool): \(damage)")
        }
    }

    @Test(.enabled(if: access("/usr/bin/gzip", X_OK) == 0, "needs gzip"))
    func oversize() throws {
        let scratch = Scratch()
        defer { scratch.cleanup() }
        let plain = image { $0.entry("rootfs/zeros", type: "0", data: [UInt8](repeating: 0, count: 4 << 20)) }
        // The plain tarball itself is over the limit.
        #expect(refusal(plain, maxBytes: 1 << 20, in: scratch).contains("larger than the limit of 1048576"))
        // A small gzip that unpacks beyond the limit (a "zip bomb").
        let path = scratch.write("z.tar", plain)
        try run(["/usr/bin/gzip", "-9", "-f", path])
        let gz = Array(try Data(contentsOf: URL(fileURLWithPath: path + ".gz")))
        #expect(gz.count < 1 << 20)
        #expect(refusal(gz, maxBytes: 1 << 20, in: scratch).contains("larger than the limit"))
    }

    @Test func unsupportedEntryType() {
        let scratch = Scratch()
        defer { scratch.cleanup() }
        #expect(refusal(image { $0.entry("rootfs/sparse", type: "S", data: [0]) }, in: scratch).contains("unsupported tar type"))
    }

    @Test func symlinkAsMetadataOrRootfs() {
        let scratch = Scratch()
        defer { scratch.cleanup() }
        var w = TarWriter()
        w.symlink("metadata.yaml", to: "/etc/shadow")
        w.dir("rootfs/")
        w.end()
        #expect(refusal(w.bytes, in: scratch).contains("must be a regular file"))
        var r = TarWriter()
        r.metadata()
        r.symlink("rootfs", to: "/")
        r.end()
        #expect(refusal(r.bytes, in: scratch).contains("must be a directory"))
    }

    /// An image whose metadata.yaml declares /etc/hostname rendered from templates/`name`.
    func templated(_ name: String, _ body: (inout TarWriter) -> Void) -> [UInt8] {
        var w = TarWriter()
        w.metadata("architecture: x86_64\ntemplates:\n  /etc/hostname:\n    when: [create]\n    template: \(name)\n")
        w.dir("rootfs/")
        w.dir("templates/")
        body(&w)
        w.end()
        return w.bytes
    }

    @Test func templateFileMustBeInTheImage() {
        let scratch = Scratch()
        defer { scratch.cleanup() }
        #expect(refusal(templated("hostname.tpl") { _ in }, in: scratch).contains("templates/hostname.tpl (template for /etc/hostname) is missing"))
    }

    @Test func templateFileMustNotBeASymlink() {
        let scratch = Scratch()
        defer { scratch.cleanup() }
        let direct = refusal(templated("hostname.tpl") { $0.symlink("templates/hostname.tpl", to: "/etc/shadow") }, in: scratch)
        #expect(direct.contains("is a symlink"))
        let viaDirectory = refusal(templated("sub/hostname.tpl") { $0.symlink("templates/sub", to: "/etc") }, in: scratch)
        #expect(viaDirectory.contains("not below a plain directory"))
        let directory = refusal(templated("hostname.tpl") { $0.dir("templates/hostname.tpl/") }, in: scratch)
        #expect(directory.contains("not a regular file"))
    }

    @Test func hostileTemplateTargetLeavesNothing() {
        let scratch = Scratch()
        defer { scratch.cleanup() }
        var w = TarWriter()
        w.metadata("architecture: x86_64\ntemplates:\n  /etc/../../../host: {when: [create], template: t.tpl}\n")
        w.dir("rootfs/")
        w.file("templates/t.tpl", "x")
        w.end()
        #expect(refusal(w.bytes, in: scratch).contains("contains '..'"))
    }

    @Test func templatesAreKeptAndReadable() throws {
        let scratch = Scratch()
        defer { scratch.cleanup() }
        let tarball = scratch.write("img.tar", templated("hostname.tpl") { $0.file("templates/hostname.tpl", "{{ container.name }}\n") })
        let store = scratch.store()
        let layer = try store.importTarball(at: tarball, maxBytes: 1 << 20)
        #expect(layer.metadata.templates["/etc/hostname"]?.template == "hostname.tpl")
        #expect(store.layer(fingerprint: layer.fingerprint)?.metadata == layer.metadata)
        #expect(try store.template(fingerprint: layer.fingerprint, name: "hostname.tpl") == "{{ container.name }}\n")
        #expect(throws: ImageError.self) { try store.template(fingerprint: layer.fingerprint, name: "../metadata.yaml") }
    }

    @Test func deviceNodesAreSkipped() throws {
        let scratch = Scratch()
        defer { scratch.cleanup() }
        let tarball = scratch.write("img.tar", image {
            $0.dir("rootfs/dev/")
            $0.entry("rootfs/dev/mem", type: "3", mode: 0o666, devMajor: 1, devMinor: 1)
            $0.entry("rootfs/dev/sda", type: "4", mode: 0o660, devMajor: 8, devMinor: 0)
        })
        let layer = try scratch.store().importTarball(at: tarball, maxBytes: 1 << 20)
        #expect(lstatOf(layer.rootfsPath + "/dev") != nil)
        #expect(lstatOf(layer.rootfsPath + "/dev/mem") == nil && lstatOf(layer.rootfsPath + "/dev/sda") == nil)
    }

    @Test func leftoversAreRemoved() throws {
        let scratch = Scratch()
        defer { scratch.cleanup() }
        let fm = FileManager.default
        try fm.createDirectory(atPath: scratch.images + "/.unpack-abc-1/rootfs/bin", withIntermediateDirectories: true)
        // A symlink inside a leftover must be removed, not followed.
        let outside = scratch.path + "/outside"
        try fm.createDirectory(atPath: outside, withIntermediateDirectories: false)
        try "keep".write(toFile: outside + "/file", atomically: false, encoding: .utf8)
        try fm.createSymbolicLink(atPath: scratch.images + "/.unpack-abc-1/rootfs/bin/out", withDestinationPath: outside)
        #expect(fm.createFile(atPath: scratch.images + "/.incoming-2", contents: Data([1])))
        #expect(fm.createFile(atPath: scratch.images + "/keep-me", contents: Data([1])))
        try scratch.store().removeLeftovers()
        #expect(scratch.imagesEntries() == ["keep-me"])
        #expect(contents(outside + "/file") == "keep")
    }
}
