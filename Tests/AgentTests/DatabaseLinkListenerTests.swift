@testable import Agent
import Cluster
import Dqlite
import Foundation
import Gateway
import Identity
import IdentityGenerator
import LXDClient
import Operations
import Synchronization
import Testing

/// The links-only listener a member runs while it opens its database must let go of its address
/// when the full listener takes over, whatever connections it holds (a leader's raft link to a
/// just-joined member kept it, and the member's API never came up).
@Suite struct DatabaseLinkListenerTests {
    /// A links listener on a free loopback port for member m3, whose peer m1 has `peer`'s certificate.
    struct Fixture {
        let node: FakeNodeSocket
        let server: TLSIdentity
        let port: Int
        let listener: DatabaseLinkListener
        var address: String { "127.0.0.1:\(port)" }

        init(peer: String = String(repeating: "ab", count: 32)) throws {
            node = try FakeNodeSocket()
            server = try IdentityGenerator.generate(commonName: "m3", ipAddresses: ["127.0.0.1"])
            port = DatabaseLinkListenerTests.freePort()
            let directory = PeerDirectory([
                LocalPeer(name: "m3", address: "127.0.0.1:\(port)", fingerprint: server.fingerprint),
                LocalPeer(name: "m1", address: "127.0.0.1:1", fingerprint: peer),
            ])
            listener = try #require(try DatabaseLinkListener.start(
                https: ("127.0.0.1", port), peers: directory.all, directory: directory, identity: server,
                bindAddress: node.bindAddress, logger: .init(label: "test")))
        }

        /// A TCP connection that sends nothing, once the listener accepts.
        func silentConnection() async throws -> Int32 {
            let deadline = ContinuousClock.now + .seconds(5)
            while ContinuousClock.now < deadline {
                let fd = DatabaseLinkListenerTests.connectTCP(port: port)
                if fd >= 0 { return fd }
                try await Task.sleep(for: .milliseconds(50))
            }
            throw POSIXError(.ECONNREFUSED)
        }

        /// Whether stop() returned within `limit`, and how long it took.
        func stop(within limit: Duration) async throws -> (stopped: Bool, took: Duration) {
            let started = ContinuousClock.now
            let stopped = Mutex(false)
            Task {
                await listener.stop()
                stopped.withLock { $0 = true }
            }
            while !stopped.withLock({ $0 }), ContinuousClock.now - started < limit { try await Task.sleep(for: .milliseconds(20)) }
            return (stopped.withLock { $0 }, ContinuousClock.now - started)
        }
    }

    @Test func stoppingEndsOpenLinksAndFreesTheAddress() async throws {
        let peer = try IdentityGenerator.generate(commonName: "m1")
        let f = try Fixture(peer: peer.fingerprint)
        defer { f.node.close() }

        // A peer's link, carried through to the (stand-in) node.
        let link = try await Self.openLink(f.address, server: f.server, client: peer)
        try await link.send(binary: Array("hello".utf8))
        #expect(await f.node.received(count: 5, within: .seconds(5)) == Array("hello".utf8))

        // Raft keeps its links busy (heartbeats, entries): the peer goes on sending while the listener stops.
        let chatter = Task {
            while !Task.isCancelled {
                do { try await link.send(binary: Array("beat".utf8)) } catch { return }
                try? await Task.sleep(for: .milliseconds(5))
            }
        }
        defer { chatter.cancel() }
        let (stopped, took) = try await f.stop(within: .seconds(5))
        #expect(stopped, "stop() still waits \(took) later with a peer link open")
        #expect(Self.canListen(port: f.port), "the address is still held after stop()")
        // The peer sees its link end (and raft re-dials it through the full listener).
        let ended = await Deadline.first(Task { for await _ in link.messages {} }, within: .seconds(5)) != nil
        #expect(ended, "the peer's link is still open 5 s after stop()")
    }

    /// A connection that never says anything (a dial its dialer gave up on, a stalled client)
    /// must not hold the listener, and with it the member's API: stop() closes it at once
    /// rather than waiting out its deadline.
    @Test func aSilentConnectionDoesNotHoldTheAddress() async throws {
        let f = try Fixture()
        defer { f.node.close() }
        let silent = try await f.silentConnection()
        defer { Foundation.close(silent) }
        try await Task.sleep(for: .milliseconds(200))

        let (stopped, took) = try await f.stop(within: DatabaseLinkListener.firstBytesDeadline / 2)
        #expect(stopped, "stop() still waits \(took) later for a connection that sent nothing")
        #expect(Self.canListen(port: f.port), "the address is still held")
        print("links listener with a silent connection stopped after \(took)")
    }

    /// Without a stop, a connection that says nothing is closed after the deadline.
    @Test func aSilentConnectionIsClosedAfterTheDeadline() async throws {
        let f = try Fixture()
        defer { f.node.close() }
        defer { Task { await f.listener.stop() } }
        let fd = try await f.silentConnection()
        defer { Foundation.close(fd) }
        let accepted = ContinuousClock.now
        // read() returns 0 once the server closes its end.
        let closedAfter: Duration? = await Task.detached {
            var timeout = timeval(tv_sec: 10, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            var byte: UInt8 = 0
            return read(fd, &byte, 1) == 0 ? ContinuousClock.now - accepted : nil
        }.value
        let after = try #require(closedAfter, "the silent connection was still open 10 s after it was accepted")
        #expect(after >= DatabaseLinkListener.firstBytesDeadline - .milliseconds(200) && after < DatabaseLinkListener.firstBytesDeadline + .seconds(2),
                "closed after \(after)")
    }

    static func connectTCP(port: Int) -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = loopback(port: port)
        let connected = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if connected != 0 { Foundation.close(fd); return -1 }
        return fd
    }

    static func openLink(_ address: String, server: TLSIdentity, client: TLSIdentity) async throws -> WebSocket {
        let deadline = ContinuousClock.now + .seconds(5)
        while true {
            do {
                let transport = try HTTPChannelTransport.https(addresses: [address], serverFingerprint: server.fingerprint, identity: client)
                return try await transport.openWebSocket(HTTPRequest(.GET, "/internal/database"))
            } catch where ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
            }
        }
    }

    static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { Foundation.close(fd) }
        var addr = loopback(port: 0)
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    /// True when a new listener (SO_REUSEADDR, as the server's) can bind and listen on `port`.
    static func canListen(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { Foundation.close(fd) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = loopback(port: port)
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        return bound == 0 && listen(fd, 1) == 0
    }

    static func loopback(port: Int) -> sockaddr_in {
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = UInt16(port).bigEndian
        inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr)
        return addr
    }
}

/// An abstract unix socket standing in for the dqlite node: accepts links and records what they carry.
final class FakeNodeSocket: Sendable {
    let bindAddress = "@lxd-swift-test-links-\(getpid())-\(UInt32.random(in: 0 ... .max))"
    private let fd: Int32
    private let bytes = Received()

    final class Received: Sendable {
        private let bytes = Mutex<[UInt8]>([])
        func append(_ more: ArraySlice<UInt8>) { bytes.withLock { $0 += more } }
        var all: [UInt8] { bytes.withLock { $0 } }
    }

    init() throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let name = Array(bindAddress.utf8.dropFirst())
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw[0] = 0
            for (i, b) in name.enumerated() { raw[i + 1] = b }
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + 1 + name.count)
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        guard bound == 0, listen(fd, 4) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        let listening = fd
        let bytes = self.bytes
        Thread.detachNewThread {
            while true {
                let conn = accept(listening, nil, nil)
                if conn < 0 { return }
                Thread.detachNewThread {
                    var buffer = [UInt8](repeating: 0, count: 4096)
                    while true {
                        let n = buffer.withUnsafeMutableBytes { read(conn, $0.baseAddress, $0.count) }
                        if n <= 0 { break }
                        bytes.append(buffer[0..<n])
                        // Answer, as a node does: the link carries traffic both ways.
                        _ = buffer.withUnsafeBytes { write(conn, $0.baseAddress, n) }
                    }
                    Foundation.close(conn)
                }
            }
        }
    }

    func received(count: Int, within limit: Duration) async -> [UInt8] {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            let now = bytes.all
            if now.count >= count { return now }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return bytes.all
    }

    func close() { shutdown(fd, Int32(SHUT_RDWR)); Foundation.close(fd) }
}
