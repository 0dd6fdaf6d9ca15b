import APITypes
import Foundation
import Hummingbird

/// Numbers and flags from a request's query, range-checked before any conversion: a bad value
/// is LXD's 400 naming the parameter, never a trap or a silent default.
extension Request {
    /// Query parameter `key` decoded as a form value (`+` is a space, as Go's clients encode
    /// one), the last if repeated; nil when absent. A value that is not valid percent-encoding
    /// is LXD's 400 naming the parameter.
    func formValue(_ key: String) throws -> String? {
        guard let query = uri.query else { return nil }
        var found: String?
        for pair in query.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts[0].replacingOccurrences(of: "+", with: " ").removingPercentEncoding == key else { continue }
            let raw = parts.count > 1 ? String(parts[1]) : ""
            guard let value = raw.replacingOccurrences(of: "+", with: " ").removingPercentEncoding else {
                throw APIError.badRequest("Invalid \(key): not valid percent-encoding")
            }
            found = value
        }
        return found
    }

    /// `filter` (LXD's api_filtering); nil when absent or blank.
    func filter() throws -> APIFilter? {
        guard let text = try formValue("filter") else { return nil }
        do {
            let filter = try APIFilter(parsing: text)
            return filter.isEmpty ? nil : filter
        } catch {
            throw APIError.badRequest(error.description)
        }
    }

    /// `recursion`: 0 (absent), 1 or 2.
    func recursion() throws -> Int {
        guard let text = uri.queryParameters.get("recursion") else { return 0 }
        guard let value = Int(text), (0...2).contains(value) else {
            throw APIError.badRequest("Invalid recursion \"\(text)\": use 0, 1 or 2")
        }
        return value
    }

    /// A wait in seconds (fractions allowed) from query parameter `key`: nil when absent or -1,
    /// LXD's "wait as long as it takes"; at most `QueryLimits.longestWait`.
    func waitSeconds(_ key: String) throws -> Duration? {
        guard let text = uri.queryParameters.get(key) else { return nil }
        guard let value = Double(text), value.isFinite, value == -1 || (0...QueryLimits.longestWait).contains(value) else {
            throw APIError.badRequest("Invalid \(key) \"\(text)\": use seconds from 0 to \(Int(QueryLimits.longestWait)), or -1 to wait until done")
        }
        // Whole milliseconds: the range check above keeps this far inside Int64.
        return value == -1 ? nil : .milliseconds(Int64((value * 1000).rounded()))
    }

    /// A yes/no query parameter: absent, "0" or "false" is false; "1" or "true" is true.
    func flag(_ key: String) throws -> Bool {
        guard let text = uri.queryParameters.get(key) else { return false }
        switch text {
        case "", "0", "false": return false
        case "1", "true": return true
        default: throw APIError.badRequest("Invalid \(key) \"\(text)\": use true or false")
        }
    }

    /// A whole number from query parameter `key` within `range`; required.
    func integer(_ key: String, in range: ClosedRange<Int>) throws -> Int {
        let text = try requiredQuery(key)
        // At most 19 digits: Int() refuses overflow, but say so in the range's words.
        guard text.utf8.count <= 19, let value = Int(text), range.contains(value) else {
            throw APIError.badRequest("Invalid \(key) \"\(text.prefix(40))\": use a whole number from \(range.lowerBound) to \(range.upperBound)")
        }
        return value
    }

    /// A required, non-empty query parameter.
    func requiredQuery(_ key: String) throws -> String {
        guard let v = uri.queryParameters.get(key), !v.isEmpty else { throw APIError.badRequest("Missing query parameter \"\(key)\"") }
        return String(v)
    }
}

public enum QueryLimits {
    /// The longest wait a request may ask for, in seconds (a day).
    public static let longestWait: Double = 86_400
}
