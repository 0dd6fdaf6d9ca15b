/// Output formats of listing commands.
public enum OutputFormat: String, CaseIterable, Sendable {
    case table, csv, json
}

/// Renders rows as LXD-style ASCII tables and CSV (pure).
public enum TextTable {
    /// ```
    /// +------+---------+
    /// | NAME |  STATE  |
    /// +------+---------+
    /// | c1   | RUNNING |
    /// +------+---------+
    /// ```
    /// Headers centred, cells left-aligned; widths count characters, not bytes.
    public static func render(headers: [String], rows: [[String]]) -> String {
        var widths = headers.map(\.count)
        for row in rows {
            for (i, cell) in row.enumerated() where i < widths.count {
                widths[i] = max(widths[i], cell.count)
            }
        }
        let rule = "+" + widths.map { String(repeating: "-", count: $0 + 2) + "+" }.joined()
        func line(_ cells: [String], centre: Bool) -> String {
            var out = "|"
            for (i, width) in widths.enumerated() {
                let cell = i < cells.count ? cells[i] : ""
                let pad = width - cell.count
                let left = centre ? pad / 2 : 0
                out += " " + String(repeating: " ", count: left) + cell + String(repeating: " ", count: pad - left) + " |"
            }
            return out
        }
        var lines = [rule, line(headers, centre: true), rule]
        for row in rows {
            lines.append(line(row, centre: false))
            lines.append(rule)
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// RFC 4180 CSV without a header line (as `lxc list --format csv`).
    public static func csv(rows: [[String]]) -> String {
        rows.map { $0.map(csvField).joined(separator: ",") + "\n" }.joined()
    }

    static func csvField(_ field: String) -> String {
        guard field.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return field }
        return "\"" + field.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}

extension String {
    fileprivate func replacingOccurrences(of target: String, with replacement: String) -> String {
        split(separator: target, omittingEmptySubsequences: false).joined(separator: replacement)
    }
}
