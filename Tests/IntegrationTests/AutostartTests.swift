import Foundation
import Testing

/// A host reboot, simulated: the agent dies, then every container dies with it; the next agent
/// start brings back what should run (LXD's rules: boot.autostart, else the last state).
@Suite(.serialized, .enabled(if: Prerequisites.available, "needs root, busybox and the built binaries"))
final class AutostartTests {
    let agent: TestAgent

    init() throws {
        agent = try TestAgent(name: "boot")
        try agent.importBusybox()
    }

    deinit { agent.destroy() }

    func pid(_ name: String) throws -> Int32? {
        let line = try agent.ok(["list", "--format", "csv"]).split(separator: "\n").first { $0.hasPrefix("\(name),") }
        return line.flatMap { Int32($0.split(separator: ",", omittingEmptySubsequences: false)[2]) }
    }

    @Test func instancesComeBackAfterAHostRebootAsConfigured() throws {
        try agent.ok(["launch", "busybox", "was-running"])
        try agent.ok(["launch", "busybox", "pinned-off", "-c", "boot.autostart=false"])
        try agent.ok(["init", "busybox", "never-started"])
        let pids = [try #require(try pid("was-running")), try #require(try pid("pinned-off"))]

        agent.kill9()
        for p in pids { kill(p, SIGKILL) }
        // The reboot took the containers down; wait until they are really gone.
        for p in pids {
            let deadline = Date().addingTimeInterval(10)
            while kill(p, 0) == 0, Date() < deadline { usleep(20_000) }
        }
        try agent.start()

        // Autostart runs right after the API comes up; give it a moment.
        let deadline = Date().addingTimeInterval(15)
        var csv = ""
        repeat {
            csv = try agent.ok(["list", "--format", "csv"])
            if csv.contains("was-running,RUNNING") { break }
            usleep(100_000)
        } while Date() < deadline
        #expect(csv.contains("was-running,RUNNING"), "last state running, no key: started again\n\(csv)")
        #expect(csv.contains("pinned-off,STOPPED"), "boot.autostart=false: stays off\n\(csv)")
        #expect(csv.contains("never-started,STOPPED"), "never started: stays off\n\(csv)")
        #expect(try agent.ok(["exec", "was-running", "--", "hostname"]) == "was-running\n")
    }
}
