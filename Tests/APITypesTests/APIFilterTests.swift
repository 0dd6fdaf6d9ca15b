import APITypes
import Testing

struct APIFilterTests {
    let c1: JSONValue = .object([
        "name": .string("web-1"), "status": .string("Running"), "location": .string("m2"),
        "ephemeral": .bool(false), "status_code": .int(103),
        "config": .object(["image.os": .string("Debian"), "user.tier": .string("front end")]),
        "devices": .object(["root": .object(["pool": .string("default"), "path": .string("/")])]),
    ])

    func matches(_ filter: String) throws -> Bool {
        try APIFilter(parsing: filter).matches(c1)
    }

    @Test func whatLxcSendsForItsShorthands() throws {
        // lxc turns `status=running location=m2` into this.
        #expect(try matches("status eq running and location eq m2"))
        #expect(try !matches("status eq stopped and location eq m2"))
        #expect(try matches("name eq web-1"))
        #expect(try matches(""))
    }

    @Test func fieldsReachIntoMapsWhoseKeysHaveDots() throws {
        #expect(try matches("config.image.os eq debian"))
        #expect(try matches("devices.root.pool eq default"))
        #expect(try !matches("config.nosuch eq x"))
        #expect(try matches("config.nosuch ne x"), "a missing field is not equal to anything")
        #expect(try !matches("devices eq x"), "an object equals no text")
    }

    @Test func valuesArePatternsAnchoredUnlessTheyAnchorThemselves() throws {
        #expect(try matches("name eq web-.*"))
        #expect(try !matches("name eq web"))
        #expect(try matches("name eq ^web"))
        #expect(try matches("name eq 1$"))
        #expect(try matches("name eq WEB-[0-9]"), "case-insensitive, as LXD")
        // Not a pattern we take: compared as text.
        #expect(try !matches("name eq web-{1}"))
        #expect(try APIFilter(parsing: "name eq a{2}").matches(.object(["name": .string("a{2}")])))
    }

    @Test func numbersAndBooleansCompareAsTheirJSONText() throws {
        #expect(try matches("ephemeral eq false"))
        #expect(try matches("status_code eq 103"))
        #expect(try !matches("status_code eq 10"))
    }

    @Test func notOrAndQuotesAsLXDReadsThem() throws {
        #expect(try matches("not status eq stopped"))
        #expect(try matches("status eq stopped or name eq web-1"))
        // Left to right, no precedence: (false or true) and false.
        #expect(try !matches("status eq stopped or name eq web-1 and location eq m1"))
        #expect(try matches(#"config.user.tier eq "front end""#))
        #expect(try matches(#"config.user.tier eq "front  end""#), "blanks inside quotes collapse to one space")
        #expect(try matches(#"name eq "web-1""#))
        #expect(try matches("name NE web-2 AND NOT location EQ m1"))
    }

    @Test(arguments: [
        "name", "name eq", "name like x", "not", "name eq x and", "name eq x xor name eq y",
        #"name eq "unterminated"#,
    ])
    func malformedFiltersAreRefused(_ text: String) {
        #expect(throws: APIFilter.ParseError.self) { try APIFilter(parsing: text) }
    }

    @Test func oversizedFiltersAreRefused() {
        #expect(throws: APIFilter.ParseError.self) { try APIFilter(parsing: String(repeating: "a", count: APIFilter.maxLength + 1)) }
        let many = Array(repeating: "name eq x", count: APIFilter.maxClauses + 1).joined(separator: " or ")
        #expect(throws: APIFilter.ParseError.self) { try APIFilter(parsing: many) }
    }
}

struct FilterPatternTests {
    func hit(_ pattern: String, _ text: String) throws -> Bool {
        try #require(FilterPattern(pattern)).matches(text)
    }

    @Test func theSyntaxWeTake() throws {
        #expect(try hit("^a.c$", "abc"))
        #expect(try hit("^ab*c$", "ac") && hit("^ab*c$", "abbbc"))
        #expect(try !hit("^ab+c$", "ac") && hit("^ab+c$", "abc"))
        #expect(try hit("^ab?c$", "ac") && !hit("^ab?c$", "abbc"))
        #expect(try hit("^(web|db)-[0-9]+$", "db-12") && !hit("^(web|db)-[0-9]+$", "cache-1"))
        #expect(try hit("^(?:x|y)z$", "yz"))
        #expect(try hit(#"^\d+\.\d+$"#, "10.25") && !hit(#"^\d+\.\d+$"#, "10x25"))
        #expect(try hit(#"^\w+\s\S$"#, "a_1 b"))
        #expect(try hit("^[^a-c]$", "d") && !hit("^[^a-c]$", "B"), "negation is case-insensitive too")
        #expect(try hit("^[]a]$", "]"))
        #expect(try hit("b", "abc"), "unanchored: found anywhere")
        #expect(try hit("^$", "") && !hit("^$", "x"))
        #expect(try hit("^a.*?b$", "axxb"))
        #expect(try hit("^ÉTÉ$", "été"))
    }

    @Test(arguments: ["a{2}", #"(a)\1"#, "(?=a)", "(?i)a", "[[:alpha:]]", "a**", "(a", "a)", "[a", "[z-a]", #"\b"#, "*a", "^*"])
    func whatWeDoNotTakeIsNoPattern(_ pattern: String) {
        #expect(FilterPattern(pattern) == nil)
    }

    /// The classic backtracking killer: linear here, so this finishes at once (a backtracking
    /// engine takes 2^30 steps). Not timed: it would hang the run, not slow it.
    @Test func nestedQuantifiersDoNotBacktrack() throws {
        let text = String(repeating: "a", count: 30) + "!"
        #expect(try !hit("^(a+)+$", text))
        #expect(try !hit("^(a|a)*$", text))
        #expect(try !hit("^(a*)*b$", String(repeating: "a", count: 5000)))
    }

    @Test func longPatternsAreRefused() {
        #expect(FilterPattern(String(repeating: "a", count: FilterPattern.maxLength + 1)) == nil)
        #expect(FilterPattern(String(repeating: "(", count: 40) + "a" + String(repeating: ")", count: 40)) == nil)
    }
}
