import APITypes
@testable import Instances
import Glibc
import Runtime
import Synchronization
import Testing

/// File push and pull, console and exec refusals, over the fake host.
@Suite struct AccessUseCaseTests {
    @Test func pushThenPullRoundTripsContentModeAndOwner() async throws {
        try await withHarness { h in
            try await h.launch("c1")
            try await h.access.writeFile("c1", path: "/etc/motd", InstanceFile(content: Array("hi\n".utf8), uid: 1000, gid: 1001, mode: 0o640))
            let file = try await h.access.readFile("c1", path: "/etc/motd")
            #expect(file.content == Array("hi\n".utf8))
            #expect(file.mode == 0o640 && file.uid == 1000 && file.gid == 1001 && file.type == "file")
        }
    }

    /// lxc's `file pull c1/etc/motd` asks for `etc/motd`: from the container's root, as LXD.
    @Test func relativePathsStartAtTheRootAndOnlyRegularFilesArePushed() async throws {
        try await withHarness { h in
            try await h.launch("c1")
            let file = InstanceFile(content: [1], uid: 0, gid: 0, mode: 0o644)
            #expect(await kind { try await h.access.writeFile("c1", path: "/etc", InstanceFile(content: [], uid: 0, gid: 0, mode: 0o755, type: "directory")) } == .invalid)
            #expect(await kind { try await h.access.writeFile("nope", path: "/etc/motd", file) } == .notFound)
            #expect(!h.host.callLog.contains { $0.hasPrefix("write") })
            try await h.access.writeFile("c1", path: "etc/motd", file)
            #expect(h.host.callLog.contains("write c1 /etc/motd"))
            #expect(try await h.access.readFile("c1", path: "etc/motd").content == [1])
        }
    }

    @Test func hostFailuresMapToTheirAPIStatus() async throws {
        try await withHarness { h in
            try await h.launch("c1")
            // The fake answers ENOENT for a file it does not hold.
            #expect(await kind { _ = try await h.access.readFile("c1", path: "/missing") } == .notFound)
            h.host.readError.withLock { $0 = .system("open", on: "/loop in c1", ELOOP) }
            #expect(await kind { _ = try await h.access.readFile("c1", path: "/loop") } == .invalid)
            h.host.readError.withLock { $0 = .system("read", on: "/disk in c1", EIO) }
            #expect(await kind { _ = try await h.access.readFile("c1", path: "/disk") } == .internal)
        }
    }

    @Test func pullOfADirectoryListsItsEntries() async throws {
        try await withHarness { h in
            try await h.launch("c1")
            h.host.containers.withLock { $0["c1"]?.files["/etc"] = ContainerFile(content: [], mode: 0o755, uid: 0, gid: 0, entries: ["hosts", "motd"]) }
            let dir = try await h.access.readFile("c1", path: "/etc")
            #expect(dir.type == "directory")
            #expect(String(decoding: dir.content, as: UTF8.self) == "hosts\nmotd")
        }
    }

    @Test func execNeedsARunningInstanceACommandAndWebsockets() async throws {
        try await withHarness { h in
            try await h.launch("c1")
            #expect(await kind { _ = try await h.access.exec("c1", InstanceExecPost(command: ["true"])) } == .invalid)
            _ = try await h.changeState("c1", "start")
            #expect(await kind { _ = try await h.access.exec("c1", InstanceExecPost(command: [])) } == .invalid)
            #expect(await kind { _ = try await h.access.exec("c1", InstanceExecPost(command: ["true"], waitForWebsocket: false)) } == .invalid)
            #expect(await kind { _ = try await h.access.exec("nope", InstanceExecPost(command: ["true"])) } == .notFound)
        }
    }

    @Test func consoleLogOfAnUnknownInstanceIsNotFound() async throws {
        try await withHarness { h in
            #expect(await kind { _ = try await h.access.consoleLog("nope") } == .notFound)
            try await h.launch("c1")
            #expect(try await h.access.consoleLog("c1") == Array("console of c1\n".utf8))
        }
    }
}
