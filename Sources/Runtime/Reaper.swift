import CRuntime
import Foundation
import Glibc
import Synchronization

/// The agent's only waiter for child processes. One thread blocks in waitpid(-1) and hands
/// each status to the `ExitFuture` of that pid. Because the agent is a child subreaper,
/// container inits become its children when `lxd-start` exits, and are reaped here too.
/// Processes that are not our children (containers adopted after an agent restart) are
/// watched through pidfds on a second thread with poll(2).
///
/// Only registered children (spawned through `Spawner`, or announced with `exit(of:)`) are
/// reaped at once; an unregistered zombie is left to its owner for `foreignGrace`, then
/// reaped as an orphan. The agent itself must still not use Foundation.Process (DESIGN.md).
public final class Reaper: Sendable {
    public static let shared = Reaper()

    private struct Unclaimed { let status: ExitStatus; let sequence: UInt64 }
    private struct State {
        var started = false
        var futures: [pid_t: ExitFuture] = [:]
        /// Statuses reaped before anyone asked (an init can die before its pid is known).
        var unclaimed: [pid_t: Unclaimed] = [:]
        var sequence: UInt64 = 0
        var watched: [Int32: ExitFuture] = [:]   // pidfd -> future
    }
    private let state = Mutex(State())
    /// Byte written after every spawn: wakes the reap thread sleeping on "no children".
    private let childWake: (read: Int32, write: Int32)
    /// Byte written after a pidfd is added: makes the poll thread rebuild its set.
    private let pollWake: (read: Int32, write: Int32)

    private init() {
        var a: [Int32] = [-1, -1], b: [Int32] = [-1, -1]
        precondition(cr_pipe2(&a, O_CLOEXEC) == 0 && cr_pipe2(&b, O_CLOEXEC | O_NONBLOCK) == 0,
                     "reaper: cannot create wake pipes (out of file descriptors?)")
        childWake = (a[0], a[1])
        pollWake = (b[0], b[1])
    }

    /// Makes this process a child subreaper and starts the threads (idempotent).
    public func start() throws(RuntimeError) {
        let first = state.withLock { s -> Bool in
            defer { s.started = true }
            return !s.started
        }
        guard first else { return }
        if cr_set_child_subreaper() != 0 {
            throw .system("prctl(PR_SET_CHILD_SUBREAPER)", on: "agent", errno)
        }
        let reap = Thread { [self] in reapLoop() }
        reap.name = "lxd-reaper"
        reap.stackSize = 256 * 1024
        reap.start()
        let poll = Thread { [self] in pollLoop() }
        poll.name = "lxd-pidfd-watch"
        poll.stackSize = 256 * 1024
        poll.start()
    }

    /// The reap sequence now; pass it to `exit(of:reapedAfter:)` for a pid learned later.
    public var sequence: UInt64 { state.withLock { $0.sequence } }

    /// Tells the reaper a child was just spawned (call after posix_spawn).
    public func childSpawned() {
        var b: UInt8 = 1
        _ = write(childWake.write, &b, 1)
    }

    /// The future for our child (or future child, once reparented) `pid`. A status reaped
    /// before this call counts only if reaped after `sequence` (older ones belong to an
    /// earlier process that had the same pid).
    public func exit(of pid: pid_t, reapedAfter sequence: UInt64) -> ExitFuture {
        state.withLock { s in
            if let f = s.futures[pid] { return f }
            let f = ExitFuture(pid: pid)
            if let u = s.unclaimed.removeValue(forKey: pid) {
                if u.sequence > sequence { f.complete(u.status); return f }
            }
            s.futures[pid] = f
            return f
        }
    }

    /// Watches a process that is not our child through a pidfd (taken over by the reaper).
    public func watch(pid: pid_t, pidfd: Int32) -> ExitFuture {
        let f = ExitFuture(pid: pid)
        state.withLock { $0.watched[pidfd] = f }
        var b: UInt8 = 1
        _ = write(pollWake.write, &b, 1)
        return f
    }

    /// How long a zombie nobody registered stays for its owner to reap it. The agent has
    /// no other waiter, so there it is an orphan (reaped after this delay); in a test process
    /// shared with code that waits for its own children (Foundation.Process, waitpid(pid)),
    /// it is theirs and they reap it within microseconds.
    static let foreignGrace: Duration = .seconds(2)

    private func reapLoop() {
        var firstSeen: [pid_t: ContinuousClock.Instant] = [:]
        let clock = ContinuousClock()
        while true {
            var pid: pid_t = 0
            // Peek first (WNOWAIT): only reap children this reaper is responsible for.
            if cr_peek_exited_child(&pid) != 0 {
                if errno == ECHILD {
                    // No children: sleep until the next spawn instead of spinning.
                    var b = [UInt8](repeating: 0, count: 64)
                    _ = read(childWake.read, &b, b.count)
                } else if errno != EINTR {
                    usleep(10_000)   // unexpected; do not spin
                }
                continue
            }
            let known = state.withLock { $0.futures[pid] != nil }
            let now = clock.now
            let seen = firstSeen[pid] ?? now
            if known || now - seen >= Self.foreignGrace {
                firstSeen[pid] = nil
                reap(pid, blocking: true)
                continue
            }
            firstSeen[pid] = seen
            if firstSeen.count > 64 { firstSeen = firstSeen.filter { now - $0.value < .seconds(10) } }
            // An unregistered zombie may hide later exits from the peek: reap the
            // registered children directly while its owner gets to it.
            let registered = state.withLock { Array($0.futures.keys) }
            for p in registered { reap(p, blocking: false) }
            usleep(1_000)
        }
    }

    private func reap(_ pid: pid_t, blocking: Bool) {
        var status: Int32 = 0
        guard waitpid(pid, &status, blocking ? 0 : WNOHANG) == pid else { return }
        let st = ExitStatus(raw: status)
        let f = state.withLock { s -> ExitFuture? in
            s.sequence += 1
            if let f = s.futures.removeValue(forKey: pid) { return f }
            s.unclaimed[pid] = Unclaimed(status: st, sequence: s.sequence)
            if s.unclaimed.count > 4096 {   // nobody will ask for the oldest any more
                let oldest = s.unclaimed.min { $0.value.sequence < $1.value.sequence }!.key
                s.unclaimed.removeValue(forKey: oldest)
            }
            return nil
        }
        f?.complete(st)
    }

    private func pollLoop() {
        while true {
            let watched = state.withLock { Array($0.watched.keys) }
            var fds = [pollfd(fd: pollWake.read, events: Int16(POLLIN), revents: 0)]
            fds += watched.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            let n = poll(&fds, nfds_t(fds.count), -1)
            if n < 0 { if errno != EINTR { usleep(10_000) }; continue }
            if fds[0].revents != 0 {
                var b = [UInt8](repeating: 0, count: 64)
                _ = read(pollWake.read, &b, b.count)
            }
            for p in fds.dropFirst() where p.revents != 0 {
                let f = state.withLock { $0.watched.removeValue(forKey: p.fd) }
                close(p.fd)
                f?.complete(ExitStatus(raw: nil))
            }
        }
    }
}
