#if canImport(FoundationEssentials)
import FoundationEssentials  // not Foundation: it adds ~10 ms of ICU loading to every lxdctl run
#else
import Foundation
#endif
import LXDClient
#if canImport(Glibc)
import Glibc
#endif

/// Direct writes to the standard fds: no buffering surprises when exec output interleaves.
enum Output {
    /// A listing in the chosen format: an LXD-style table, CSV rows, or the API objects as JSON.
    static func listing<T: Encodable>(_ format: OutputFormat, headers: [String], rows: [[String]], json value: T) throws {
        switch format {
        case .table: stdout(TextTable.render(headers: headers, rows: rows))
        case .csv: stdout(TextTable.csv(rows: rows))
        case .json: stdout(try JSONText.encode(value))
        }
    }

    static func stdout(_ text: String) { write(1, Array(text.utf8)) }
    static func stderr(_ text: String) { write(2, Array(text.utf8)) }

    /// Writes all of `bytes`, retrying short writes and EINTR. When the reader went away
    /// (EPIPE: `lxdctl list | head -1`) lxdctl ends the way any pipeline member does, by
    /// SIGPIPE (SIGPIPE is ignored only so that this is a decision, not an accident); other
    /// errors are dropped, since there is nowhere left to report them.
    static func write(_ fd: Int32, _ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n > 0 {
                offset += n
            } else if n < 0 && errno == EINTR {
                continue
            } else if n < 0 && errno == EPIPE {
                signal(SIGPIPE, SIG_DFL)
                raise(SIGPIPE)
                return
            } else {
                return
            }
        }
    }
}
