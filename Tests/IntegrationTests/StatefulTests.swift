import Foundation
import Testing

/// CRIU checkpoint and restore on this host through the API: `stop --stateful`, then `start`.
@Suite(.serialized, .enabled(if: Prerequisites.criuAvailable,
                             "needs root, busybox, the built binaries and CRIU (scripts/install-criu)"))
final class StatefulTests {
    let agent: TestAgent

    init() throws {
        agent = try TestAgent(name: "criu")
        try agent.importBusybox(alias: "counter", initKind: "counter")
    }

    deinit { agent.destroy() }

    func counter(_ name: String) throws -> Int {
        Int(try agent.ok(["exec", name, "--", "cat", "/run/counter"]).trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
    }

    @Test func counterContinuesAfterRestore() throws {
        try agent.ok(["launch", "counter", "ck1"])
        // A process outside init whose pid must survive the restore.
        try agent.ok(["exec", "ck1", "--", "sh", "-c", "sleep 3600 >/dev/null 2>&1 </dev/null &"])
        usleep(1_500_000)
        let sleeperBefore = try agent.ok(["exec", "ck1", "--", "pidof", "sleep"]).split(separator: " ").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        let before = try counter("ck1")
        #expect(before >= 5, "counter should have ticked: \(before)")

        try agent.ok(["stop", "ck1", "--stateful"])
        #expect(try agent.ok(["list", "--format", "csv"]).contains("ck1,STOPPED"))
        usleep(500_000)
        try agent.ok(["start", "ck1"])
        #expect(try agent.ok(["list", "--format", "csv"]).contains("ck1,RUNNING"))
        let after = try counter("ck1")
        // A fresh boot would count from 0 again; a restore continues from the dumped value.
        #expect(after >= before, "counter continues: \(before) -> \(after)")
        let sleeperAfter = try agent.ok(["exec", "ck1", "--", "pidof", "sleep"]).split(separator: " ").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        #expect(Set(sleeperBefore).isSubset(of: Set(sleeperAfter)) && !sleeperBefore.isEmpty, "pids inside unchanged: \(sleeperBefore) -> \(sleeperAfter)")
        let uidMap = try agent.ok(["exec", "ck1", "--", "cat", "/proc/self/uid_map"]).split(whereSeparator: \.isWhitespace)
        #expect(uidMap.count == 3 && uidMap[1] != "0", "still unprivileged after restore: \(uidMap)")
        // The restored container is managed like any other.
        try agent.ok(["stop", "ck1", "--force"])
        try agent.ok(["delete", "ck1"])
    }
}
