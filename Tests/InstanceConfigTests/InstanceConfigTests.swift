import Testing
@testable import InstanceConfig

@Suite struct QuantityTests {
    @Test(arguments: [
        ("64MiB", Int64(64 << 20)), ("1GiB", Int64(1 << 30)), ("500MB", Int64(500_000_000)),
        ("1024", Int64(1024)), ("2kB", Int64(2000)), ("1.5GiB", Int64(3 << 29)), ("10B", Int64(10)),
    ])
    func parsesSizes(text: String, bytes: Int64) throws {
        #expect(try Quantity.bytes(text) == bytes)
    }

    @Test(arguments: ["", "MiB", "-1MiB", "12XB", "1e9", "0x10", "abc"])
    func rejectsBadSizes(text: String) {
        #expect(throws: Quantity.Error.invalidSize(text)) { try Quantity.bytes(text) }
    }

    @Test func cpuValues() throws {
        #expect(try Quantity.cpu("2") == .count(2))
        #expect(try Quantity.cpu("0.5") == .count(0.5))
        #expect(try Quantity.cpu("0-1,3") == .set([0, 1, 3]))
        #expect(try Quantity.cpu("0-1,3").cores == 3)
        for bad in ["0", "-1", "1-0", "a", "1,,2", ""] {
            #expect(throws: Quantity.Error.self) { try Quantity.cpu(bad) }
        }
    }
}

@Suite struct ConfigSchemaTests {
    @Test func acceptsKnownKeys() throws {
        try InstanceConfigSchema.validate(user: [
            "limits.memory": "64MiB", "limits.cpu": "1", "limits.processes": "200",
            "security.privileged": "true", "user.owner": "ops", "environment.FOO": "bar",
        ])
    }

    @Test func rejectsUnknownAndMalformed() {
        #expect(throws: InstanceConfigError.unknownKey("limits.bogus")) {
            try InstanceConfigSchema.validate(user: ["limits.bogus": "1"])
        }
        #expect(throws: InstanceConfigError.self) { try InstanceConfigSchema.validate(user: ["limits.memory": "lots"]) }
        #expect(throws: InstanceConfigError.self) { try InstanceConfigSchema.validate(user: ["limits.processes": "-3"]) }
        #expect(throws: InstanceConfigError.self) { try InstanceConfigSchema.validate(user: ["security.privileged": "maybe"]) }
        #expect(throws: InstanceConfigError.unknownKey("user.")) { try InstanceConfigSchema.validate(user: ["user.": "x"]) }
    }

    @Test func serverKeysAreProtected() throws {
        #expect(throws: InstanceConfigError.serverOnly("volatile.idmap.base")) {
            try InstanceConfigSchema.validate(user: ["volatile.idmap.base": "0"])
        }
        // Passing back an unchanged server value (as an editor round-trip does) is fine.
        try InstanceConfigSchema.validate(user: ["volatile.idmap.base": "1000000"], previous: ["volatile.idmap.base": "1000000"])
    }

    @Test func liveUpdateRules() throws {
        try InstanceConfigSchema.validate(user: ["limits.memory": "128MiB"], previous: ["limits.memory": "64MiB"], running: true)
        #expect(throws: InstanceConfigError.notLiveUpdatable("security.privileged")) {
            try InstanceConfigSchema.validate(user: ["security.privileged": "true"], previous: [:], running: true)
        }
    }

    @Test func limitsParse() {
        let l = ResourceLimits(config: ["limits.memory": "64MiB", "limits.cpu": "2", "limits.processes": "100"])
        #expect(l == ResourceLimits(memoryBytes: 64 << 20, cpu: .count(2), processes: 100))
    }
}

@Suite struct NameTests {
    @Test(arguments: ["c1", "web-01", "a", String(repeating: "x", count: 63)])
    func valid(name: String) throws { try InstanceName.validate(name) }

    @Test(arguments: [
        ("", InstanceName.NameError.length), (String(repeating: "x", count: 64), .length),
        ("1abc", .start), ("-abc", .start), ("abc-", .end), ("a_b", .characters), ("a.b", .characters),
        ("a b", .characters), ("ä", .characters), ("../x", .characters),
    ])
    func invalid(name: String, error: InstanceName.NameError) {
        #expect(throws: error) { try InstanceName.validate(name) }
    }

    @Test(arguments: ["m1", "node-2", "rack1_a", "host.example", "1st", String(repeating: "x", count: 63)])
    func validMember(name: String) throws { try MemberName.validate(name) }

    /// Member names end up in cgroup paths, directories and the database's text fields (the fuzz
    /// run sent a NUL, which the database link refused as a 500).
    @Test(arguments: ["", String(repeating: "x", count: 64), "a\u{0}b", "a b", "a/b", "../x", "-x", ".x", "_x", "ä", "a,b", "a:b"])
    func invalidMember(name: String) {
        #expect(throws: MemberName.NameError.self) { try MemberName.validate(name) }
    }
}
