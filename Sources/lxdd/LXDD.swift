import Agent
import ArgumentParser
import Foundation
import Logging

@main
struct LXDD: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lxdd", abstract: "The lxd-swift agent: one per host.")

    @Option(name: .long, help: "Data directory (default: $LXD_DIR or /var/lib/lxd-swift).")
    var dataDir: String?

    @Option(name: .long, help: "This member's name (default: the host name). Used on first start only.")
    var name: String?

    @Option(name: .long, help: "This member's cluster address host:port (default: the HTTPS address, else 127.0.0.1:8443). Used on first start only.")
    var address: String?

    @Option(name: .long, help: "Serve the API over HTTPS with mutual TLS on host:port (e.g. 127.0.0.2:8443).")
    var httpsAddress: String?

    @Flag(name: .long, help: "Verbose logs.")
    var debug = false

    func run() async throws {
        let level: Logger.Level = debug ? .debug : .info
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
        let dir = dataDir ?? ProcessInfo.processInfo.environment["LXD_DIR"] ?? "/var/lib/lxd-swift"
        // lxd-start is installed next to lxdd.
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let helper = URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("lxd-start").path
        try await Agent.run(
            AgentConfiguration(dataDir: dir, memberName: name, address: address ?? httpsAddress ?? "127.0.0.1:8443", helperPath: helper, httpsAddress: httpsAddress),
            logger: Logger(label: "lxdd"))
    }
}
