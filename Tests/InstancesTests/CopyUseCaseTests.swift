import APITypes
import ClusterDB
import Foundation
import InstanceConfig
@testable import Instances
import Testing

/// A copy request: what is checked before anything is written (pure), and the refusals of the
/// use case over a fake host and a real database, each leaving the rows as they were.
@Suite struct CopyUseCaseTests {
    static func post(_ source: String?, as name: String, live: Bool? = nil, config: [String: String]? = nil) -> InstancesPost {
        InstancesPost(name: name, source: .init(type: "copy", source: source, live: live), config: config)
    }

    @Test func theRequestNeedsTwoValidDifferentNamesAndNothingACopyCannotDo() throws {
        let ok = try CopyRequest(Self.post("c1", as: "c2"), options: CreateOptions())
        #expect(ok == CopyRequest(source: "c1", name: "c2", live: false), "absent is false, as LXD omits a false live")
        #expect(try CopyRequest(Self.post("c1", as: "c2", live: true), options: CreateOptions()).live == true)
        func refusal(_ post: InstancesPost, _ options: CreateOptions = CreateOptions()) -> ErrorKind? {
            do { _ = try CopyRequest(post, options: options); return nil } catch let e as InstancesError { return e.kind } catch { return nil }
        }
        #expect(refusal(Self.post(nil, as: "c2")) == .invalid)
        #expect(refusal(Self.post("", as: "c2")) == .invalid)
        #expect(refusal(Self.post("c1", as: "-bad")) == .invalid)
        #expect(refusal(Self.post("c1", as: "")) == .invalid)
        #expect(refusal(Self.post("../c1", as: "c2")) == .invalid)
        #expect(refusal(Self.post("c1", as: "c1")) == .conflict)
        #expect(refusal(Self.post("c1", as: "c2"), CreateOptions(count: 3)) == .invalid)
        var vm = Self.post("c1", as: "c2")
        vm.type = "virtual-machine"
        #expect(refusal(vm) == .invalid)
        var devices = Self.post("c1", as: "c2")
        devices.devices = ["eth0": ["type": "nic"]]
        #expect(refusal(devices) == .invalid)
        var start = Self.post("c1", as: "c2")
        start.start = true
        #expect(refusal(start) == .invalid)
    }

    @Test func theCopysConfigIsTheSourcesWithoutVolatileKeysAndTheRequestOnTop() throws {
        let source = ["limits.memory": "64MiB", "user.a": "1", "image.os": "Busybox", "volatile.idmap.base": "1000000",
                      "volatile.base_image": "ab", "volatile.apply_template": "create"]
        // What lxc copy sends: the source's whole config, volatile keys included, plus a change.
        var sent = source
        sent["user.a"] = "2"
        sent["volatile.idmap.base"] = "0"
        let config = try CopyRequest.config(source: source, requested: sent)
        #expect(config == ["limits.memory": "64MiB", "user.a": "2", "image.os": "Busybox"])
        #expect(try CopyRequest.config(source: source, requested: nil) == ["limits.memory": "64MiB", "user.a": "1", "image.os": "Busybox"])
        func refusal(_ requested: [String: String]) -> ErrorKind? {
            do { _ = try CopyRequest.config(source: source, requested: requested); return nil } catch let e as InstancesError { return e.kind } catch { return nil }
        }
        #expect(refusal(["image.os": "Other"]) == .invalid, "server keys only come back unchanged")
        #expect(refusal(["no.such.key": "1"]) == .invalid)
        #expect(refusal(["limits.memory": "lots"]) == .invalid)
        #expect(refusal(["security.privileged": "true"]) == .invalid, "the privilege is the source's")
    }

    @Test func refusalsLeaveEveryRowAsItWas() async throws {
        try await withHarness { h in
            try await h.launch("c1")
            try await h.launch("c3")
            // The fake host makes no directories; the copy's marker goes into the source's.
            let sourceDirectory = h.host.directory(of: InstanceRef(name: "c1"))
            try FileManager.default.createDirectory(atPath: sourceDirectory, withIntermediateDirectories: true)
            let before = try await h.rows()
            #expect(await kind { _ = try await h.lifecycle.create(Self.post("nope", as: "c2"), options: CreateOptions()) } == .notFound)
            #expect(await kind { _ = try await h.lifecycle.create(Self.post("c1", as: "c3"), options: CreateOptions()) } == .conflict)
            #expect(await kind { _ = try await h.lifecycle.create(Self.post("c1", as: "9c"), options: CreateOptions()) } == .invalid)
            #expect(await kind { _ = try await h.lifecycle.create(Self.post("c1", as: "c2"), options: CreateOptions(target: "m9")) } != nil, "an unknown member")
            // A running source: refused without a freeze, and on a host that cannot freeze.
            #expect(try await h.changeState("c1", "start").statusCode == StatusCode.success.rawValue)
            #expect(await kind { _ = try await h.lifecycle.create(Self.post("c1", as: "c2", live: false), options: CreateOptions()) } == .invalid)
            #expect(await kind { _ = try await h.lifecycle.create(Self.post("c1", as: "c2", live: true), options: CreateOptions()) } == .invalid)
            var after = try await h.rows()
            for i in after.indices { after[i].powerState = before[i].powerState; after[i].lastUsedAt = before[i].lastUsedAt; after[i].config = before[i].config }
            #expect(after == before)
            #expect(h.host.names.sorted() == ["c1", "c3"])
            #expect(try FileManager.default.contentsOfDirectory(atPath: sourceDirectory).isEmpty, "no copy marker left")
        }
    }
}
