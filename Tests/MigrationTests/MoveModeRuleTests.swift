import Foundation
import Testing
@testable import Migration

/// `MigrationCapabilities` and `MoveModeRule`: which mode a move uses, or why it is refused,
/// from the method, the mode asked for and both members' published probes.
@Suite struct MoveModeRuleTests {
    /// This machine's probe (NOTES-criu.md): criu 4.2.1 passes its check, no soft-dirty,
    /// userfaultfd present, 1 MiB pipes.
    static let here = CRIUFeatures(version: CRIUVersion(4, 2, 1), checkPassed: true, memDirtyTrack: false, userfaultfd: true,
                                   pipeMaxSize: 1 << 20)
    static let everything = CRIUFeatures(version: CRIUVersion(4, 2, 1), checkPassed: true, memDirtyTrack: true, userfaultfd: true,
                                         pipeMaxSize: CRIUFeatures.lazyPagesPipeSize)

    func decide(_ method: MoveMachine.Method = .live, _ requested: MigrationMode? = nil,
                source: MigrationCapabilities = .probed(here), target: MigrationCapabilities? = .probed(here)) -> MoveModeRule.Decision {
        MoveModeRule.decide(method: method, requested: requested, source: source, target: target, sourceName: "m1", targetName: "m2")
    }

    func refusal(_ d: MoveModeRule.Decision) -> String? {
        if case .refuse(let why) = d { return why }
        return nil
    }

    @Test func liveWithoutAModeIsStopAndCopyHere() {
        #expect(decide() == .use(.stopAndCopy))
        #expect(decide(.live, .stopAndCopy) == .use(.stopAndCopy))
    }

    @Test func stopAndCopyStaysTheImplicitChoiceWherePreCopyIsPossibleButNotBuilt() {
        #expect(decide(source: .probed(Self.everything), target: .probed(Self.everything)) == .use(.stopAndCopy))
    }

    @Test func preCopyIsRefusedWithTheSoftDirtyReason() {
        let why = refusal(decide(.live, .preCopy))
        #expect(why == "pre-copy impossible on the source: the kernel has no soft-dirty memory tracking (mem_dirty_track) (source m1, target m2)")
        // The target's lack is named as the target's.
        let target = refusal(decide(.live, .preCopy, source: .probed(Self.everything)))
        #expect(target?.hasPrefix("pre-copy impossible on the target: the kernel has no soft-dirty") == true)
    }

    @Test func preCopyProbedPossibleIsRefusedAsNotImplemented() {
        let why = refusal(decide(.live, .preCopy, source: .probed(Self.everything), target: .probed(Self.everything)))
        #expect(why?.hasPrefix("pre-copy is not implemented") == true)
    }

    @Test func postCopyIsRefusedWithTheProbesReasonFirst() {
        let why = refusal(decide(.live, .postCopy))
        #expect(why?.hasPrefix("post-copy impossible on the source: fs.pipe-max-size is 1048576") == true)
    }

    @Test func postCopyProbedPossibleIsGatedByThisBuildOnly() {
        let d = decide(.live, .postCopy, source: .probed(Self.everything), target: .probed(Self.everything))
        if let gate = MoveModeRule.notInThisBuild[.postCopy] {
            #expect(refusal(d)?.hasPrefix(gate) == true)
            #expect(gate == "post-copy moves are not available in this build yet")
        } else {
            #expect(d == .use(.postCopy))
        }
    }

    @Test(arguments: [MoveMachine.Method.stateless, .cold])
    func aModeForAMoveWithoutMemoryIsRefused(method: MoveMachine.Method) {
        #expect(decide(method) == .noMemory)
        for mode in MigrationMode.allCases {
            let why = refusal(decide(method, mode))
            #expect(why?.contains("applies to a live move only") == true)
        }
        // No CRIU anywhere changes nothing for them.
        #expect(decide(method, source: .withoutCRIU("not found"), target: .withoutCRIU("not found")) == .noMemory)
    }

    @Test func liveNeedsCRIUOnTheSourceAndOnAPublishedTarget() {
        let source = refusal(decide(source: .withoutCRIU("criu not found in /usr/local/sbin/criu")))
        #expect(source?.contains("on member m1, which has none usable (criu not found in /usr/local/sbin/criu)") == true)
        #expect(source?.contains("--stateless") == true)
        let target = refusal(decide(target: .withoutCRIU("criu not found")))
        #expect(target == "member m2 has no usable CRIU (criu not found): run scripts/install-criu there, or move with --stateless")
    }

    @Test func anUnpublishedTargetIsTakenAsBeforeForStopAndCopyOnly() {
        #expect(decide(target: nil) == .use(.stopAndCopy))
        #expect(decide(.live, .stopAndCopy, target: nil) == .use(.stopAndCopy))
        for mode in [MigrationMode.postCopy, .preCopy] {
            #expect(refusal(decide(.live, mode, target: nil))?.contains("has not published its migration capabilities") == true)
        }
    }

    @Test func differentCRIUReleasesAreRefusedWhateverTheMode() {
        var older = Self.here
        older.version = CRIUVersion(4, 2, 0)
        for mode in [nil, MigrationMode.stopAndCopy] {
            let why = refusal(decide(.live, mode, target: .probed(older)))
            #expect(why?.hasPrefix("criu versions differ: source 4.2.1, target 4.2.0") == true)
        }
    }

    @Test func eachModesUnavailabilityOnOneMember() {
        let here = MigrationCapabilities.probed(Self.here)
        #expect(MoveModeRule.unavailability(of: .stopAndCopy, on: here) == nil)
        #expect(MoveModeRule.unavailability(of: .preCopy, on: here) == "the kernel has no soft-dirty memory tracking (mem_dirty_track)")
        #expect(MoveModeRule.unavailability(of: .postCopy, on: here)?.hasPrefix("fs.pipe-max-size is 1048576") == true)
        let all = MigrationCapabilities.probed(Self.everything)
        #expect(MoveModeRule.unavailability(of: .preCopy, on: all) == "pre-copy is not implemented")
        #expect(MoveModeRule.unavailability(of: .postCopy, on: all) == MoveModeRule.notInThisBuild[.postCopy])
        let none = MigrationCapabilities.withoutCRIU("criu not found")
        for mode in MigrationMode.allCases {
            #expect(MoveModeRule.unavailability(of: mode, on: none) == "no usable CRIU (criu not found): run scripts/install-criu")
        }
        #expect(MoveModeRule.unavailability(of: .stopAndCopy, on: nil)?.contains("has not published") == true)
        var failing = Self.here
        failing.checkPassed = false
        #expect(MoveModeRule.unavailability(of: .stopAndCopy, on: .probed(failing))?.hasPrefix("criu check fails") == true)
        var old = Self.here
        old.version = CRIUVersion(4, 1, 1)
        #expect(MoveModeRule.unavailability(of: .stopAndCopy, on: .probed(old)) == "criu 4.1.1 is older than 4.2.0: run scripts/install-criu")
    }

    @Test func capabilitiesRoundTripThroughJSON() throws {
        for c in [MigrationCapabilities.probed(Self.here), .withoutCRIU("criu not found")] {
            let data = try JSONEncoder().encode(c)
            #expect(try JSONDecoder().decode(MigrationCapabilities.self, from: data) == c)
        }
        let text = String(decoding: try JSONEncoder().encode(MigrationCapabilities.withoutCRIU("x")), as: UTF8.self)
        #expect(text.contains("\"criu_unavailable\":\"x\""))
    }
}
