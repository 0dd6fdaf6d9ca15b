import Testing
@testable import Agent

/// `lxdd --idmap-range START:COUNT`: the host ids containers' user namespaces map to.
@Suite struct IDMapRangeOptionTests {
    func config() -> AgentConfiguration { AgentConfiguration(dataDir: "/nonexistent", helperPath: "/nonexistent") }

    @Test func aGoodRangeIsTakenAndCountsItsInstances() throws {
        var c = config()
        #expect(c.idmapRange == nil)
        try c.setIDMapRange("1000000000:1000000000")
        let r = try #require(c.idmapRange)
        #expect(r.start == 1_000_000_000 && r.size == 1_000_000_000)
        // One block of 65,536 ids per isolated instance; the remainder is not used.
        #expect(r.instances == 15258)
        // Debian's lxd package writes root:100000:10000001 into /etc/subuid: 152 instances.
        try c.setIDMapRange("100000:10000001")
        #expect(c.idmapRange?.instances == 152)
        // Up to the last valid id, 4294967294 ((uid_t)-1 means no id).
        try c.setIDMapRange("65536:4294901759")
        #expect(c.idmapRange.map { $0.start + $0.size - 1 } == 4_294_967_294)
    }

    @Test(arguments: [
        ("", "use START:COUNT"),
        ("1000000", "use START:COUNT"),
        ("1000000:", "use START:COUNT"),
        ("a:b", "use START:COUNT"),
        ("1:2:3", "use START:COUNT"),
        ("-5:65536", "START must be at least 65536"),
        ("0:1000000000", "START must be at least 65536"),
        ("1000000:65535", "COUNT must be at least 65536"),
        ("1000000:-1", "COUNT must be at least 65536"),
        ("65536:4294901760", "ends past 4294967294"),
        ("4294967295:65536", "ends past 4294967294"),
        ("9223372036854775807:9223372036854775807", "ends past 4294967294"),
        ("99999999999999999999:65536", "use START:COUNT"),
    ])
    func badRangesAreRefusedSayingWhy(text: String, expected: String) {
        var c = config()
        #expect {
            try c.setIDMapRange(text)
        } throws: { error in
            "\(error)".contains(expected) && "\(error)".contains("\"\(text)\"")
        }
        #expect(c.idmapRange == nil)
    }
}
