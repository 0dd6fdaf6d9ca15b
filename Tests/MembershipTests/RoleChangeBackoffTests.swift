import Testing
@testable import Membership

@Suite struct RoleChangeBackoffTests {
    let demote = RoleChange(id: 2, from: .voter, to: .standby)
    let promote = RoleChange(id: 4, from: .spare, to: .standby)

    @Test func aChangeNeverRefusedMayAlwaysBeTried() {
        let b = RoleChangeBackoff()
        #expect(b.retryAt(demote, now: .zero) == nil)
    }

    @Test func eachRefusalDoublesTheWaitUpToTheCap() {
        var b = RoleChangeBackoff(firstDelay: .seconds(2), maxDelay: .seconds(20))
        var now = Duration.zero
        var waits: [Duration] = []
        for _ in 0..<6 {
            let wait = b.refused(demote, now: now)
            waits.append(wait)
            // Not before the wait is over (a heartbeat round comes every 1.25 s).
            #expect(b.retryAt(demote, now: now + .milliseconds(1250)) == now + wait)
            now += wait
            #expect(b.retryAt(demote, now: now) == nil)
        }
        #expect(waits == [.seconds(2), .seconds(4), .seconds(8), .seconds(16), .seconds(20), .seconds(20)])
    }

    @Test func otherChangesAreNotHeldBack() {
        var b = RoleChangeBackoff()
        b.refused(demote, now: .zero)
        #expect(b.retryAt(promote, now: .zero) == nil)
        #expect(b.retryAt(RoleChange(id: 2, from: .voter, to: .spare), now: .zero) == nil)
    }

    @Test func successAndReplanningForgetRefusals() {
        var b = RoleChangeBackoff()
        b.refused(demote, now: .zero)
        b.refused(demote, now: .seconds(2))
        b.succeeded(demote)
        #expect(b.retryAt(demote, now: .zero) == nil)
        // Refused again later: starts from the first delay, not where it left off.
        #expect(b.refused(demote, now: .seconds(10)) == .seconds(2))

        b.refused(promote, now: .seconds(10))
        b.keepOnly([promote])
        #expect(b.retryAt(demote, now: .seconds(10)) == nil)
        #expect(b.retryAt(promote, now: .seconds(10)) != nil)
    }
}
