import Testing
@testable import Images

@Suite struct ImageLayoutTests {
    @Test func placesNormalisedPaths() throws {
        #expect(try ImagePlace.of(path: "metadata.yaml") == .metadata)
        #expect(try ImagePlace.of(path: "./metadata.yaml") == .metadata)
        #expect(try ImagePlace.of(path: "./") == .archiveRoot)
        #expect(try ImagePlace.of(path: "rootfs/") == .rootfs([]))
        #expect(try ImagePlace.of(path: "./rootfs//bin/./sh") == .rootfs(["bin", "sh"]))
        #expect(try ImagePlace.of(path: "templates/hostname.tpl") == .templates(["hostname.tpl"]))
    }

    @Test func refusesEscapesAndStrangers() {
        for path in ["/etc/passwd", "rootfs/../../etc/passwd", "rootfs/a/../b", "..", "etc/passwd", "metadata.yaml/x", "rootfsx/a"] {
            #expect(throws: ImageError.self, "\(path)") { try ImagePlace.of(path: path) }
        }
    }

    @Test func hardLinksStayInRootfs() throws {
        let ok = TarEntry(path: "rootfs/bin/sh", kind: .hardlink, linkTarget: "./rootfs/bin/busybox", mode: 0o755)
        #expect(try ImagePlace.check(ok) == .rootfs(["bin", "sh"]))
        for target in ["../etc/passwd", "/etc/passwd", "metadata.yaml", "rootfs/../metadata.yaml", "rootfs", "templates/x"] {
            var bad = ok
            bad.linkTarget = target
            #expect(throws: ImageError.self, "\(target)") { try ImagePlace.check(bad) }
        }
        let fromTemplates = TarEntry(path: "templates/x", kind: .hardlink, linkTarget: "rootfs/bin/busybox", mode: 0o644)
        #expect(throws: ImageError.self) { try ImagePlace.check(fromTemplates) }
    }

    @Test func topLevelKindsAreChecked() {
        #expect(throws: ImageError.self) { try ImagePlace.check(TarEntry(path: "metadata.yaml", kind: .symlink, linkTarget: "/etc/shadow", mode: 0o777)) }
        #expect(throws: ImageError.self) { try ImagePlace.check(TarEntry(path: "rootfs", kind: .symlink, linkTarget: "/", mode: 0o777)) }
        #expect(throws: ImageError.self) { try ImagePlace.check(TarEntry(path: "./", kind: .regular, mode: 0o644)) }
    }
}
