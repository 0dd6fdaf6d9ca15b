import Glibc

/// A connected pair of local stream sockets: one end for a child process (CRIU), the other
/// pumped over a member link. Close-on-exec: the spawner hands the child its end explicitly.
enum SocketPair {
    static func make() throws -> (Int32, Int32) {
        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            throw InstancesError.internal("socketpair failed: \(String(cString: strerror(errno)))")
        }
        return (pair[0], pair[1])
    }
}
