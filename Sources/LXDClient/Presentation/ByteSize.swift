/// Human-readable byte counts in IEC units, as LXD prints them ("1.23MiB", "512B").
public enum ByteSize {
    public static func human(_ bytes: Int64) -> String {
        let units = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
        if bytes < 1024 && bytes > -1024 { return "\(bytes)B" }
        var value = Double(bytes)
        var unit = "B"
        for next in units {
            guard abs(value) >= 1024 else { break }
            value /= 1024
            unit = next
        }
        return twoDecimals(value) + unit
    }

    /// `%.2f` without Foundation's locale-dependent formatting.
    static func twoDecimals(_ value: Double) -> String {
        let hundredths = Int64((abs(value) * 100).rounded())
        let sign = value < 0 ? "-" : ""
        let fraction = hundredths % 100
        return "\(sign)\(hundredths / 100)." + (fraction < 10 ? "0" : "") + "\(fraction)"
    }
}
