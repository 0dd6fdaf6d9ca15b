import Glibc
import InstanceConfig
import Synchronization

/// How a process ended. `raw` is the wait status; nil when the process was not our child
/// (watched through a pidfd after an agent restart), so only "it ended" is known.
public struct ExitStatus: Sendable, Equatable, CustomStringConvertible {
    public let raw: Int32?

    public init(raw: Int32?) { self.raw = raw }

    /// The exit code, or nil when killed by a signal or unknown.
    public var code: Int32? {
        guard let raw, raw & 0x7f == 0 else { return nil }
        return (raw >> 8) & 0xff
    }

    /// The terminating signal, or nil.
    public var signal: Int32? {
        guard let raw, raw & 0x7f != 0, raw & 0x7f != 0x7f else { return nil }
        return raw & 0x7f
    }

    /// Shell convention: the code, or 128 + signal; -1 when unknown.
    public var shellCode: Int32 {
        if let code { return code }
        if let signal { return 128 + signal }
        return -1
    }

    public var description: String {
        if let code { return "exited with code \(code)" }
        if let signal { return "killed by signal \(signal)" }
        return "exited (status unknown)"
    }
}

/// How a container's init ended, for whoever keeps the instance's records.
public struct InitExit: Sendable, Equatable {
    public let instance: InstanceRef
    public let status: ExitStatus
    /// True when `stop` asked for it (including a forced stop and a restart).
    public let requested: Bool

    public init(instance: InstanceRef, status: ExitStatus, requested: Bool) {
        self.instance = instance
        self.status = status
        self.requested = requested
    }

    /// A reboot from inside: the kernel ends the init of a pid namespace with SIGHUP after
    /// reboot(RB_AUTOBOOT), and with SIGINT after a halt or power-off.
    public var isReboot: Bool { !requested && status.signal == SIGHUP }
}

/// A process's end, awaitable by any number of tasks, with or without a time limit.
public final class ExitFuture: Sendable {
    private struct State {
        var status: ExitStatus?
        var waiters: [UInt64: CheckedContinuation<ExitStatus?, Never>] = [:]
        var nextID: UInt64 = 0
    }
    private let state = Mutex(State())

    public let pid: pid_t

    init(pid: pid_t) { self.pid = pid }

    /// The status if the process already ended.
    public var status: ExitStatus? { state.withLock { $0.status } }

    func complete(_ status: ExitStatus) {
        let waiters = state.withLock { s -> [CheckedContinuation<ExitStatus?, Never>] in
            guard s.status == nil else { return [] }
            s.status = status
            defer { s.waiters = [:] }
            return Array(s.waiters.values)
        }
        for w in waiters { w.resume(returning: status) }
    }

    /// Waits for the end of the process.
    public func wait() async -> ExitStatus {
        // A nil result only comes from a timeout, which this waiter never has.
        await wait(timeout: nil)!
    }

    /// Waits at most `timeout`; nil when the process is still running then.
    public func wait(timeout: Duration?) async -> ExitStatus? {
        if let s = status { return s }
        var id: UInt64 = 0
        var timer: Task<Void, Never>?
        let result = await withCheckedContinuation { (c: CheckedContinuation<ExitStatus?, Never>) in
            let done: ExitStatus? = state.withLock { s in
                if let st = s.status { return st }
                id = s.nextID
                s.nextID += 1
                s.waiters[id] = c
                return nil
            }
            if let done { c.resume(returning: done); return }
            if let timeout {
                let myID = id
                timer = Task { [weak self] in
                    try? await Task.sleep(for: timeout)
                    self?.expire(myID)
                }
            }
        }
        timer?.cancel()
        return result
    }

    private func expire(_ id: UInt64) {
        let c = state.withLock { $0.waiters.removeValue(forKey: id) }
        c?.resume(returning: nil)
    }
}

/// A one-shot signal many tasks can await (e.g. "cleanup finished").
final class Event: Sendable {
    private let state = Mutex<(open: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    func open() {
        let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.open = true
            defer { s.waiters = [] }
            return s.waiters
        }
        for w in waiters { w.resume() }
    }

    func wait() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let now = state.withLock { s -> Bool in
                if s.open { return true }
                s.waiters.append(c)
                return false
            }
            if now { c.resume() }
        }
    }
}
