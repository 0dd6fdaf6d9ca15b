import APITypes

/// How `lxdctl move` shows a move's operation metadata (pure). The server reports `phase`,
/// `bytes_sent` and `rate_bytes_per_second` while the move runs, and `downtime_ms` and
/// `total_ms` when it is done (a copy: `frozen_ms` instead of `downtime_ms`).
public enum MoveProgress {
    /// `transfer: 12.50MiB sent, 3.20MiB/s`; nil when the metadata has none of the keys yet.
    public static func line(_ metadata: [String: JSONValue]?) -> String? {
        guard let m = metadata else { return nil }
        var parts: [String] = []
        if let bytes = m["bytes_sent"]?.intValue { parts.append("\(ByteSize.human(Int64(bytes))) sent") }
        if let rate = m["rate_bytes_per_second"]?.intValue { parts.append("\(ByteSize.human(Int64(rate)))/s") }
        let phase = m["phase"]?.stringValue
        if phase == nil && parts.isEmpty { return nil }
        guard let phase else { return parts.joined(separator: ", ") }
        return parts.isEmpty ? phase : "\(phase): " + parts.joined(separator: ", ")
    }

    /// `stop-and-copy, downtime 123 ms, total 456 ms` (the mode of a live move, downtime only
    /// when the instance ran); nil without figures.
    public static func figures(_ metadata: [String: JSONValue]?) -> String? {
        guard let m = metadata else { return nil }
        var parts: [String] = []
        if let downtime = m["downtime_ms"].flatMap(milliseconds) { parts.append("downtime \(downtime) ms") }
        // A copy of a running instance: how long it was frozen.
        if let frozen = m["frozen_ms"].flatMap(milliseconds) { parts.append("frozen \(frozen) ms") }
        if let total = m["total_ms"].flatMap(milliseconds) { parts.append("total \(total) ms") }
        guard !parts.isEmpty else { return nil }
        if let mode = m["mode"]?.stringValue, !mode.isEmpty { parts.insert(mode, at: 0) }
        return parts.joined(separator: ", ")
    }

    /// Whole milliseconds of a JSON number (the server may send a fraction).
    static func milliseconds(_ value: JSONValue) -> Int? {
        switch value {
        case .int(let i): return i
        case .double(let d) where d.isFinite && d >= 0 && d < 1e15: return Int(d.rounded())
        default: return nil
        }
    }
}
