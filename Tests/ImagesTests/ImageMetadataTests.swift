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
}
