import Foundation
import Glibc

/// Which signals ask a container's init to shut down cleanly. Pure: decided from the text of
/// its /proc/PID/status.
///
/// systemd takes SIGRTMIN+3 as "halt" and blocks it to read it from a signalfd; to systemd,
/// SIGTERM means "serialize and re-execute", and Debian 12 ships no unit that turns SIGPWR into
/// a shutdown. Other inits (busybox, sysvinit) shut down on SIGPWR or SIGTERM and do not block
/// SIGRTMIN+3. So: an init that blocks SIGRTMIN+3 gets only that; any other gets both.
public enum HaltSignal {
    /// glibc's SIGRTMIN is 34 (it keeps two real-time signals for itself), so SIGRTMIN+3 is 37.
    public static let systemdHalt: Int32 = 37

    public static func signals(forInitStatus status: String) -> [Int32] {
        blocks(systemdHalt, status: status) ? [systemdHalt] : [SIGPWR, SIGTERM]
    }

    /// Whether the `SigBlk:` mask (hex, bit n-1 for signal n) holds `signal`.
    static func blocks(_ signal: Int32, status: String) -> Bool {
        guard signal >= 1 && signal <= 64 else { return false }
        for line in status.split(separator: "\n") where line.hasPrefix("SigBlk:") {
            let hex = line.dropFirst("SigBlk:".count).trimmingCharacters(in: .whitespaces)
            guard hex.count <= 16, let mask = UInt64(hex, radix: 16) else { return false }
            return mask & (UInt64(1) << UInt64(signal - 1)) != 0
        }
        return false
    }
}
