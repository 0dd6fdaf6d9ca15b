/// What a finished command reported: its exit status (shell convention: the code, or
/// 128 + signal) and its combined stdout and stderr.
public struct CommandOutput: Sendable, Equatable {
    public var exitStatus: Int32
    public var output: String

    public init(exitStatus: Int32, output: String) {
        self.exitStatus = exitStatus
        self.output = output
    }
}

/// Runs a program to completion. The seam between the CRIU driver and the OS: the agent is a
/// child subreaper whose reaper thread owns waitpid(-1), so an implementation must go through
/// that reaper (Runtime's `Spawner`), never Foundation.Process; tests may substitute a fake.
public protocol CommandRunner: Sendable {
    /// Runs `executable` (an absolute path) with `arguments` (argv[1...]) and exactly
    /// `environment`, waits for it to exit and returns its status and output.
    func run(executable: String, arguments: [String], environment: [String: String]) async throws -> CommandOutput
    /// The same, with `inherited` open in the child: child fd (key) = our fd (value).
    func run(executable: String, arguments: [String], environment: [String: String],
             inherited: [Int32: Int32]) async throws -> CommandOutput
}

extension CommandRunner {
    /// Fakes that pass no fds need not care.
    public func run(executable: String, arguments: [String], environment: [String: String],
                    inherited: [Int32: Int32]) async throws -> CommandOutput {
        try await run(executable: executable, arguments: arguments, environment: environment)
    }
}
