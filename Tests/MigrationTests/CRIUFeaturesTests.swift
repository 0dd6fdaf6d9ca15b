import Synchronization
import Testing
@testable import Migration

@Suite struct CRIUVersionTests {
    @Test(arguments: [
        ("Version: 4.2.1\n", CRIUVersion(4, 2, 1)),
        ("Version: 3.17.1\nGitID: v3.17.1\n", CRIUVersion(3, 17, 1)),
        ("  Version: 4.2\n", CRIUVersion(4, 2, 0)),
        ("Warn: something\nVersion: 10.0.3-rc1\n", CRIUVersion(10, 0, 3)),
    ])
    func parses(output: String, expected: CRIUVersion) {
        #expect(CRIUVersion.parse(versionOutput: output) == expected)
    }

    @Test(arguments: ["", "criu: command not found", "Version: four", "Version: 4", "Version: 4.2.1.7"])
    func rejects(output: String) {
        #expect(CRIUVersion.parse(versionOutput: output) == nil)
    }

    @Test func ordersNumerically() {
        #expect(CRIUVersion(4, 10) > CRIUVersion(4, 2, 9))
        #expect(CRIUVersion(4, 1, 1) < .minimum)
        #expect(CRIUVersion(4, 2, 0) >= .minimum)
    }
}

@Suite struct CRIULocateTests {
    @Test func explicitOverrideWins() throws {
        let c = try CRIU.locate(environment: ["LXD_CRIU": "/opt/criu/bin/criu"], isExecutable: { _ in true })
        #expect(c.path == "/opt/criu/bin/criu")
        #expect(throws: CRIUError.notFound(searched: ["LXD_CRIU=/nope"])) {
            try CRIU.locate(environment: ["LXD_CRIU": "/nope"], isExecutable: { $0 == CRIU.installedPath })
        }
    }

    @Test func installedWrapperThenPath() throws {
        #expect(try CRIU.locate(environment: ["PATH": "/usr/sbin"], isExecutable: { _ in true }).path == "/usr/local/sbin/criu")
        #expect(try CRIU.locate(environment: ["PATH": "/a:/b"], isExecutable: { $0 == "/b/criu" }).path == "/b/criu")
        #expect(throws: CRIUError.notFound(searched: ["/usr/local/sbin/criu", "/a/criu"])) {
            try CRIU.locate(environment: ["PATH": "/a"], isExecutable: { _ in false })
        }
    }
}

/// Answers criu invocations from a table; records what was run.
final class ScriptedRunner: CommandRunner {
    let answers: [[String]: CommandOutput]
    private let calls = Mutex<[[String]]>([])
    init(_ answers: [[String]: CommandOutput]) { self.answers = answers }
    var invocations: [[String]] { calls.withLock { $0 } }
    func run(executable: String, arguments: [String], environment: [String: String]) async throws -> CommandOutput {
        calls.withLock { $0.append(arguments) }
        return answers[arguments] ?? CommandOutput(exitStatus: 127, output: "unexpected \(arguments)")
    }
}

@Suite struct CRIUProbeTests {
    @Test func probeOfThisKindOfHost() async throws {
        let runner = ScriptedRunner([
            ["--version"]: CommandOutput(exitStatus: 0, output: "Version: 4.2.1\n"),
            ["check"]: CommandOutput(exitStatus: 0, output: "Looks good.\n"),
            ["check", "--feature", "mem_dirty_track"]: CommandOutput(exitStatus: 1, output: "Warn ... Dirty tracking is OFF"),
            ["check", "--feature", "uffd-noncoop"]: CommandOutput(exitStatus: 0, output: "uffd-noncoop is supported"),
        ])
        let f = try await CRIU(path: "/x/criu").probe(runner: runner, pipeMaxSize: { 1_048_576 }, pipeMaxSizeRaisable: { false })
        #expect(f == CRIUFeatures(version: CRIUVersion(4, 2, 1), checkPassed: true, memDirtyTrack: false,
                                  userfaultfd: true, pipeMaxSize: 1_048_576, pipeMaxSizeRaisable: false))
        #expect(!f.supportsPreCopy)
        #expect(!f.supportsPostCopy)
        #expect(f.postCopyBlocker?.contains("fs.pipe-max-size is 1048576") == true)
        var raised = f
        raised.pipeMaxSize = 4 * 1024 * 1024
        #expect(raised.supportsPostCopy)
        // An agent that may write the sysctl raises it when a post-copy move starts.
        var raisable = f
        raisable.pipeMaxSizeRaisable = true
        #expect(raisable.postCopyBlocker == nil)
    }

    @Test func unusableBinaryIsAnError() async {
        let runner = ScriptedRunner([["--version"]: CommandOutput(exitStatus: 1, output: "vdso: Unexpected rt vDSO area bounds")])
        await #expect(throws: CRIUError.self) { try await CRIU(path: "/x/criu").probe(runner: runner, pipeMaxSize: { 0 }) }
    }
}

@Suite struct MigrationModeTests {
    static func host(_ v: CRIUVersion = CRIUVersion(4, 2, 1), check: Bool = true, dirty: Bool = false,
                     uffd: Bool = true, pipe: Int = 1 << 20) -> CRIUFeatures {
        CRIUFeatures(version: v, checkPassed: check, memDirtyTrack: dirty, userfaultfd: uffd, pipeMaxSize: pipe)
    }

    @Test func thisMachineKindGetsStopAndCopy() {
        #expect(MigrationModeChoice.choose(source: Self.host(), target: Self.host()) == .use(.stopAndCopy))
    }

    @Test func preCopyOnlyWithDirtyTrackingOnBoth() {
        #expect(MigrationModeChoice.choose(source: Self.host(dirty: true), target: Self.host(dirty: true)) == .use(.preCopy))
        #expect(MigrationModeChoice.choose(source: Self.host(dirty: true), target: Self.host()) == .use(.stopAndCopy))
        guard case let .refuse(why) = MigrationModeChoice.choose(source: Self.host(dirty: true), target: Self.host(),
                                                                 requested: .preCopy) else {
            Issue.record("pre-copy allowed without soft-dirty on the target"); return
        }
        #expect(why.contains("target"))
    }

    @Test func postCopyOnlyWhenAskedAndPossibleOnBoth() {
        let lazy = Self.host(pipe: 4 << 20)
        #expect(MigrationModeChoice.choose(source: lazy, target: lazy) == .use(.stopAndCopy))
        #expect(MigrationModeChoice.choose(source: lazy, target: lazy, requested: .postCopy) == .use(.postCopy))
        guard case let .refuse(why) = MigrationModeChoice.choose(source: Self.host(), target: lazy, requested: .postCopy) else {
            Issue.record("post-copy allowed with 1 MiB pipes on the source"); return
        }
        #expect(why.contains("source") && why.contains("pipe-max-size"))
        guard case .refuse = MigrationModeChoice.choose(source: lazy, target: Self.host(pipe: 4 << 20).with { $0.userfaultfd = false },
                                                        requested: .postCopy) else {
            Issue.record("post-copy allowed without userfaultfd on the target"); return
        }
    }

    @Test func differentVersionsAreRefused() {
        guard case let .refuse(why) = MigrationModeChoice.choose(source: Self.host(), target: Self.host(CRIUVersion(4, 2, 0))) else {
            Issue.record("mixed criu versions accepted"); return
        }
        #expect(why.contains("4.2.1") && why.contains("4.2.0"))
    }

    @Test func brokenOrOldCRIUIsRefused() {
        if case .use = MigrationModeChoice.choose(source: Self.host(check: false), target: Self.host()) {
            Issue.record("failing criu check accepted")
        }
        let old = Self.host(CRIUVersion(4, 1, 1))
        guard case let .refuse(why) = MigrationModeChoice.choose(source: old, target: old) else {
            Issue.record("criu 4.1.1 accepted"); return
        }
        #expect(why.contains("older than 4.2.0"))
    }

    @Test func stopAndCopyWhenRequestedIsAlwaysPossibleOnSaneHosts() {
        for dirty in [false, true] {
            for pipe in [0, 4 << 20] {
                #expect(MigrationModeChoice.choose(source: Self.host(dirty: dirty, pipe: pipe), target: Self.host(),
                                                   requested: .stopAndCopy) == .use(.stopAndCopy))
            }
        }
    }
}

extension CRIUFeatures {
    func with(_ change: (inout CRIUFeatures) -> Void) -> CRIUFeatures {
        var c = self
        change(&c)
        return c
    }
}
