import Dqlite

/// Cluster-wide configuration: string keys to string values.
extension Transaction {
    public func config(_ key: String) throws -> String? {
        try query("SELECT value FROM config WHERE key = ?", .text(key)).rows.first.map {
            try Row(values: $0, table: "config").text(0, "value")
        }
    }

    /// Sets `key`, or removes it when `value` is nil.
    public func setConfig(_ key: String, _ value: String?) throws {
        if let value {
            try exec("INSERT INTO config (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                     .text(key), .text(value))
        } else {
            try exec("DELETE FROM config WHERE key = ?", .text(key))
        }
    }

    public func allConfig() throws -> [String: String] {
        var all: [String: String] = [:]
        for values in try query("SELECT key, value FROM config").rows {
            let r = Row(values: values, table: "config")
            all[try r.text(0, "key")] = try r.text(1, "value")
        }
        return all
    }
}
