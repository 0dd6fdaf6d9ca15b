import CRuntime
import Glibc
import InstanceConfig

/// One packet of the console monitor's protocol. Each running container's monitor (in
/// `lxd-start`) holds the master of the container's console pty and serves
/// `<container dir>/console.sock`: a unix SOCK_SEQPACKET socket, root only, one client at a
/// time (a new client replaces the previous one), one message per packet, EOF when the
/// container stops.
///
/// - `'d'` (0x64) + bytes: input to the console (client to monitor) or output from it
///   (monitor to client); never empty.
/// - `'w'` (0x77) + rows + columns, each UInt16 big-endian: a window resize (client to monitor).
public enum ConsoleMessage: Equatable, Sendable {
    case data([UInt8])
    case resize(rows: UInt16, columns: UInt16)

    static let dataTag: UInt8 = 0x64
    static let resizeTag: UInt8 = 0x77

    /// The most bytes one data packet carries, as the monitor reads and sends them; longer
    /// input is split (`packets(input:)`). Packets are read into a buffer of `maxPacket`
    /// bytes: a shorter one would cut a packet and lose the rest.
    public static let maxPayload = 64 * 1024
    public static let maxPacket = maxPayload + 1

    /// Why a packet was refused.
    public enum DecodeError: Error, Equatable, CustomStringConvertible {
        case empty
        case unknownTag(UInt8)
        case emptyData
        case tooLong(Int)
        case resizeLength(Int)

        public var description: String {
            switch self {
            case .empty: "console packet is empty"
            case .unknownTag(let t): "console packet has unknown type 0x\(String(t, radix: 16))"
            case .emptyData: "console data packet carries no bytes"
            case .tooLong(let n): "console packet of \(n) bytes exceeds \(ConsoleMessage.maxPacket)"
            case .resizeLength(let n): "console resize packet is \(n) bytes, not 5"
            }
        }
    }

    /// The packet's bytes. A data message longer than `maxPayload` is for `packets(input:)`.
    public var encoded: [UInt8] {
        switch self {
        case .data(let bytes):
            return [Self.dataTag] + bytes
        case .resize(let rows, let columns):
            return [Self.resizeTag, UInt8(rows >> 8), UInt8(rows & 0xff), UInt8(columns >> 8), UInt8(columns & 0xff)]
        }
    }

    /// Input bytes as data packets of at most `maxPayload` bytes each (none for no bytes).
    public static func packets(input: [UInt8]) -> [[UInt8]] {
        stride(from: 0, to: input.count, by: maxPayload).map { start in
            [dataTag] + input[start..<min(start + maxPayload, input.count)]
        }
    }

    /// Reads one packet; anything but a well-formed message of a known type is refused.
    public static func decode(_ packet: [UInt8]) throws(DecodeError) -> ConsoleMessage {
        guard let tag = packet.first else { throw .empty }
        guard packet.count <= maxPacket else { throw .tooLong(packet.count) }
        switch tag {
        case dataTag:
            guard packet.count > 1 else { throw .emptyData }
            return .data(Array(packet.dropFirst()))
        case resizeTag:
            guard packet.count == 5 else { throw .resizeLength(packet.count) }
            return .resize(rows: UInt16(packet[1]) << 8 | UInt16(packet[2]), columns: UInt16(packet[3]) << 8 | UInt16(packet[4]))
        default:
            throw .unknownTag(tag)
        }
    }
}

extension ContainerRuntime {
    /// Connects to the console monitor of the running container: a blocking SOCK_SEQPACKET
    /// socket (close-on-exec) carrying `ConsoleMessage` packets, which the caller closes (read
    /// it with `readStream(fd:stop:bufferSize: ConsoleMessage.maxPacket)`). The monitor serves
    /// one client: connecting detaches whoever was attached before.
    public func openConsole(instance name: InstanceRef) throws(RuntimeError) -> Int32 {
        guard state(instance: name)?.running == true else { throw .notRunning("\(name)") }
        let path = paths(name).consoleSocket
        // Through the directory's fd: a deep data directory would not fit sun_path's 108 bytes.
        let fd = cr_connect_unix_seqpacket(path)
        if fd < 0 {
            switch errno {
            case ENOENT:
                throw .invalid("the console of \(name) is not available (container started before consoles existed; restart it)")
            case ECONNREFUSED:
                throw .invalid("the console monitor of \(name) does not answer on \(path); restart the container")
            case let code:
                throw .system("connect", on: path, code)
            }
        }
        return fd
    }

    /// Empties the container's console log (`console.log`); the monitor keeps appending to it.
    /// A container that never ran has no log, which is not an error.
    public func clearConsoleLog(instance name: InstanceRef) throws(RuntimeError) {
        let p = paths(name)
        if access(p.dir, F_OK) != 0 { throw .notFound("\(name)") }
        if truncate(p.console, 0) != 0 && errno != ENOENT { throw .system("truncate console log", on: p.console, errno) }
    }
}
