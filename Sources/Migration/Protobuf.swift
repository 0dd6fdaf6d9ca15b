/// Just enough protobuf to read CRIU's images by field number (no generated code, no
/// swift-protobuf). Every read is bounds-checked: corrupt input throws, never traps.
struct ProtoField: Sendable, Equatable {
    enum Value: Sendable, Equatable {
        case varint(UInt64)
        case fixed64(UInt64)
        case bytes(ArraySlice<UInt8>)
        case fixed32(UInt32)
    }
    let number: Int
    let value: Value
}

enum ProtoError: Error, Equatable {
    case truncated(at: Int)
    case varintTooLong(at: Int)
    case badWireType(Int, at: Int)
    case badFieldNumber(at: Int)
}

/// A decoded message: its fields in order of appearance (repeated fields appear repeatedly).
struct ProtoMessage: Sendable {
    let fields: [ProtoField]

    init(_ bytes: ArraySlice<UInt8>) throws(ProtoError) {
        var fields: [ProtoField] = []
        var i = bytes.startIndex
        while i < bytes.endIndex {
            let keyAt = i
            let key = try Self.varint(bytes, &i)
            let number = key >> 3
            guard number > 0, number <= 536_870_911 else { throw .badFieldNumber(at: keyAt) }
            switch key & 7 {
            case 0:
                fields.append(ProtoField(number: Int(number), value: .varint(try Self.varint(bytes, &i))))
            case 1:
                guard bytes.endIndex - i >= 8 else { throw .truncated(at: i) }
                fields.append(ProtoField(number: Int(number), value: .fixed64(Self.littleEndian(bytes, i, 8))))
                i += 8
            case 2:
                let lengthAt = i
                let length = try Self.varint(bytes, &i)
                guard length <= UInt64(bytes.endIndex - i) else { throw .truncated(at: lengthAt) }
                let end = i + Int(length)
                fields.append(ProtoField(number: Int(number), value: .bytes(bytes[i..<end])))
                i = end
            case 5:
                guard bytes.endIndex - i >= 4 else { throw .truncated(at: i) }
                fields.append(ProtoField(number: Int(number), value: .fixed32(UInt32(Self.littleEndian(bytes, i, 4)))))
                i += 4
            default:
                throw .badWireType(Int(key & 7), at: keyAt)
            }
        }
        self.fields = fields
    }

    /// The last varint value of field `number` (protobuf's rule for repeated scalars).
    func varint(_ number: Int) -> UInt64? {
        for f in fields.reversed() where f.number == number {
            if case let .varint(v) = f.value { return v }
        }
        return nil
    }

    func uint32(_ number: Int) -> UInt32? { varint(number).map { UInt32(truncatingIfNeeded: $0) } }

    func bool(_ number: Int) -> Bool? { varint(number).map { $0 != 0 } }

    func bytes(_ number: Int) -> ArraySlice<UInt8>? {
        for f in fields.reversed() where f.number == number {
            if case let .bytes(b) = f.value { return b }
        }
        return nil
    }

    /// All values of a repeated varint field, packed or not.
    func repeatedVarints(_ number: Int) throws(ProtoError) -> [UInt64] {
        var out: [UInt64] = []
        for f in fields where f.number == number {
            switch f.value {
            case let .varint(v): out.append(v)
            case let .bytes(b):
                var i = b.startIndex
                while i < b.endIndex { out.append(try Self.varint(b, &i)) }
            default: continue
            }
        }
        return out
    }

    static func varint(_ b: ArraySlice<UInt8>, _ i: inout Int) throws(ProtoError) -> UInt64 {
        let start = i
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard i < b.endIndex else { throw .truncated(at: start) }
            let byte = b[i]
            i += 1
            guard shift < 64 else { throw .varintTooLong(at: start) }
            result |= UInt64(byte & 0x7f) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
        }
    }

    static func littleEndian(_ b: ArraySlice<UInt8>, _ at: Int, _ count: Int) -> UInt64 {
        var v: UInt64 = 0
        for k in 0..<count { v |= UInt64(b[at + k]) << (8 * UInt64(k)) }
        return v
    }
}
