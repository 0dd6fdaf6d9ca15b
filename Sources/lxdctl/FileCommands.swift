import ArgumentParser
#if canImport(FoundationEssentials)
import FoundationEssentials  // not Foundation: it adds ~10 ms of ICU loading to every lxdctl run
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import LXDClient

struct FileCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "file", abstract: "Copy files into and out of instances.",
        subcommands: [Push.self, Pull.self]
    )

    struct Push: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Copy a local file to INSTANCE/PATH.")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Local file.") var source: String
        @Argument(help: "INSTANCE/PATH.") var target: String
        @Option(help: "Octal mode (default: the local file's).") var mode: String?
        @Option(help: "Owner uid inside the instance.") var uid: Int64 = 0
        @Option(help: "Owner gid inside the instance.") var gid: Int64 = 0

        func run() async throws {
            let (instance, path) = try ArgumentSyntax.instancePath(target)
            guard let data = FileManager.default.contents(atPath: source) else {
                throw CLIError("cannot read local file '\(source)'")
            }
            let fileMode: UInt32
            if let mode {
                guard let parsed = FileMode.parse(mode) else { throw CLIError("--mode '\(mode)' is not an octal mode like 0644") }
                fileMode = parsed
            } else {
                var st = stat()
                fileMode = stat(source, &st) == 0 ? UInt32(st.st_mode) & 0o7777 : 0o644
            }
            try await connection.client.pushFile(instance, path: path, content: Array(data), uid: uid, gid: gid, mode: fileMode)
        }
    }

    struct Pull: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Copy INSTANCE/PATH to a local file ('-' for stdout).")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "INSTANCE/PATH.") var source: String
        @Argument(help: "Local file or directory, or '-' for stdout.") var target: String

        func run() async throws {
            let (instance, path) = try ArgumentSyntax.instancePath(source)
            let file = try await connection.client.pullFile(instance, path: path)
            guard file.type == "file" else {
                throw CLIError("'\(path)' in \(instance) is a \(file.type), not a regular file")
            }
            if target == "-" {
                Output.write(1, file.content)
                return
            }
            var destination = target
            var st = stat()
            if stat(target, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR {
                destination = (target.hasSuffix("/") ? target : target + "/") + baseName(path)
            }
            guard FileManager.default.createFile(atPath: destination, contents: Data(file.content),
                                                 attributes: file.mode.map { [.posixPermissions: Int($0)] }) else {
                throw CLIError("cannot write '\(destination)'")
            }
        }
    }
}
