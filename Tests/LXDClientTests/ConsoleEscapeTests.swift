import LXDClient
import Testing

/// The detach keys of `lxdctl console`: ctrl+a q, as `lxc console`.
@Suite struct ConsoleEscapeTests {
    static let a: UInt8 = 0x01, q = UInt8(ascii: "q")

    /// Feeds the reads in order; what was sent and whether it detached.
    static func run(_ reads: [[UInt8]]) -> (sent: [UInt8], detached: Bool) {
        var escape = ConsoleEscape()
        var sent: [UInt8] = []
        for read in reads {
            let (out, detach) = escape.feed(read)
            sent += out
            if detach { return (sent, true) }
        }
        return (sent, false)
    }

    @Test func plainKeysPassThrough() {
        #expect(Self.run([Array("ls -l\r".utf8), [0x03, 0x1b, 0x5b, 0x41]]) == (Array("ls -l\r".utf8) + [0x03, 0x1b, 0x5b, 0x41], false))
    }

    @Test func ctrlAThenQDetachesAndDropsWhatFollows() {
        #expect(Self.run([[0x78, Self.a, Self.q, 0x79]]) == ([0x78], true))
        // Split across two reads (raw mode delivers keys one by one).
        #expect(Self.run([[0x78, Self.a], [Self.q], [0x79]]) == ([0x78], true))
    }

    @Test func ctrlATwiceSendsOneCtrlA() {
        #expect(Self.run([[Self.a, Self.a]]) == ([Self.a], false))
        #expect(Self.run([[Self.a], [Self.a], [Self.q]]) == ([Self.a, Self.q], false))
        #expect(Self.run([[Self.a, Self.a, Self.a, Self.q]]) == ([Self.a], true))
    }

    @Test func ctrlAThenAnotherKeySendsBoth() {
        #expect(Self.run([[Self.a, 0x78]]) == ([Self.a, 0x78], false))
        #expect(Self.run([[Self.a, UInt8(ascii: "Q")]]) == ([Self.a, UInt8(ascii: "Q")], false))
        // A q alone is a q.
        #expect(Self.run([[Self.q]]) == ([Self.q], false))
    }

    @Test func aTrailingCtrlAWaitsForTheNextRead() {
        var escape = ConsoleEscape()
        #expect(escape.feed([0x78, Self.a]) == ([0x78], false))
        #expect(escape.feed([0x79]) == ([Self.a, 0x79], false))
    }
}
