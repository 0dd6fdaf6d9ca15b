import Foundation
import Testing

/// Image templates through the agent and a real container: metadata.yaml with `templates:`,
/// rendered at the first start before init, kept by later starts, never written outside the root.
@Suite(.serialized, .enabled(if: Prerequisites.available, "needs root, busybox and the built binaries"))
final class TemplateTests {
    let agent: TestAgent
    let work: String
    /// Where a naive writer would land on the host when following the image's symlink.
    let hostEscape: String

    init() throws {
        agent = try TestAgent(name: "tpl")
        work = "/tmp/lxd-swift-it-tpl-\(getpid())-\(UUID().uuidString.prefix(8))"
        hostEscape = "/tmp/lxd-swift-template-escape-\(getpid())"
    }

    deinit {
        agent.destroy()
        try? FileManager.default.removeItem(atPath: work)
        try? FileManager.default.removeItem(atPath: hostEscape)
    }

    /// The busybox test image plus templates: /etc/hostname (create), and /etc/issue (create),
    /// which the image makes a symlink `/../../../..<hostEscape>` climbing out of the root.
    func templatedImage() throws -> String {
        let busybox = try TestImages.busybox()
        let tree = "\(work)/tree"
        try FileManager.default.createDirectory(atPath: "\(tree)/templates", withIntermediateDirectories: true)
        func sh(_ script: String) throws {
            let r = try run("/bin/sh", ["-ec", script])
            guard r.status == 0 else { throw HarnessError("\(script): \(r.stderr)") }
        }
        try sh("tar -C '\(tree)' -xJf '\(busybox)'")
        let metadata = try String(contentsOfFile: "\(tree)/metadata.yaml", encoding: .utf8)
        try (metadata + """

            templates:
              /etc/hostname:
                when: [create, copy]
                template: hostname.tpl
              /etc/issue:
                when:
                  - create
                template: issue.tpl
                properties: {greeting: "hello from"}

            """).write(toFile: "\(tree)/metadata.yaml", atomically: true, encoding: .utf8)
        try "{{ container.name }}\n".write(toFile: "\(tree)/templates/hostname.tpl", atomically: true, encoding: .utf8)
        try "{{ properties.greeting }} {{ instance.name }}{% if config_get(\"user.tag\", \"\") %} ({{ config_get(\"user.tag\", \"\") }}){% endif %}\n"
            .write(toFile: "\(tree)/templates/issue.tpl", atomically: true, encoding: .utf8)
        try sh("ln -sfn '/../../../..\(hostEscape)' '\(tree)/rootfs/etc/issue'")
        let out = "\(work)/templated.tar.gz"
        try sh("tar -C '\(tree)' --numeric-owner -czf '\(out)' metadata.yaml templates rootfs")
        return out
    }

    @Test func templatesRenderAtTheFirstStartInsideTheRoot() throws {
        try? FileManager.default.removeItem(atPath: hostEscape)
        try agent.ok(["image", "import", try templatedImage(), "--alias", "templated"])
        try agent.ok(["init", "templated", "tpl1", "-c", "user.tag=blue"])
        #expect(try agent.ok(["config", "get", "tpl1", "volatile.apply_template"]) == "create\n")
        try agent.ok(["start", "tpl1"])

        #expect(try agent.ok(["exec", "tpl1", "--", "cat", "/etc/hostname"]) == "tpl1\n")
        #expect(try agent.ok(["exec", "tpl1", "--", "hostname"]) == "tpl1\n")
        // The symlinked target was followed inside the container's root, and the new file is
        // 0644 and owned by the container's root.
        let inside = "/tmp/lxd-swift-template-escape-\(getpid())"
        #expect(try agent.ok(["exec", "tpl1", "--", "cat", inside]) == "hello from tpl1 (blue)\n")
        #expect(try agent.ok(["exec", "tpl1", "--", "stat", "-c", "%u:%g %a", inside]) == "0:0 644\n")
        #expect(!FileManager.default.fileExists(atPath: hostEscape), "a template write escaped to the host's \(hostEscape)")
        #expect(try agent.ok(["config", "get", "tpl1", "volatile.apply_template"]).trimmingCharacters(in: .whitespacesAndNewlines).isEmpty)

        // create templates render once: a later start keeps what the container wrote.
        try agent.ok(["exec", "tpl1", "--", "sh", "-c", "echo changed > /etc/hostname"])
        try agent.ok(["restart", "tpl1", "--force"])
        #expect(try agent.ok(["exec", "tpl1", "--", "cat", "/etc/hostname"]) == "changed\n")
        try agent.ok(["delete", "--force", "tpl1"])
    }

    @Test func hostileTemplatesAreRefusedAtImport() throws {
        let tree = "\(work)/hostile"
        try FileManager.default.createDirectory(atPath: "\(tree)/rootfs/etc", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: "\(tree)/templates", withIntermediateDirectories: true)
        try "architecture: x86_64\ntemplates:\n  /etc/hostname: {when: [create], template: t.tpl}\n"
            .write(toFile: "\(tree)/metadata.yaml", atomically: true, encoding: .utf8)
        // The template file is a symlink to a host file.
        try FileManager.default.createSymbolicLink(atPath: "\(tree)/templates/t.tpl", withDestinationPath: "/etc/shadow")
        let r0 = try run("/bin/tar", ["-C", tree, "-cf", "\(work)/hostile.tar", "metadata.yaml", "templates", "rootfs"])
        #expect(r0.status == 0)
        let r = try agent.ctl(["image", "import", "\(work)/hostile.tar", "--alias", "hostile"])
        #expect(r.status != 0 && r.stderr.contains("templates/t.tpl") && r.stderr.contains("symlink"), "import: \(r.stderr)")
        #expect(!(try agent.ok(["image", "list", "--format", "csv"]).contains("hostile")))
    }
}
