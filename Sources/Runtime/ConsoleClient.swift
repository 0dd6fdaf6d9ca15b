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

    /// The most bytes one data packet carries; longer input is split (`packets(input:)`), and
    /// the client reads packets into a buffer of `maxPacket` bytes.
    public static let maxPayload = 16 * 1024
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
    /// socket (close-on-exec) carrying `ConsoleMessage` packets, which the caller closes. The
    /// monitor serves one client: connecting detaches whoever was attached before.
    public func openConsole(instance name: InstanceRef) throws(RuntimeError) -> Int32 {
        guard state(instance: name)?.running == true else { throw .notRunning("\(name)") }
        let path = paths(name).consoleSocket
        // Connect through the directory's fd: a data directory deep enough would not fit the
        // 108 bytes of sun_path, "/proc/self/fd/N/console.sock" always does.
        let dir = open(paths(name).dir, cr_O_PATH | O_DIRECTORY | O_CLOEXEC)
        if dir < 0 { throw .system("open container directory", on: paths(name).dir, errno) }
        defer { close(dir) }
        let fd = socket(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if fd < 0 { throw .system("socket", on: path, errno) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let viaFD = Array("/proc/self/fd/\(dir)/console.sock".utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: viaFD.prefix(raw.count - 1))
        }
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        if rc != 0 {
            let code = errno
            close(fd)
            switch code {
            case ENOENT:
                throw .invalid("the console of \(name) is not available (container started before consoles existed; restart it)")
            case ECONNREFUSED:
                throw .invalid("the console monitor of \(name) does not answer on \(path); restart the container")
            default:
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
