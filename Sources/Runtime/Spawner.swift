import CRuntime
import Glibc

/// A process started by `Spawner`; its exit is collected by the `Reaper`.
public struct SpawnedProcess: Sendable {
    public let pid: pid_t
    public let exit: ExitFuture

    /// Waits for the process to end.
    public func wait() async -> ExitStatus { await exit.wait() }
}

/// Starts programs from the multithreaded agent without fork: posix_spawn with exactly the
/// file descriptors chosen (everything else closed), default signal handling, a new session.
/// Use this instead of Foundation.Process, whose own waitpid would race the Reaper.
public enum Spawner {
    /// Spawns `path` with `arguments` (argv[0] included) and `environment` ("K=V").
    /// `fds` maps child fd -> parent fd; unlisted 0, 1, 2 are /dev/null, every other fd is closed. The parent's fds are
    /// left open (close your copies after the call).
    public static func spawn(_ path: String, arguments: [String], environment: [String] = [],
                             fds: [Int32: Int32], newSession: Bool = true) throws(RuntimeError) -> SpawnedProcess {
        try Reaper.shared.start()
        let before = Reaper.shared.sequence
        let targets = fds.keys.sorted()
        let sources = targets.map { fds[$0]! }
        var pid: pid_t = 0
        let rc = withCStringArray(arguments) { argv in
            withCStringArray(environment) { envp in
                cr_spawn(path, argv, envp, sources, targets, Int32(targets.count), newSession ? 1 : 0, &pid)
            }
        }
        if rc != 0 { throw .system("posix_spawn", on: path, rc) }
        Reaper.shared.childSpawned()
        return SpawnedProcess(pid: pid, exit: Reaper.shared.exit(of: pid, reapedAfter: before))
    }
}

func withCStringArray<R>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) -> R) -> R {
    var ptrs: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    ptrs.append(nil)
    defer { for p in ptrs { free(p) } }
    return body(ptrs)
}
