import Testing
@testable import Membership

private func ms(_ v: Int64) -> Duration { .milliseconds(v) }

/// A leader at time 0 that knows `ids` (all online).
private func leaderDetector(_ ids: [MemberID], recoverAfter: Int = 2) -> OfflineDetector {
    var d = OfflineDetector(configuration: .init(recoverAfterSuccesses: recoverAfter))
    _ = d.handle(.leadershipAcquired(at: .zero))
    for id in ids { _ = d.handle(.memberAdded(id, at: .zero)) }
    return d
}

@Suite struct OfflineDetectorTests {
    @Test func defaultThresholdIsFiveSeconds() {
        #expect(OfflineDetector.Configuration().threshold == .seconds(5))
    }

    @Test func ignoresEverythingUntilLeader() {
        var d = OfflineDetector()
        #expect(d.handle(.memberAdded(1, at: .zero)) == [])
        #expect(d.handle(.heartbeatFailed(1, at: .seconds(60))) == [])
        #expect(d.handle(.tick(at: .seconds(60))) == [])
        #expect(d.members.isEmpty)
        #expect(d.nextDeadline == nil)
    }

    @Test func membershipChangesAskForRebalance() {
        var d = leaderDetector([])
        #expect(d.handle(.memberAdded(1, at: .zero)) == [.rebalanceRoles])
        #expect(d.handle(.memberAdded(1, at: .seconds(1))) == [], "a duplicate add changes nothing")
        #expect(d.handle(.memberRemoved(1)) == [.rebalanceRoles])
        #expect(d.handle(.memberRemoved(1)) == [])
        #expect(d.handle(.heartbeatSucceeded(9, at: .seconds(1))) == [], "unknown members are ignored")
    }

    @Test func thresholdEdgeIsExactlyFiveSeconds() {
        var d = leaderDetector([1])
        #expect(d.handle(.heartbeatSucceeded(1, at: ms(1000))) == [])
        #expect(d.handle(.tick(at: ms(5999))) == [])
        #expect(d.handle(.tick(at: .seconds(6) - .nanoseconds(1))) == [])
        #expect(d.members[1]?.online == true)
        #expect(d.handle(.tick(at: .seconds(6))) == [.markOffline(1), .rebalanceRoles])
        #expect(d.members[1]?.online == false)
        #expect(d.handle(.tick(at: .seconds(7))) == [], "offline is reported once")
    }

    @Test func failedHeartbeatDeclaresOfflineOnlyAfterThreshold() {
        var d = leaderDetector([1, 2])
        for t in stride(from: Int64(1250), through: 4999, by: 1250) {
            #expect(d.handle(.heartbeatSucceeded(1, at: ms(t))) == [])
            #expect(d.handle(.heartbeatFailed(2, at: ms(t))) == [])
        }
        #expect(d.handle(.heartbeatFailed(2, at: ms(5000))) == [.markOffline(2), .rebalanceRoles])
        #expect(d.members[1]?.online == true)
    }

    @Test func newLeaderGivesEveryoneAFullThreshold() {
        var d = leaderDetector([1, 2])
        _ = d.handle(.heartbeatSucceeded(1, at: ms(100)))
        _ = d.handle(.heartbeatSucceeded(2, at: ms(100)))
        // Leadership moves away and back long after the last heartbeat: old silence must not count.
        #expect(d.handle(.leadershipLost) == [])
        #expect(d.handle(.tick(at: .seconds(90))) == [], "not leader: no judgement")
        #expect(d.handle(.leadershipAcquired(at: .seconds(100))) == [])
        #expect(d.nextDeadline == .seconds(105))
        #expect(d.handle(.heartbeatFailed(1, at: .seconds(101))) == [])
        #expect(d.handle(.tick(at: ms(104_999))) == [])
        #expect(d.handle(.heartbeatSucceeded(2, at: .seconds(104))) == [])
        #expect(d.handle(.tick(at: .seconds(105))) == [.markOffline(1), .rebalanceRoles])
        #expect(d.handle(.tick(at: .seconds(109))) == [.markOffline(2), .rebalanceRoles])
    }

    @Test func freshDetectorAfterFailoverWaitsAThreshold() {
        // A member that just won the election seeds members from the database.
        var d = OfflineDetector()
        #expect(d.handle(.leadershipAcquired(at: .zero)) == [])
        _ = d.handle(.memberAdded(1, at: .zero))
        _ = d.handle(.memberAdded(2, at: .zero, online: false))
        for t in 1...4 { #expect(d.handle(.heartbeatFailed(1, at: .seconds(Int64(t)))) == []) }
        #expect(d.handle(.tick(at: .seconds(5))) == [.markOffline(1), .rebalanceRoles])
        #expect(d.members[2]?.online == false, "already offline: no second markOffline")
    }

    @Test func recordedOfflineMemberComesBackAfterTwoSuccesses() {
        var d = OfflineDetector()
        _ = d.handle(.leadershipAcquired(at: .zero))
        _ = d.handle(.memberAdded(3, at: .zero, online: false))
        #expect(d.handle(.heartbeatSucceeded(3, at: ms(1250))) == [])
        #expect(d.handle(.heartbeatSucceeded(3, at: ms(2500))) == [.markOnline(3), .rebalanceRoles])
        #expect(d.handle(.heartbeatSucceeded(3, at: ms(3750))) == [])
    }

    @Test func flappingDoesNotFlipStatusOnEveryLuckyHeartbeat() {
        var d = leaderDetector([1])
        #expect(d.handle(.tick(at: .seconds(5))) == [.markOffline(1), .rebalanceRoles])
        // success, failure, success: streak restarts, stays offline.
        #expect(d.handle(.heartbeatSucceeded(1, at: ms(6000))) == [])
        #expect(d.handle(.heartbeatFailed(1, at: ms(7000))) == [])
        #expect(d.handle(.heartbeatSucceeded(1, at: ms(8000))) == [])
        #expect(d.members[1]?.online == false)
        #expect(d.handle(.heartbeatSucceeded(1, at: ms(9000))) == [.markOnline(1), .rebalanceRoles])
        // Silent again: offline once the threshold passes from the last success, not before.
        #expect(d.handle(.heartbeatFailed(1, at: ms(13_999))) == [])
        #expect(d.handle(.heartbeatFailed(1, at: ms(14_000))) == [.markOffline(1), .rebalanceRoles])
    }

    @Test func singleSuccessRecoveryWhenConfigured() {
        var d = leaderDetector([1], recoverAfter: 1)
        _ = d.handle(.tick(at: .seconds(5)))
        #expect(d.handle(.heartbeatSucceeded(1, at: .seconds(6))) == [.markOnline(1), .rebalanceRoles])
    }

    @Test func outOfOrderResultsNeverMoveTimeBack() {
        var d = leaderDetector([1])
        _ = d.handle(.heartbeatSucceeded(1, at: .seconds(3)))
        _ = d.handle(.heartbeatSucceeded(1, at: .seconds(2)))
        #expect(d.members[1]?.lastHeard == .seconds(3))
        #expect(d.handle(.tick(at: ms(7999))) == [])
        #expect(d.handle(.tick(at: .seconds(8))) == [.markOffline(1), .rebalanceRoles])
    }

    @Test func oneTickReportsSeveralMembersInIDOrderAndRebalancesOnce() {
        var d = leaderDetector([9, 3, 5])
        _ = d.handle(.heartbeatSucceeded(5, at: .seconds(4)))
        #expect(d.handle(.tick(at: .seconds(5))) == [.markOffline(3), .markOffline(9), .rebalanceRoles])
        #expect(d.nextDeadline == .seconds(9))
    }

    /// Random timelines checked against the rules: no member is declared offline before a full
    /// threshold of silence, none stays online past it, and statuses alternate.
    @Test func randomTimelinesRespectTheThreshold() {
        var rng = SeededGenerator(seed: 7)
        let threshold = OfflineDetector.defaultThreshold
        for _ in 0..<200 {
            var d = OfflineDetector()
            var now = Duration.zero
            _ = d.handle(.leadershipAcquired(at: now))
            let ids: [MemberID] = [1, 2, 3, 4]
            for id in ids { _ = d.handle(.memberAdded(id, at: now)) }
            var heard = Dictionary(uniqueKeysWithValues: ids.map { ($0, now) })
            var online = Dictionary(uniqueKeysWithValues: ids.map { ($0, true) })
            // Each member has its own reliability; some are dead for stretches.
            let reliability = ids.map { _ in Double.random(in: 0...1, using: &rng) }
            for _ in 0..<200 {
                now += .milliseconds(Int64.random(in: 1...1500, using: &rng))
                var out: [OfflineDetector.Directive] = []
                for (i, id) in ids.enumerated() {
                    if Double.random(in: 0..<1, using: &rng) < reliability[i] {
                        heard[id] = now
                        out += d.handle(.heartbeatSucceeded(id, at: now))
                    } else {
                        out += d.handle(.heartbeatFailed(id, at: now))
                    }
                }
                out += d.handle(.tick(at: now))
                for directive in out {
                    switch directive {
                    case .markOffline(let id):
                        #expect(online[id] == true, "markOffline twice for \(id)")
                        #expect(now - heard[id]! >= threshold, "offline after only \(now - heard[id]!)")
                        online[id] = false
                    case .markOnline(let id):
                        #expect(online[id] == false, "markOnline twice for \(id)")
                        #expect(heard[id] == now)
                        online[id] = true
                    case .rebalanceRoles:
                        break
                    }
                }
                for id in ids {
                    #expect(d.members[id]?.online == online[id])
                    if online[id]! { #expect(now - heard[id]! < threshold) }
                }
            }
        }
    }
}

@Suite struct HeartbeatScheduleTests {
    @Test func defaultScheduleGivesFourChancesPerThreshold() {
        let s = HeartbeatSchedule()
        #expect(s.interval == .milliseconds(1250))
        #expect(s.timeout == .milliseconds(1000))
        #expect(s.timeout < s.interval && s.interval < s.threshold)
    }

    @Test func intervalIsBounded() {
        #expect(HeartbeatSchedule(threshold: .seconds(3600)).interval == .seconds(10))
        let tiny = HeartbeatSchedule(threshold: .milliseconds(150))
        #expect(tiny.interval == .milliseconds(75), "never more than half the threshold")
        #expect(tiny.timeout == .milliseconds(60))
        #expect(HeartbeatSchedule(threshold: .milliseconds(300)).interval == .milliseconds(100))
        let tiniest = HeartbeatSchedule(threshold: .milliseconds(30))
        #expect(tiniest.interval == .milliseconds(15) && tiniest.timeout == .milliseconds(12))
    }

    @Test func parsesOfflineThresholdConfig() throws {
        #expect(try HeartbeatSchedule.threshold(fromConfig: nil) == .seconds(5))
        #expect(try HeartbeatSchedule.threshold(fromConfig: "") == .seconds(5))
        #expect(try HeartbeatSchedule.threshold(fromConfig: "20") == .seconds(20))
        #expect(try HeartbeatSchedule.threshold(fromConfig: "2.5") == .milliseconds(2500))
        for bad in ["0", "-3", "abc", "nan", "inf", "1e9", " 5", "5s"] {
            #expect(throws: HeartbeatSchedule.ConfigError.invalidThreshold(bad)) {
                try HeartbeatSchedule.threshold(fromConfig: bad)
            }
        }
        #expect("\(HeartbeatSchedule.ConfigError.invalidThreshold("x"))".contains("cluster.offline_threshold"))
    }
}

@Suite struct OfflineDetectorSeedingTests {
    @Test func leadershipSeedReplacesTheKnownSet() {
        var d = OfflineDetector()
        _ = d.handle(.leadershipAcquired(at: .zero, members: [1: true, 2: true]))
        _ = d.handle(.leadershipLost)
        #expect(d.handle(.leadershipAcquired(at: .seconds(50), members: [2: true, 3: false])) == [])
        #expect(Set(d.members.keys) == [2, 3])
        #expect(d.members[3]?.online == false)
        #expect(d.nextDeadline == .seconds(55))
        #expect(d.handle(.tick(at: .seconds(55))) == [.markOffline(2), .rebalanceRoles])
    }

    @Test func theLeaderNeverDeclaresItselfOffline() {
        var d = OfflineDetector(local: 1)
        #expect(d.handle(.leadershipAcquired(at: .zero, members: [1: true, 2: true])) == [])
        #expect(d.nextDeadline == .seconds(5), "only member 2 has a deadline")
        #expect(d.handle(.tick(at: .seconds(60))) == [.markOffline(2), .rebalanceRoles])
        #expect(d.members[1]?.online == true)
        #expect(d.nextDeadline == nil)
    }

    @Test func winningTheElectionMarksARecordedOfflineLeaderOnline() {
        var d = OfflineDetector(local: 2)
        #expect(d.handle(.leadershipAcquired(at: .zero, members: [1: true, 2: false])) == [.markOnline(2), .rebalanceRoles])
        #expect(d.members[2]?.online == true)
    }
}
