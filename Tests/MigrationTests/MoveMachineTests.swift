import Migration
import Testing

/// Every edge of the move state machine, with the directives it must give.
@Suite struct MoveMachineTests {
    typealias E = MoveMachine.Event
    typealias D = MoveMachine.Directive

    /// Feeds events in order; returns every directive given, in order.
    static func drive(_ m: inout MoveMachine, _ events: [E]) -> [D] {
        events.flatMap { m.handle($0) }
    }

    static let small: Int64 = 4096
    static let big: Int64 = 50 << 20

    @Test func liveHappyPathWithOneRound() {
        var m = MoveMachine(method: .live)
        let d = Self.drive(&m, [.started, .claimed, .prepared, .roundSynced(bytes: Self.small), .sourceFrozen, .finalSent, .handedOver, .finished])
        #expect(d == [.claim, .prepareTarget, .syncRound(1), .freezeSource, .sendFinal(images: true), .handOver, .finishSource, .report(.moved)])
        #expect(m.isDone)
        #expect(m.rounds == [Self.small])
    }

    @Test func statelessStopsThenSendsWithoutImages() {
        var m = MoveMachine(method: .stateless)
        let d = Self.drive(&m, [.started, .claimed, .prepared, .roundSynced(bytes: Self.small), .sourceStopped, .finalSent, .handedOver, .finished])
        #expect(d == [.claim, .prepareTarget, .syncRound(1), .stopSource, .sendFinal(images: false), .handOver, .finishSource, .report(.moved)])
    }

    @Test func coldHandsOverAfterOneRoundWhateverItsSize() {
        var m = MoveMachine(method: .cold)
        let d = Self.drive(&m, [.started, .claimed, .prepared, .roundSynced(bytes: Self.big), .handedOver, .finished])
        #expect(d == [.claim, .prepareTarget, .syncRound(1), .handOver, .finishSource, .report(.moved)])
    }

    @Test func roundsRepeatWhileTheDeltaShrinksAndIsLarge() {
        var m = MoveMachine(method: .live)
        var d = Self.drive(&m, [.started, .claimed, .prepared, .roundSynced(bytes: Self.big)])
        #expect(d.last == .syncRound(2))
        d = m.handle(.roundSynced(bytes: Self.big / 2))
        #expect(d == [.syncRound(3)])
        // Grew: stop copying while running.
        d = m.handle(.roundSynced(bytes: Self.big))
        #expect(d == [.freezeSource])
    }

    @Test func roundRule() {
        #expect(!MoveMachine.anotherRound(after: []))
        #expect(!MoveMachine.anotherRound(after: [MoveMachine.RoundRule.smallEnough]), "small enough ends the rounds")
        #expect(MoveMachine.anotherRound(after: [MoveMachine.RoundRule.smallEnough + 1]))
        #expect(MoveMachine.anotherRound(after: [Self.big, Self.big - 1]), "shrinking and large")
        #expect(!MoveMachine.anotherRound(after: [Self.big, Self.big]), "not shrinking")
        let many = Array(repeating: Self.big, count: MoveMachine.RoundRule.maxRounds).enumerated().map { Self.big - Int64($0.offset) }
        #expect(!MoveMachine.anotherRound(after: many), "at most maxRounds")
    }

    @Test func claimRefusedEndsWithNothingToUndo() {
        var m = MoveMachine(method: .live)
        let d = Self.drive(&m, [.started, .failed("taken")])
        #expect(d == [.claim, .report(.calledOff("taken"))])
    }

    @Test(arguments: [1, 2, 3])
    func failureBeforeFreezeAbortsAndDiscardsWithoutResume(after steps: Int) {
        var m = MoveMachine(method: .live)
        let prefix: [E] = [.started, .claimed, .prepared, .roundSynced(bytes: Self.big)]
        _ = Self.drive(&m, Array(prefix.prefix(steps + 1)))
        #expect(m.handle(.failed("boom")) == [.abortInDatabase])
        #expect(m.handle(.aborted) == [.discardTarget, .report(.calledOff("boom"))])
    }

    @Test func failedFreezeResumesTheSourceAnyway() {
        var m = MoveMachine(method: .live)
        _ = Self.drive(&m, [.started, .claimed, .prepared, .roundSynced(bytes: Self.small)])
        #expect(m.state == .freezingSource)
        #expect(m.handle(.failed("criu")) == [.abortInDatabase])
        #expect(m.handle(.aborted) == [.discardTarget, .resumeSource(continueFrozen: true, startAgain: false)])
        #expect(m.handle(.resumed) == [.report(.calledOff("criu"))])
    }

    @Test func failedFinalSendResumesTheFrozenSource() {
        var m = MoveMachine(method: .live)
        _ = Self.drive(&m, [.started, .claimed, .prepared, .roundSynced(bytes: Self.small), .sourceFrozen])
        #expect(m.handle(.failed("link")) == [.abortInDatabase])
        #expect(m.handle(.aborted) == [.discardTarget, .resumeSource(continueFrozen: true, startAgain: false)])
    }

    @Test func statelessCallOffStartsTheSourceAgain() {
        var m = MoveMachine(method: .stateless)
        _ = Self.drive(&m, [.started, .claimed, .prepared, .roundSynced(bytes: Self.small), .sourceStopped, .finalSent])
        #expect(m.handle(.handOverRefused("disk full")) == [.abortInDatabase])
        #expect(m.handle(.aborted) == [.discardTarget, .resumeSource(continueFrozen: false, startAgain: true)])
        #expect(m.handle(.resumed) == [.report(.calledOff("disk full"))])
    }

    @Test func coldCallOffHasNothingToResume() {
        var m = MoveMachine(method: .cold)
        _ = Self.drive(&m, [.started, .claimed, .prepared, .roundSynced(bytes: Self.small)])
        #expect(m.handle(.handOverRefused("no")) == [.abortInDatabase])
        #expect(m.handle(.aborted) == [.discardTarget, .report(.calledOff("no"))])
    }

    @Test func unknownHandOverThatCommittedFinishesTheSource() {
        var m = MoveMachine(method: .live)
        _ = Self.drive(&m, [.started, .claimed, .prepared, .roundSynced(bytes: Self.small), .sourceFrozen, .finalSent])
        #expect(m.handle(.handOverUnknown("timeout")) == [.abortInDatabase])
        #expect(m.handle(.alreadyCommitted) == [.finishSource])
        #expect(m.handle(.finished) == [.report(.moved)])
    }

    @Test func unknownHandOverAbortedResumes() {
        var m = MoveMachine(method: .live)
        _ = Self.drive(&m, [.started, .claimed, .prepared, .roundSynced(bytes: Self.small), .sourceFrozen, .finalSent, .handOverUnknown("reset")])
        #expect(m.handle(.aborted) == [.discardTarget, .resumeSource(continueFrozen: true, startAgain: false)])
        #expect(m.handle(.resumeFailed("gone")) == [.report(.resumeFailed(reason: "reset", resumeError: "gone"))])
    }

    @Test func abortRetriesWhileTheDatabaseIsAwayThenEndsUndecided() {
        var m = MoveMachine(method: .live)
        _ = Self.drive(&m, [.started, .claimed, .prepared, .roundSynced(bytes: Self.small), .sourceFrozen, .finalSent, .handOverUnknown("x")])
        for _ in 1..<MoveMachine.maxAbortAttempts {
            #expect(m.handle(.abortUnavailable("no quorum")) == [.abortInDatabase])
        }
        let last = m.handle(.abortUnavailable("no quorum"))
        guard case .report(.undecided(let why))? = last.last else {
            Issue.record("expected an undecided report, got \(last)")
            return
        }
        #expect(why.contains("no quorum"))
        #expect(m.isDone)
    }

    @Test func leftoversAfterCommitStillCountAsMoved() {
        var m = MoveMachine(method: .cold)
        _ = Self.drive(&m, [.started, .claimed, .prepared, .roundSynced(bytes: 1), .handedOver])
        #expect(m.handle(.finishFailed("EBUSY")) == [.report(.movedWithLeftovers("EBUSY"))])
    }

    @Test func unexpectedEventsChangeNothing() {
        var m = MoveMachine(method: .live)
        #expect(m.handle(.handedOver).isEmpty)
        #expect(m.state == .idle)
        _ = Self.drive(&m, [.started, .claimed])
        let before = m
        for e: E in [.handedOver, .aborted, .alreadyCommitted, .finished, .sourceFrozen, .resumed, .started] {
            #expect(m.handle(e).isEmpty, "\(e) in preparing")
        }
        #expect(m == before)
        // Once done, nothing moves it.
        _ = Self.drive(&m, [.failed("x"), .aborted])
        #expect(m.isDone)
        #expect(m.handle(.started).isEmpty && m.handle(.failed("y")).isEmpty)
    }
}
