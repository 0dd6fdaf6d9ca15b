import Foundation
import Testing

/// The test image's init (scripts/make-busybox-image) is PID 1 of its container: it inherits
/// every orphan, and must reap it, or the zombies count against limits.processes until the
/// container cannot fork any more.
@Suite(.serialized, .enabled(if: Prerequisites.available, "needs root, busybox and the built binaries"))
final class InitReapingTests {
    let agent: TestAgent

    init() throws {
        agent = try TestAgent(name: "zr")
    }

    deinit { agent.destroy() }

    /// The container's zombies: every /proc/N/stat inside it whose state field is Z.
    func zombies(in name: String) throws -> [String] {
        let out = try agent.ok(["exec", name, "--", "sh", "-c",
                                "for s in /proc/[0-9]*/stat; do read -r l < $s 2>/dev/null && case \"${l##*) }\" in Z*) echo \"$l\";; esac; done; true"])
        return out.split(separator: "\n").map(String.init)
    }

    @Test(arguments: ["idle", "counter"])
    func orphansLeftByExecAreReapedUnderAProcessLimit(initKind: String) throws {
        let name = "zr-\(initKind)"
        try agent.importBusybox(alias: "bb-\(initKind)", initKind: initKind == "idle" ? nil : initKind)
        // Room for init, an exec and a few children: 40 leaked zombies would exhaust it.
        try agent.ok(["launch", "bb-\(initKind)", name, "-c", "limits.processes=20"])
        for _ in 0..<40 {
            let r = try agent.ctl(["exec", name, "--", "sh", "-c", "sleep 0.05 &"])
            #expect(r.status == 0, "exec after earlier orphans: \(r.stderr)")
            guard r.status == 0 else { break }
        }
        // The last sleeps end after 50 ms; init reaps on their SIGCHLD (bounded wait: a hang only).
        var left: [String] = []
        for _ in 0..<150 {
            left = try zombies(in: name)
            if left.isEmpty { break }
            usleep(200_000)
        }
        #expect(left.isEmpty, "zombies in \(name) (init \(initKind)): \(left)")
        try agent.ok(["delete", "--force", name])
    }
}
