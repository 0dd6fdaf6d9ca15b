/// One SQL value as dqlite carries it on the wire.
///
/// dqlite's extra wire types are folded into these on decode: unix time and
/// booleans become `.integer`, ISO-8601 timestamps become `.text`.
public enum DqliteValue: Sendable, Hashable {
    case integer(Int64)
    case float(Double)
    case text(String)
    case blob([UInt8])
    case null

    public var int64: Int64? {
        if case .integer(let v) = self { return v }
        return nil
    }

    public var double: Double? {
        switch self {
        case .float(let v): return v
        case .integer(let v): return Double(v)
        default: return nil
        }
    }

    public var string: String? {
        if case .text(let v) = self { return v }
        return nil
    }

    public var bytes: [UInt8]? {
        if case .blob(let v) = self { return v }
        return nil
    }

    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }
}

extension DqliteValue: ExpressibleByIntegerLiteral, ExpressibleByStringLiteral, ExpressibleByFloatLiteral, ExpressibleByNilLiteral {
    public init(integerLiteral value: Int64) { self = .integer(value) }
    public init(stringLiteral value: String) { self = .text(value) }
    public init(floatLiteral value: Double) { self = .float(value) }
    public init(nilLiteral: ()) { self = .null }
}

extension DqliteValue {
    /// `.null` for nil, `.text` otherwise: for nullable TEXT columns.
    public init(_ text: String?) { self = text.map { .text($0) } ?? .null }
    /// `.null` for nil, `.integer` otherwise: for nullable INTEGER columns.
    public init(_ integer: Int64?) { self = integer.map { .integer($0) } ?? .null }
}

/// The result of a query: column names and rows in order.
public struct DqliteRows: Sendable, Equatable {
    public var columns: [String]
    public var rows: [[DqliteValue]]

    public init(columns: [String], rows: [[DqliteValue]]) {
        self.columns = columns
        self.rows = rows
    }
}

/// The result of a statement that does not return rows.
public struct DqliteExecResult: Sendable, Equatable {
    public var lastInsertID: Int64
    public var rowsAffected: Int64

    public init(lastInsertID: Int64, rowsAffected: Int64) {
        self.lastInsertID = lastInsertID
        self.rowsAffected = rowsAffected
    }
}
