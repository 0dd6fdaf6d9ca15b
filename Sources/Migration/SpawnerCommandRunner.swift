import Foundation
import Glibc
import Runtime

/// `CommandRunner` over Runtime's `Spawner`: posix_spawn with only stdio open, the exit
/// collected by the agent's `Reaper` (so it never races the reaper's waitpid(-1)).
/// Output goes to an unlinked temporary file rather than a pipe: a process that outlives the
/// command (criu restore -d leaves a detached tree) can never hold the read end hostage.
public struct SpawnerCommandRunner: CommandRunner {
    public init() {}

    public func run(executable: String, arguments: [String], environment: [String: String]) async throws -> CommandOutput {
        try await run(executable: executable, arguments: arguments, environment: environment, inherited: [:])
    }

    public func run(executable: String, arguments: [String], environment: [String: String],
                    inherited: [Int32: Int32]) async throws -> CommandOutput {
        var template = Array("/tmp/lxd-criu-out-XXXXXX".utf8CString)
        // Spawner closes every fd it is not given, so no O_CLOEXEC race with other spawns.
        let out = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard out >= 0 else { throw RuntimeError.system("mkstemp", on: "/tmp", errno) }
        template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
        defer { close(out) }
        let null = open("/dev/null", O_RDONLY | O_CLOEXEC)
        guard null >= 0 else { throw RuntimeError.system("open", on: "/dev/null", errno) }
        let process: SpawnedProcess
        do {
            defer { close(null) }
            process = try Spawner.spawn(executable, arguments: [executable] + arguments,
                                        environment: environment.map { "\($0.key)=\($0.value)" }.sorted(),
                                        fds: [0: null, 1: out, 2: out].merging(inherited) { std, _ in std })
        }
        // Cancelling the caller's task ends the command (a daemon such as criu lazy-pages that
        // waits for a peer which will never come).
        let status = await withTaskCancellationHandler {
            await process.wait()
        } onCancel: {
            kill(process.pid, SIGKILL)
        }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        var offset: off_t = 0
        while true {
            let n = pread(out, &buffer, buffer.count, offset)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            bytes += buffer[0..<n]
            offset += off_t(n)
        }
        return CommandOutput(exitStatus: status.shellCode, output: String(decoding: bytes, as: UTF8.self))
    }
}
