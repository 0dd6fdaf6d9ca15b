import CRuntime
import Foundation
import Glibc
import Testing
@testable import Runtime

/// `writeStartFile` on a plain directory standing in for a mounted root: no container needed,
/// root only for the chown of what it creates.
@Suite(.enabled(if: getuid() == 0, "new files are chowned to the container's root, which needs root"))
struct StartFilesTests {
    let root: String
    let fd: Int32
    static let owner: UInt32 = 1_234_567

    init() throws {
        root = "/tmp/lxd-swift-startfiles-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: root + "/rootfs/etc", withIntermediateDirectories: true)
        fd = open(root + "/rootfs", cr_O_PATH | O_DIRECTORY | O_CLOEXEC)
    }

    func cleanup() {
        close(fd)
        try? FileManager.default.removeItem(atPath: root)
    }

    func write(_ path: String, _ text: String, createOnly: Bool = false) throws(RuntimeError) {
        try ContainerRuntime.writeStartFile(ContainerSpec.File(path: path, content: Array(text.utf8), createOnly: createOnly),
                                            root: fd, owner: Self.owner, shown: path)
    }

    func read(_ path: String) -> String? { try? String(contentsOfFile: root + "/rootfs" + path, encoding: .utf8) }

    func owner(_ path: String) -> (uid: UInt32, mode: UInt32)? {
        var st = stat()
        guard lstat(root + "/rootfs" + path, &st) == 0 else { return nil }
        return (st.st_uid, UInt32(st.st_mode) & 0o7777)
    }

    @Test func newFilesAndParentsBelongToTheContainersRoot() throws {
        defer { cleanup() }
        try write("/var/lib/cloud/seed/meta-data", "x\n")
        #expect(read("/var/lib/cloud/seed/meta-data") == "x\n")
        #expect(owner("/var/lib/cloud/seed/meta-data").map { "\($0.uid) \(String($0.mode, radix: 8))" } == "\(Self.owner) 644")
        #expect(owner("/var/lib").map { "\($0.uid) \(String($0.mode, radix: 8))" } == "\(Self.owner) 755")
    }

    @Test func existingFilesAreReplacedInPlaceUnlessCreateOnly() throws {
        defer { cleanup() }
        try "old\n".write(toFile: root + "/rootfs/etc/hostname", atomically: false, encoding: .utf8)
        chmod(root + "/rootfs/etc/hostname", 0o600)
        try write("/etc/hostname", "kept\n", createOnly: true)
        #expect(read("/etc/hostname") == "old\n")
        try write("/etc/hostname", "new\n")
        #expect(read("/etc/hostname") == "new\n")
        #expect(owner("/etc/hostname").map { "\($0.uid) \(String($0.mode, radix: 8))" } == "0 600", "mode and owner kept")
    }

    @Test func aDirectoryTargetIsRefused() throws {
        defer { cleanup() }
        #expect { try write("/etc", "x") } throws: { "\($0)".contains("is a directory") }
    }

    @Test func symlinksResolveInsideTheRoot() throws {
        defer { cleanup() }
        let outside = root + "/outside"
        try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: root + "/rootfs" + outside, withIntermediateDirectories: true)
        // Absolute and relative climbs, a symlinked parent directory, and a dangling target.
        try FileManager.default.createSymbolicLink(atPath: root + "/rootfs/etc/hostname", withDestinationPath: "/../../..\(outside)/a")
        try FileManager.default.createSymbolicLink(atPath: root + "/rootfs/etc/hosts", withDestinationPath: "../../../../..\(outside)/b")
        try FileManager.default.createSymbolicLink(atPath: root + "/rootfs/link", withDestinationPath: outside)
        try write("/etc/hostname", "a")
        try write("/etc/hosts", "b")
        try write("/link/sub/c", "c")
        #expect(try FileManager.default.contentsOfDirectory(atPath: outside) == [])
        #expect(read(outside + "/a") == "a" && read(outside + "/b") == "b" && read(outside + "/sub/c") == "c")
    }
}
