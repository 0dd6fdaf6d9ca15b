import APITypes
import ClusterDB
import Images
@testable import Instances
import Runtime
import Testing

/// Image templates over a fake host: the pending key at create, files in the start spec of the
/// first start (and of every start for `start` templates), the key removed after success.
@Suite struct TemplateUseCaseTests {
    static let templated = "7e" + String(repeating: "3", count: 62)

    /// Adds image `templated` (alias `templated`) with hostname (create, copy), hosts
    /// (create, create_only) and motd (start) templates.
    func addTemplatedImage(_ h: Harness) async throws {
        try await h.db.transaction { tx in
            let image = try tx.insertImage(NewImage(fingerprint: Self.templated, size: 1024, architecture: "x86_64", properties: ["os": "Debian"]))
            try tx.addAlias(name: "templated", imageID: image.id)
            try tx.addImageMember(imageID: image.id, memberID: h.member.id)
        }
        h.layers.add(Self.templated, templates: [
            "/etc/hostname": ImageTemplate(when: [.create, .copy], template: "hostname.tpl"),
            "/etc/hosts": ImageTemplate(when: [.create], createOnly: true, template: "hosts.tpl"),
            "/etc/motd": ImageTemplate(when: [.start], template: "motd.tpl", properties: ["greeting": "hi"]),
        ])
        h.layers.templateFiles.withLock {
            $0["hostname.tpl"] = "{{ container.name }}\n"
            $0["hosts.tpl"] = "127.0.1.1 {{ instance.name }}\n"
            $0["motd.tpl"] = "{{ properties.greeting }} {{ trigger }} {{ config_get(\"user.who\", \"nobody\") }}\n"
        }
    }

    func launchTemplated(_ h: Harness, _ name: String, start: Bool) async throws {
        let post = InstancesPost(name: name, source: .init(alias: "templated"), config: ["user.who": "ops"], start: start)
        let op = try await h.finish(try await h.lifecycle.create(post))
        try #require(op.statusCode == StatusCode.success.rawValue, "create \(name): \(op.err)")
    }

    func files(_ spec: ContainerSpec) -> [String: String] {
        Dictionary(spec.files.map { ($0.path, String(decoding: $0.content, as: UTF8.self)) }, uniquingKeysWith: { $1 })
    }

    @Test func firstStartRendersCreateTemplatesThenTheKeyIsGone() async throws {
        try await withHarness { h in
            try await addTemplatedImage(h)
            try await launchTemplated(h, "web1", start: false)
            #expect(try await h.row("web1")?.config["volatile.apply_template"] == "create")

            #expect(try await h.changeState("web1", "start").statusCode == StatusCode.success.rawValue)
            let first = try #require(h.host.startSpecs.withLock { $0.last })
            #expect(files(first) == [
                "/etc/hostname": "web1\n", "/etc/hosts": "127.0.1.1 web1\n", "/etc/motd": "hi start ops\n",
            ])
            #expect(first.files.first { $0.path == "/etc/hosts" }?.createOnly == true)
            // create's files come before start's.
            #expect(first.files.map(\.path) == ["/etc/hostname", "/etc/hosts", "/etc/motd"])
            #expect(try await h.row("web1")?.config["volatile.apply_template"] == nil)
            #expect(try await h.row("web1")?.config["user.who"] == "ops")

            _ = try await h.changeState("web1", "stop")
            _ = try await h.changeState("web1", "start")
            let second = try #require(h.host.startSpecs.withLock { $0.last })
            #expect(files(second) == ["/etc/motd": "hi start ops\n"])
        }
    }

    @Test func launchWithStartRendersAndClearsTheKey() async throws {
        try await withHarness { h in
            try await addTemplatedImage(h)
            try await launchTemplated(h, "web2", start: true)
            let spec = try #require(h.host.startSpecs.withLock { $0.last })
            #expect(files(spec)["/etc/hostname"] == "web2\n")
            let row = try #require(try await h.row("web2"))
            #expect(row.config["volatile.apply_template"] == nil && row.powerState == .running)
        }
    }

    @Test func imageWithoutTemplatesGivesNoFiles() async throws {
        try await withHarness { h in
            try await h.launch("plain", start: true)
            #expect(h.host.startSpecs.withLock { $0.last?.files } == [])
            try await h.launch("plain2")
            _ = try await h.changeState("plain2", "start")
            #expect(h.host.startSpecs.withLock { $0.last?.files } == [])
            #expect(try await h.row("plain2")?.config["volatile.apply_template"] == nil)
        }
    }

    @Test func aFailedStartKeepsTheKey() async throws {
        try await withHarness { h in
            try await addTemplatedImage(h)
            try await launchTemplated(h, "web3", start: false)
            h.host.failStart.withLock { _ = $0.insert("web3") }
            #expect(try await h.changeState("web3", "start").statusCode == StatusCode.failure.rawValue)
            #expect(try await h.row("web3")?.config["volatile.apply_template"] == "create")
        }
    }

    @Test func aBrokenTemplateFailsTheStartNamingIt() async throws {
        try await withHarness { h in
            try await addTemplatedImage(h)
            h.layers.templateFiles.withLock { $0["hostname.tpl"] = "{% for x in y %}{% endfor %}" }
            try await launchTemplated(h, "web4", start: false)
            let op = try await h.changeState("web4", "start")
            #expect(op.statusCode == StatusCode.failure.rawValue)
            #expect(op.err.contains("hostname.tpl") && op.err.contains("unsupported tag"))
            #expect(h.host.startSpecs.withLock { $0.isEmpty })
        }
    }

    @Test func usersCannotSetThePendingKey() async throws {
        try await withHarness { h in
            #expect(await kind { try await h.launch("x", config: ["volatile.apply_template": "create"]) } == .invalid)
        }
    }
}
