import Foundation
import Testing

/// An agent owns its data directory: a directory made by `mktemp -d` (0700) is made 0711 at
/// start, so unprivileged containers launch; a parent that still blocks is named in the error.
@Suite(.serialized, .enabled(if: Prerequisites.available, "needs root, busybox and the built binaries"))
struct DataDirTests {
    static func makeTemp(_ tag: String) throws -> String {
        var template = Array("/tmp/lxd-swift-datadir-\(tag)-XXXXXX".utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw HarnessError("mkdtemp in /tmp failed: errno \(errno)")
        }
        return template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    static func mode(_ path: String) -> mode_t? {
        var st = stat()
        return stat(path, &st) == 0 ? st.st_mode & 0o7777 : nil
    }

    @Test func aMktempDataDirectoryIsMadeTraversableAndUnprivilegedLaunchesWork() throws {
        let dir = try Self.makeTemp("own")
        #expect(Self.mode(dir) == 0o700, "mkdtemp makes 0700: the case this test is about")
        let agent = try TestAgent(name: "dd1", dataDir: dir)
        defer { agent.destroy() }
        #expect(Self.mode(dir) == 0o711, "the agent leaves its data directory \(String(Self.mode(dir) ?? 0, radix: 8))")
        try agent.importBusybox()
        try agent.ok(["launch", "busybox", "dd1-c1"])
        #expect(try agent.ok(["config", "get", "dd1-c1", "volatile.idmap.base"]).trimmingCharacters(in: .whitespacesAndNewlines) != "",
                "an unprivileged container (mapped root) is what needs the search bit")
        let r = try agent.ctl(["exec", "dd1-c1", "--", "true"])
        #expect(r.status == 0, "exec in the launched container: \(r.stderr)")
    }

    @Test func aParentThatBlocksTheContainersRootIsNamed() throws {
        let parent = try Self.makeTemp("parent")   // 0700, and not the agent's to change
        defer { try? FileManager.default.removeItem(atPath: parent) }
        let agent = try TestAgent(name: "dd2", dataDir: parent + "/lxd")
        defer { agent.destroy() }
        try agent.importBusybox()
        let failed = try agent.ctl(["launch", "busybox", "dd2-c1"])
        #expect(failed.status != 0, "launch under a 0700 parent: \(failed.stdout)")
        #expect(failed.stderr.contains("chmod o+x \(parent)"), "the error names the parent to fix: \(failed.stderr)")
        #expect(Self.mode(parent) == 0o700, "the agent changed a parent it does not own")

        // Doing what the error says is enough.
        chmod(parent, 0o711)
        _ = try agent.ctl(["delete", "--force", "dd2-c1"])
        try agent.ok(["launch", "busybox", "dd2-c1"])
        let r = try agent.ctl(["exec", "dd2-c1", "--", "true"])
        #expect(r.status == 0, "exec after chmod o+x \(parent): \(r.stderr)")
    }
}
