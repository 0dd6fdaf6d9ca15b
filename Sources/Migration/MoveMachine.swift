/// One move of one instance between members, as its source drives it: states, events in,
/// directives out. Pure (no I/O, no clock); the shell (Instances' `InstanceMove`) performs the
/// directives and reports their results as events.
///
/// The rules:
/// - The move is claimed in the database first (a token naming the target); nothing else
///   happens unless that write succeeds.
/// - The root filesystem is copied in rounds while the instance runs (live and stateless
///   moves): round 1 copies everything, each next round what changed since. Rounds repeat while
///   the last one sent more than `RoundRule.smallEnough` bytes, sent less than the round before
///   (the delta shrinks), and fewer than `RoundRule.maxRounds` ran. A cold move (the instance is
///   stopped) needs one round.
/// - Then the source is frozen (live: checkpointed, its tasks left stopped) or stopped
///   (stateless), and the final delta (with the checkpoint images, live) goes to the target.
/// - The hand-over: the target restores (live) or not, and commits the move in the database in
///   one transaction that requires the token. That commit is the point of no return.
/// - Any failure before the hand-over answered, and a hand-over whose outcome is unknown, lead
///   to an abort in the database that requires the same token: whichever of commit and abort
///   came first wins. Abort won: the source resumes (SIGCONT, or a start again, stateless) and
///   the target is told to discard its copy. Commit won: the source removes its copy.
/// - An abort that cannot reach the database is retried up to `maxAbortAttempts` times; after
///   that the instance stays frozen or stopped on the source and the move ends `undecided`
///   (the agents' startup reconciliation settles it once the database answers).
public struct MoveMachine: Sendable, Equatable {
    public enum Method: String, Sendable, Hashable, Codable {
        /// Running, kept running: checkpoint, copy, restore.
        case live
        /// Running, stopped on the source and started on the target.
        case stateless
        /// Stopped: its files are copied.
        case cold
    }

    public enum RoundRule {
        /// A round that sent at most this much ends the copying while running.
        public static let smallEnough: Int64 = 1 << 20
        public static let maxRounds = 4
    }

    public static let maxAbortAttempts = 30

    public enum State: Sendable, Equatable {
        case idle
        case claiming
        case preparing
        case syncing(round: Int)
        case stoppingSource
        case freezingSource
        case sendingFinal
        case handingOver
        case aborting(reason: String, attempt: Int)
        case resuming(reason: String)
        case finishing
        case done(Outcome)
    }

    public enum Outcome: Sendable, Equatable {
        /// The target owns and runs (or holds, cold) the instance.
        case moved
        /// The target owns it, but the source's copy could not be removed (named in the reason).
        case movedWithLeftovers(String)
        /// Called off: the instance is on the source as it was.
        case calledOff(String)
        /// Called off, but the source could not be resumed: the instance is on the source,
        /// stopped or frozen.
        case resumeFailed(reason: String, resumeError: String)
        /// Neither commit nor abort could be confirmed (the database did not answer).
        case undecided(String)
    }

    public enum Event: Sendable, Equatable {
        case started
        case claimed
        /// A step before the hand-over failed (definitely; the target did not commit).
        case failed(String)
        case prepared
        case roundSynced(bytes: Int64)
        case sourceStopped
        case sourceFrozen
        case finalSent
        /// The target answered that it committed.
        case handedOver
        /// The target answered that it did not commit (and dropped what it had).
        case handOverRefused(String)
        /// No answer (timeout, connection lost): the target may or may not have committed.
        case handOverUnknown(String)
        case aborted
        /// The abort found the move committed: the target owns the instance.
        case alreadyCommitted
        case abortUnavailable(String)
        case resumed
        case resumeFailed(String)
        case finished
        case finishFailed(String)
    }

    public enum Directive: Sendable, Equatable {
        case claim
        case prepareTarget
        case syncRound(Int)
        case stopSource
        case freezeSource
        /// The last delta of the root filesystem, and the checkpoint images when `images`.
        case sendFinal(images: Bool)
        case handOver
        case abortInDatabase
        /// Continue the frozen tree (`continueFrozen`) or start the stopped instance again
        /// (`startAgain`); neither for a cold move.
        case resumeSource(continueFrozen: Bool, startAgain: Bool)
        /// Best effort: the target drops its copy (it also does so by itself when its copy is
        /// not committed).
        case discardTarget
        /// Kill the frozen tree (live) and remove the source's copy.
        case finishSource
        case report(Outcome)
    }

    public let method: Method
    public private(set) var state: State = .idle
    /// Bytes each sync round sent, in order.
    public private(set) var rounds: [Int64] = []
    private var sourceFrozen = false
    private var sourceStopped = false

    public init(method: Method) { self.method = method }

    /// Applies `event`; returns what to do next. An event the state does not expect changes
    /// nothing and returns no directive (the shell's bug, not a reason to lose an instance).
    public mutating func handle(_ event: Event) -> [Directive] {
        switch (state, event) {
        case (.idle, .started):
            state = .claiming
            return [.claim]
        case (.claiming, .claimed):
            state = .preparing
            return [.prepareTarget]
        case (.claiming, .failed(let why)):
            // Nothing was written: nothing to undo.
            return finish(.calledOff(why))

        case (.preparing, .prepared):
            state = .syncing(round: 1)
            return [.syncRound(1)]

        case (.syncing(let round), .roundSynced(let bytes)):
            rounds.append(bytes)
            if method == .cold {
                state = .handingOver
                return [.handOver]
            }
            if Self.anotherRound(after: rounds) {
                state = .syncing(round: round + 1)
                return [.syncRound(round + 1)]
            }
            // From here a call-off resumes the source, also when freezing or stopping failed
            // halfway (a SIGCONT to running tasks and a start of a running instance change nothing).
            if method == .live {
                sourceFrozen = true
                state = .freezingSource
                return [.freezeSource]
            }
            sourceStopped = true
            state = .stoppingSource
            return [.stopSource]

        case (.stoppingSource, .sourceStopped):
            state = .sendingFinal
            return [.sendFinal(images: false)]
        case (.freezingSource, .sourceFrozen):
            state = .sendingFinal
            return [.sendFinal(images: true)]
        case (.sendingFinal, .finalSent):
            state = .handingOver
            return [.handOver]

        case (.handingOver, .handedOver):
            state = .finishing
            return [.finishSource]
        case (.handingOver, .handOverRefused(let why)), (.handingOver, .handOverUnknown(let why)):
            return abort(why)
        case (.preparing, .failed(let why)), (.syncing, .failed(let why)), (.stoppingSource, .failed(let why)),
             (.freezingSource, .failed(let why)), (.sendingFinal, .failed(let why)), (.handingOver, .failed(let why)):
            return abort(why)

        case (.aborting(let why, _), .aborted):
            state = .resuming(reason: why)
            if !sourceFrozen && !sourceStopped { return finish(.calledOff(why), before: [.discardTarget]) }
            return [.discardTarget, .resumeSource(continueFrozen: sourceFrozen, startAgain: sourceStopped)]
        case (.aborting, .alreadyCommitted):
            state = .finishing
            return [.finishSource]
        case (.aborting(let why, let attempt), .abortUnavailable(let dbError)):
            guard attempt < Self.maxAbortAttempts else {
                return finish(.undecided("\(why); then the database did not answer the abort \(attempt) times (\(dbError))"))
            }
            state = .aborting(reason: why, attempt: attempt + 1)
            return [.abortInDatabase]

        case (.resuming(let why), .resumed):
            return finish(.calledOff(why))
        case (.resuming(let why), .resumeFailed(let error)):
            return finish(.resumeFailed(reason: why, resumeError: error))

        case (.finishing, .finished):
            return finish(.moved)
        case (.finishing, .finishFailed(let why)):
            return finish(.movedWithLeftovers(why))

        default:
            return []
        }
    }

    /// Whether the rounds so far call for another one while the instance runs.
    public static func anotherRound(after rounds: [Int64]) -> Bool {
        guard let last = rounds.last, rounds.count < RoundRule.maxRounds, last > RoundRule.smallEnough else { return false }
        if rounds.count >= 2 { return last < rounds[rounds.count - 2] }
        return true
    }

    /// Whether the instance is out of the source's hands: the move is decided either way.
    public var isDone: Bool {
        if case .done = state { return true }
        return false
    }

    private mutating func abort(_ why: String) -> [Directive] {
        state = .aborting(reason: why, attempt: 1)
        return [.abortInDatabase]
    }

    private mutating func finish(_ outcome: Outcome, before: [Directive] = []) -> [Directive] {
        state = .done(outcome)
        return before + [.report(outcome)]
    }
}
