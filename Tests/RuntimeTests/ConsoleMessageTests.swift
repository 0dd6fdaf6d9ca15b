import Runtime
import Testing

/// The console monitor's packets: what the client sends and what it accepts.
@Suite struct ConsoleMessageTests {
    @Test func dataAndResizeHaveTheMonitorsLayout() {
        #expect(ConsoleMessage.data(Array("ls\n".utf8)).encoded == [0x64, 0x6c, 0x73, 0x0a])
        // rows then columns, big-endian.
        #expect(ConsoleMessage.resize(rows: 0x0102, columns: 0x0304).encoded == [0x77, 0x01, 0x02, 0x03, 0x04])
        #expect(ConsoleMessage.resize(rows: 24, columns: 80).encoded == [0x77, 0, 24, 0, 80])
    }

    @Test(arguments: [
        ConsoleMessage.data([0]), .data(Array(repeating: 0xff, count: ConsoleMessage.maxPayload)),
        .resize(rows: 0, columns: 0), .resize(rows: 65535, columns: 1), .resize(rows: 43, columns: 132),
    ])
    func decodingReadsBackWhatWasEncoded(message: ConsoleMessage) throws {
        #expect(try ConsoleMessage.decode(message.encoded) == message)
    }

    @Test func hostilePacketsAreRefusedNamingWhy() {
        #expect(throws: ConsoleMessage.DecodeError.empty) { try ConsoleMessage.decode([]) }
        #expect(throws: ConsoleMessage.DecodeError.emptyData) { try ConsoleMessage.decode([0x64]) }
        #expect(throws: ConsoleMessage.DecodeError.unknownTag(0x44)) { try ConsoleMessage.decode([0x44, 1]) }
        #expect(throws: ConsoleMessage.DecodeError.resizeLength(4)) { try ConsoleMessage.decode([0x77, 0, 24, 0]) }
        #expect(throws: ConsoleMessage.DecodeError.resizeLength(6)) { try ConsoleMessage.decode([0x77, 0, 24, 0, 80, 0]) }
        #expect(throws: ConsoleMessage.DecodeError.resizeLength(1)) { try ConsoleMessage.decode([0x77]) }
        let tooLong = [0x64] + Array(repeating: UInt8(0), count: ConsoleMessage.maxPayload + 1)
        #expect(throws: ConsoleMessage.DecodeError.tooLong(ConsoleMessage.maxPacket + 1)) { try ConsoleMessage.decode(tooLong) }
        #expect(ConsoleMessage.DecodeError.unknownTag(0x44).description == "console packet has unknown type 0x44")
    }

    @Test func longInputIsSplitIntoPacketsInOrder() throws {
        let input = (0..<(2 * ConsoleMessage.maxPayload + 5)).map { UInt8(truncatingIfNeeded: $0) }
        let packets = ConsoleMessage.packets(input: input)
        #expect(packets.map(\.count) == [ConsoleMessage.maxPacket, ConsoleMessage.maxPacket, 6])
        var joined: [UInt8] = []
        for p in packets {
            guard case .data(let bytes) = try ConsoleMessage.decode(p) else { Issue.record("not data"); return }
            joined += bytes
        }
        #expect(joined == input)
        #expect(ConsoleMessage.packets(input: []).isEmpty)
    }
}
