import Testing
@testable import Images

@Suite struct ImageMetadataTests {
    @Test func parsesLXDShape() throws {
        let text = """
        # written by distrobuilder
        architecture: x86_64
        creation_date: 1700000000
        expiry_date: 1800000000
        properties:
          description: "Busybox x86_64 \\"edge\\""
          os: Busybox
          release: '1.36 ''stable'''
          name: plain value # comment
        templates:
          /etc/hostname:
            when:
              - start
            template: hostname.tpl
        """
        let m = try ImageMetadata.parse(text)
        #expect(m.architecture == "x86_64")
        #expect(m.creationDate == 1_700_000_000)
        #expect(m.properties == [
            "description": "Busybox x86_64 \"edge\"", "os": "Busybox", "release": "1.36 'stable'", "name": "plain value",
        ])
    }

    @Test func flowMapAndCRLF() throws {
        let m = try ImageMetadata.parse("architecture: \"aarch64\"\r\nproperties: {os: Alpine, \"description\": 'a, b'}\r\n")
        #expect(m.architecture == "aarch64")
        #expect(m.creationDate == nil)
        #expect(m.properties == ["os": "Alpine", "description": "a, b"])
    }

    @Test func nestedPropertyValuesAreSkipped() throws {
        let m = try ImageMetadata.parse("properties:\n  os: x\n  nested:\n    deep: y\n  after: z\narchitecture: x86_64\n")
        #expect(m.properties["os"] == "x" && m.properties["after"] == "z" && m.properties["deep"] == nil)
    }

    @Test func architectureIsRequired() {
        #expect(throws: ImageError.self) { try ImageMetadata.parse("creation_date: 1\nproperties:\n  architecture: x86_64\n") }
    }

    @Test func blockScalarsAndFlowMaps() throws {
        let m = try ImageMetadata.parse("""
        architecture: x86_64
        properties:
          description: |
            Debian bookworm
            minbase
          release: 12
          variant: >-
            folded
            text
        templates:
          /etc/hosts: {when: [create, copy], template: hosts.tpl, properties: {default: "x"}}
        """)
        #expect(m.properties == ["description": "Debian bookworm\nminbase\n", "release": "12", "variant": "folded text"])
        #expect(m.templates == ["/etc/hosts": ImageTemplate(when: [.create, .copy], template: "hosts.tpl", properties: ["default": "x"])])
    }

    @Test func templatesAreParsed() throws {
        let m = try ImageMetadata.parse("""
        architecture: x86_64
        templates:
          /etc/hostname:
            when:
              - create
              - copy
              - rename
            template: hostname.tpl
          "/var/lib/cloud/seed/nocloud-net/meta-data":
            when: [start]
            create_only: true
            template: sub/meta-data.tpl
          /etc/never:
            when: []
            template: never.tpl
        """)
        #expect(m.templates.count == 3)
        // Unknown events (rename) are dropped, as LXD does.
        #expect(m.templates["/etc/hostname"] == ImageTemplate(when: [.create, .copy], createOnly: false, template: "hostname.tpl"))
        #expect(m.templates["/var/lib/cloud/seed/nocloud-net/meta-data"] == ImageTemplate(when: [.start], createOnly: true, template: "sub/meta-data.tpl"))
        #expect(m.templates["/etc/never"]?.when == [])
    }

    /// Metadata as scripts/make-busybox-image writes it still reads the same.
    @Test func busyboxMetadataStillParses() throws {
        let m = try ImageMetadata.parse("""
        architecture: x86_64
        creation_date: 1700000000
        properties:
          architecture: x86_64
          description: Busybox x86_64 (idle init)
          name: busybox-x86_64
          os: Busybox
          release: "1.36.1"
          variant: idle
        """)
        #expect(m.architecture == "x86_64" && m.creationDate == 1_700_000_000 && m.templates == [:])
        #expect(m.properties["release"] == "1.36.1" && m.properties["description"] == "Busybox x86_64 (idle init)")
    }

    @Test(arguments: [
        ("relative/path", "is not an absolute path"),
        ("/etc/../../host", "contains '..'"),
        ("/etc//hostname", "is not normalised"),
        ("/etc/./hostname", "is not normalised"),
        ("/etc/hostname/", "is not normalised"),
        ("/", "is the root directory"),
    ])
    func hostileTargetsAreRefused(target: String, why: String) {
        let text = "architecture: x86_64\ntemplates:\n  \"\(target)\": {when: [create], template: t.tpl}\n"
        #expect { try ImageMetadata.parse(text) } throws: { "\($0)".contains(why) && "\($0)".contains(target) }
    }

    @Test(arguments: [
        ("{when: [create], template: ../../etc/shadow}", "contains '..'"),
        ("{when: [create], template: /etc/shadow}", "must be a relative path"),
        ("{when: [create], template: a//b}", "is not normalised"),
        ("{when: [create]}", "has no template file name"),
        ("{when: create, template: t.tpl}", "needs when as a list"),
        ("{when: [create], template: t.tpl, create_only: maybe}", "create_only"),
        ("{when: [create], template: t.tpl, properties: [a]}", "properties that are not a map"),
        ("just-text", "must be a map"),
    ])
    func hostileTemplatesAreRefused(entry: String, why: String) {
        let text = "architecture: x86_64\ntemplates:\n  /etc/hostname: \(entry)\n"
        #expect { try ImageMetadata.parse(text) } throws: { "\($0)".contains(why) }
    }

    @Test func tooManyTemplatesAreRefused() {
        var text = "architecture: x86_64\ntemplates:\n"
        for i in 0...ImageMetadata.maxTemplates { text += "  /etc/f\(i): {when: [start], template: t.tpl}\n" }
        #expect { try ImageMetadata.parse(text) } throws: { "\($0)".contains("more than the \(ImageMetadata.maxTemplates) allowed") }
    }

    @Test func invalidYAMLIsRefused() {
        #expect { try ImageMetadata.parse("architecture: x86_64\nproperties: {a: [\n") } throws: { "\($0)".contains("not valid YAML") }
    }

    /// Deep nesting would overflow the stack inside the YAML composer (10,000 levels crashed the
    /// process): it is refused before parsing.
    @Test func deepNestingIsRefusedBeforeParsing() {
        let n = 100_000
        let flow = "architecture: x86_64\nproperties: " + String(repeating: "[", count: n) + String(repeating: "]", count: n) + "\n"
        #expect { try ImageMetadata.parse(flow) } throws: { "\($0)".contains("nests deeper than \(ImageMetadata.maxNesting) levels") }
        let block = "architecture: x86_64\nproperties:\n  a: " + String(repeating: "- ", count: n) + "x\n"
        #expect { try ImageMetadata.parse(block) } throws: { "\($0)".contains("nests deeper") }
        let indented = "architecture: x86_64\nproperties:\n" + (1...200).map { String(repeating: " ", count: $0) + "k\($0):\n" }.joined()
        #expect { try ImageMetadata.parse(indented) } throws: { "\($0)".contains("nests deeper") }
        // Real metadata is far below the bound.
        #expect(ImageMetadata.nestingBound("architecture: x86_64\ntemplates:\n  /etc/hosts:\n    when:\n      - create\n    properties: {a: [b]}\n") < 20)
    }
}
