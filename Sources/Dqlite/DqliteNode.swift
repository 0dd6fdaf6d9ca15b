import CDqlite
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Opens a stream to another member's dqlite node on dqlite's behalf (raft peer traffic).
///
/// Called on libuv's worker threads, so it may block (bounded: raft waits for it).
/// Return a connected stream socket fd that dqlite will own, or throw to make raft
/// retry later. The agent implements this with a socketpair pumped over its TLS link.
public protocol DqlitePeerDialer: Sendable {
    func dial(address: String) throws -> Int32
}

/// Dials peers whose dqlite nodes run in this process, by their abstract socket
/// names (tests and single-host setups): cluster address → "@name".
public struct AbstractSocketDialer: DqlitePeerDialer {
    public var bindAddresses: [String: String]

    public init(bindAddresses: [String: String]) {
        self.bindAddresses = bindAddresses
    }

    public func dial(address: String) throws -> Int32 {
        guard let name = bindAddresses[address] else {
            throw DqliteError.io(operation: "dial \(address) (no abstract socket name known for it)", errno: EHOSTUNREACH)
        }
        return try connectAbstractSocket(name)
    }
}

/// Connects to an abstract unix socket given as "@name". The node accepts only
/// connections from its own process (it checks the peer's pid).
public func connectAbstractSocket(_ bindAddress: String) throws(DqliteError) -> Int32 {
    guard bindAddress.hasPrefix("@"), bindAddress.count > 1 else {
        throw .malformed("bind address \(bindAddress.debugDescription) is not an abstract socket name (\"@name\")")
    }
    let name = Array(bindAddress.utf8.dropFirst())
    let fd = name.withUnsafeBufferPointer { buf in
        buf.withMemoryRebound(to: CChar.self) { cdqlite_connect_abstract($0.baseAddress, $0.count) }
    }
    if fd < 0 { throw .io(operation: "connect to \(bindAddress)", errno: -fd) }
    return fd
}

/// An embedded dqlite node (dqlite_node_*), bound to an abstract unix socket.
///
/// Lifecycle: init (create + configure) → start → stop. The node runs on its
/// own thread; this object only guards the C handle. Id 1 bootstraps a new
/// single-member cluster when its data directory is empty.
public final class DqliteNode: Sendable {
    public struct Configuration: Sendable {
        public var id: UInt64
        /// The member's cluster address (stored in raft's configuration; what LEADER reports).
        public var address: String
        public var dataDir: String
        /// Where the node listens: "@abstract-name".
        public var bindAddress: String
        /// Heartbeat = 1.5x, election timeout = 15x this. 20 ms gives sub-second fail-over (NOTES-dqlite.md).
        public var networkLatencyMilliseconds: UInt32
        public var failureDomain: UInt64?
        /// How raft reaches other members; nil uses dqlite's built-in dialer (fine for one member).
        public var peerDialer: (any DqlitePeerDialer)?

        public init(id: UInt64, address: String, dataDir: String, bindAddress: String,
                    networkLatencyMilliseconds: UInt32 = 20, failureDomain: UInt64? = nil,
                    peerDialer: (any DqlitePeerDialer)? = nil) {
            self.id = id
            self.address = address
            self.dataDir = dataDir
            self.bindAddress = bindAddress
            self.networkLatencyMilliseconds = networkLatencyMilliseconds
            self.failureDomain = failureDomain
            self.peerDialer = peerDialer
        }
    }

    private enum Phase { case created, running, stopped }

    private struct Handle: ~Copyable {
        // The C node; only touched under the mutex.
        var pointer: OpaquePointer?
        var phase: Phase
    }

    public let configuration: Configuration
    public var id: UInt64 { configuration.id }
    public var address: String { configuration.address }
    public var bindAddress: String { configuration.bindAddress }

    private let handle: Mutex<Handle>
    /// Keeps the dialer box alive while dqlite may call it; released in deinit.
    private let dialerBox: Unmanaged<DialerBox>?
    private let logger: Logger

    public convenience init(id: UInt64, address: String, dataDir: String, bindAddress: String,
                            networkLatencyMilliseconds: UInt32 = 20, logger: Logger = Logger(label: "dqlite.node")) throws {
        try self.init(Configuration(id: id, address: address, dataDir: dataDir, bindAddress: bindAddress,
                                    networkLatencyMilliseconds: networkLatencyMilliseconds), logger: logger)
    }

    public init(_ configuration: Configuration, logger: Logger = Logger(label: "dqlite.node")) throws {
        self.configuration = configuration
        var logger = logger
        logger[metadataKey: "dqlite-id"] = "\(configuration.id)"
        self.logger = logger
        DqliteNode.prepareProcess()

        try DqliteNode.makeDirectory(configuration.dataDir)

        var node: OpaquePointer?
        var rv = dqlite_node_create(configuration.id, configuration.address, configuration.dataDir, &node)
        guard rv == 0, let node else {
            let message = node.map { String(cString: dqlite_node_errmsg($0)) } ?? ""
            if let node { dqlite_node_destroy(node) }
            throw DqliteError.node(operation: "create (id \(configuration.id), data dir \(configuration.dataDir))", code: rv, message: message)
        }
        func fail(_ operation: String, _ rv: Int32) -> DqliteError {
            let message = String(cString: dqlite_node_errmsg(node))
            dqlite_node_destroy(node)
            return .node(operation: operation, code: rv, message: message)
        }
        rv = dqlite_node_set_bind_address(node, configuration.bindAddress)
        if rv != 0 {
            throw fail("bind to \(configuration.bindAddress) (name in use by another node, or a child process inherited the old socket)", rv)
        }
        rv = dqlite_node_set_network_latency_ms(node, configuration.networkLatencyMilliseconds)
        if rv != 0 { throw fail("set network latency \(configuration.networkLatencyMilliseconds) ms", rv) }
        if let domain = configuration.failureDomain {
            rv = dqlite_node_set_failure_domain(node, domain)
            if rv != 0 { throw fail("set failure domain \(domain)", rv) }
        }
        if let dialer = configuration.peerDialer {
            let box = Unmanaged.passRetained(DialerBox(dialer: dialer, logger: logger))
            rv = dqlite_node_set_connect_func(node, dqlitePeerConnect, box.toOpaque())
            if rv != 0 {
                box.release()
                throw fail("set connect func", rv)
            }
            dialerBox = box
        } else {
            dialerBox = nil
        }
        handle = Mutex(Handle(pointer: node, phase: .created))
    }

    deinit {
        handle.withLock { h in
            if let p = h.pointer {
                if h.phase == .running { _ = dqlite_node_stop(p) }
                dqlite_node_destroy(p)
                h.pointer = nil
            }
        }
        dialerBox?.release()
    }

    /// Starts the node's thread. A bootstrapping node needs a moment (an election timeout) before it leads.
    public func start() throws(DqliteError) {
        try handle.withLock { (h: inout Handle) throws(DqliteError) in
            guard let p = h.pointer, h.phase == .created else {
                throw .node(operation: "start", code: -1, message: "node \(configuration.id) was already started or stopped; create a new DqliteNode")
            }
            let rv = dqlite_node_start(p)
            if rv != 0 {
                throw .node(operation: "start (data dir \(configuration.dataDir))", code: rv, message: String(cString: dqlite_node_errmsg(p)))
            }
            h.phase = .running
        }
        logger.info("dqlite node started", metadata: ["address": "\(configuration.address)", "bind": "\(configuration.bindAddress)"])
    }

    /// Stops the node. dqlite 1.11 does not hand leadership over: send TRANSFER first on a multi-member cluster.
    public func stop() throws(DqliteError) {
        try handle.withLock { (h: inout Handle) throws(DqliteError) in
            guard let p = h.pointer, h.phase == .running else { return }
            let rv = dqlite_node_stop(p)
            h.phase = .stopped
            if rv != 0 {
                throw .node(operation: "stop", code: rv, message: String(cString: dqlite_node_errmsg(p)))
            }
        }
        logger.info("dqlite node stopped")
    }

    /// Rewrites this node's raft configuration to `voters` (each a voter), for a cluster that lost
    /// its majority (dqlite_node_recover_ext). Only on a created, never started node, with every
    /// other node of the cluster stopped; the caller picks the survivor with the newest log.
    public func recover(voters: [(id: UInt64, address: String)]) throws(DqliteError) {
        try handle.withLock { (h: inout Handle) throws(DqliteError) in
            guard let p = h.pointer, h.phase == .created else {
                throw .node(operation: "recover", code: -1, message: "node \(configuration.id) was already started: recover needs a node that is not running")
            }
            let addresses = voters.map { strdup($0.address) }
            defer { addresses.forEach { free($0) } }
            // dqlite's role numbering (as on the wire): voter 0.
            var infos = zip(voters, addresses).map { voter, address in
                dqlite_node_info_ext(size: UInt64(MemoryLayout<dqlite_node_info_ext>.size), id: voter.id,
                                     address: UInt64(UInt(bitPattern: address)), dqlite_role: 0)
            }
            let rv = infos.withUnsafeMutableBufferPointer { buf in dqlite_node_recover_ext(p, buf.baseAddress, Int32(buf.count)) }
            if rv != 0 {
                throw .node(operation: "recover (data dir \(configuration.dataDir))", code: rv, message: String(cString: dqlite_node_errmsg(p)))
            }
        }
        logger.notice("dqlite raft configuration rewritten", metadata: ["voters": "\(voters.map(\.address))"])
    }

    /// A client-side dialer that reaches this node by its bind address (for pools in this process).
    public var localDialer: AbstractSocketDialer {
        AbstractSocketDialer(bindAddresses: [configuration.address: configuration.bindAddress])
    }

    /// Process-wide settings dqlite needs, applied once: SQLite multi-thread mode
    /// and SIGPIPE ignored (libuv writes without MSG_NOSIGNAL). Runs on the first
    /// node init; call it at agent start-up if anything else may open SQLite first
    /// (the threading mode can only be set before SQLite initialises).
    public static func prepareProcess() {
        _ = processPrepared
    }

    private static let processPrepared: Bool = {
        _ = cdqlite_sqlite_use_multithread()
        signal(SIGPIPE, SIG_IGN)
        return true
    }()

    private static func makeDirectory(_ path: String) throws(DqliteError) {
        var prefix = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            prefix += "/" + component
            if mkdir(prefix, 0o750) != 0 && errno != EEXIST {
                throw .io(operation: "mkdir \(prefix)", errno: errno)
            }
        }
    }
}

final class DialerBox: Sendable {
    let dialer: any DqlitePeerDialer
    let logger: Logger

    init(dialer: any DqlitePeerDialer, logger: Logger) {
        self.dialer = dialer
        self.logger = logger
    }
}

/// dqlite's connect_func: runs on a libuv worker thread; 0 = connected, non-zero = raft retries later.
private func dqlitePeerConnect(_ arg: UnsafeMutableRawPointer?, _ address: UnsafePointer<CChar>?, _ fd: UnsafeMutablePointer<Int32>?) -> Int32 {
    guard let arg, let address, let fd else { return 1 }
    let box = Unmanaged<DialerBox>.fromOpaque(arg).takeUnretainedValue()
    let target = String(cString: address)
    do {
        fd.pointee = try box.dialer.dial(address: target)
        return 0
    } catch {
        box.logger.debug("dqlite peer dial failed", metadata: ["peer": "\(target)", "error": "\(error)"])
        return 1
    }
}
