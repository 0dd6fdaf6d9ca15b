import ClusterDB
import Dqlite
import Foundation
import Testing

/// Scheduling data in ClusterDB: reported capacity, allocations summed from instance rows, batch
/// inserts and deletes, and the bulk uid/gid block allocator.
@Suite struct CapacityTests {
    @Test func bulkIdmapBlocksMatchRepeatedSingleAllocations() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            let block: Int64 = 10
            let start = Int64.random(in: 0...50, using: &generator)
            let size = block * Int64.random(in: 1...40, using: &generator)
            // Used blocks, some unaligned, some outside the range.
            let used = (0..<Int.random(in: 0...15, using: &generator)).map { _ in Int64.random(in: 0...(start + size + 20), using: &generator) }
            let count = Int.random(in: 0...45, using: &generator)
            var expected: [Int64]? = []
            var taken = used
            for _ in 0..<count {
                guard let next = IdmapAllocator.lowestFree(used: taken, rangeStart: start, rangeSize: size, block: block) else {
                    expected = nil
                    break
                }
                expected!.append(next)
                taken.append(next)
            }
            let bulk = IdmapAllocator.lowestFree(count: count, used: used, rangeStart: start, rangeSize: size, block: block)
            #expect(bulk == expected, "used \(used) start \(start) size \(size) count \(count)")
        }
    }

    @Test func allocationsAreSumsOverRowsWithDefaultsForUnsetLimits() async throws {
        let cluster = try TestCluster()
        defer { cluster.shutdown() }
        let db = try await cluster.open()
        let defaults = InstanceFootprint(cpu: 0.1, memory: 64 << 20, disk: 256 << 20, processes: 100)
        let (m1, m2) = try await db.transaction { tx in
            (try tx.ensureMember(name: "m1", address: "a:1"), try tx.ensureMember(name: "m2", address: "a:2"))
        }
        try await db.transaction { tx in
            try tx.setReportedCapacity(memberID: m1, ReportedCapacity(cpu: 8, memory: 16 << 30, disk: nil, processes: 1000))
            try tx.setReportedCapacity(memberID: m1, ReportedCapacity(cpu: 4, memory: 8 << 30, disk: 100 << 30, processes: 500))
            // 70 rows: more than one multi-row INSERT statement holds.
            var rows: [(instance: NewInstance, footprint: InstanceFootprint)] = []
            for i in 0..<70 {
                let limited = i % 2 == 0
                rows.append((NewInstance(name: "c\(i)", memberID: i < 50 ? m1 : m2, imageFingerprint: "f", architecture: "x86_64",
                                         idmapBase: Int64(i) * 65536),
                             limited ? InstanceFootprint(cpu: 0.5, memory: 32 << 20, disk: nil, processes: 10) : InstanceFootprint()))
            }
            try tx.insertInstances(rows)
        }
        let (reported, allocations) = try await db.transaction { tx in
            (try tx.reportedCapacities(), try tx.memberAllocations(defaults: defaults))
        }
        #expect(reported == [m1: ReportedCapacity(cpu: 4, memory: 8 << 30, disk: 100 << 30, processes: 500)])
        // m1: 25 limited + 25 defaults; m2: 10 + 10.
        let mib: Int64 = 1 << 20
        let expected = MemberAllocation(instances: 50, cpu: 25 * 0.5 + 25 * 0.1, memory: 25 * 32 * mib + 25 * 64 * mib,
                                        disk: 50 * 256 * mib, processes: 25 * 10 + 25 * 100)
        var got = try #require(allocations[m1])
        // SQL sums floats in row order: compare cpu with a tolerance, the rest exactly.
        #expect(abs(got.cpu - expected.cpu) < 1e-9)
        got.cpu = expected.cpu
        #expect(got == expected)
        #expect(allocations[m2]?.instances == 20)

        // A config change moves the footprint; deleting rows removes their share.
        try await db.transaction { tx in
            try tx.setInstanceFootprint(name: "c1", InstanceFootprint(cpu: 2, memory: 1 << 30, disk: nil, processes: nil))
            #expect(try tx.deleteInstances((50..<70).map { "c\($0)" }) == 20)
        }
        let after = try await db.transaction { tx in try tx.memberAllocations(defaults: defaults) }
        #expect(after[m2] == nil)
        let memory: Int64 = 25 * 32 * mib + 24 * 64 * mib + 1024 * mib
        #expect(after[m1]?.memory == memory)

        // A batch with one taken name inserts nothing.
        await #expect(throws: ClusterDBError.self) {
            try await db.transaction { tx in
                try tx.insertInstances([
                    (NewInstance(name: "new-1", memberID: m2, imageFingerprint: "f", architecture: "x86_64"), InstanceFootprint()),
                    (NewInstance(name: "c3", memberID: m2, imageFingerprint: "f", architecture: "x86_64"), InstanceFootprint()),
                ])
            }
        }
        let names = try await db.transaction { tx in try tx.existingInstanceNames(["new-1", "c3", "c4", "nope"]) }
        #expect(names == ["c3", "c4"])
        await db.close()
    }

    @Test func ownersClaimPlacedRowsAndAFailedRequestReleasesOnlyUnclaimedOnes() async throws {
        let cluster = try TestCluster()
        defer { cluster.shutdown() }
        let db = try await cluster.open()
        let (m1, m2) = try await db.transaction { tx in
            (try tx.ensureMember(name: "m1", address: "a:1"), try tx.ensureMember(name: "m2", address: "a:2"))
        }
        try await db.transaction { tx in
            try tx.insertInstances((0..<6).map { i in
                (NewInstance(name: "p\(i)", memberID: i < 4 ? m2 : m1, imageFingerprint: "f", architecture: "x86_64",
                             idmapBase: Int64(i) * 65536), InstanceFootprint())
            })
        }
        // Rows placed elsewhere, or unknown, are refused and nothing is claimed.
        await #expect(throws: ClusterDBError.notFound("instances p4 placed on this member")) {
            try await db.transaction { tx in try tx.claimInstances(["p0", "p4"], memberID: m2) }
        }
        let claimed = try await db.transaction { tx in try tx.claimInstances(["p0", "p1"], memberID: m2) }
        #expect(claimed.map(\.name).sorted() == ["p0", "p1"])
        // A repeated request takes nothing twice.
        await #expect(throws: ClusterDBError.self) {
            try await db.transaction { tx in try tx.claimInstances(["p1", "p2"], memberID: m2) }
        }
        // The placing member gives up on p0-p3: the owner's p0, p1 stay, p2, p3 go.
        let released = try await db.transaction { tx in try tx.releaseUnclaimedInstances(["p0", "p1", "p2", "p3"]) }
        #expect(released.released == 2 && released.claimed == ["p0", "p1"])
        let left = try await db.transaction { tx in try tx.existingInstanceNames((0..<6).map { "p\($0)" }) }
        #expect(left == ["p0", "p1", "p4", "p5"])
        // A request that reaches the owner after that finds nothing to create.
        await #expect(throws: ClusterDBError.self) {
            try await db.transaction { tx in try tx.claimInstances(["p2"], memberID: m2) }
        }
        // Unclaimed rows are swept only once they are older than the grace the owner gives them.
        #expect(try await db.transaction { tx in try tx.deleteAbandonedPlacements(memberID: m1, placedBefore: Date().addingTimeInterval(-3600)) } == [])
        #expect(try await db.transaction { tx in try tx.deleteAbandonedPlacements(memberID: m2, placedBefore: Date().addingTimeInterval(1)) } == [])
        #expect(try await db.transaction { tx in try tx.deleteAbandonedPlacements(memberID: m1, placedBefore: Date().addingTimeInterval(1)) } == ["p4", "p5"])
        #expect(try await db.transaction { tx in try tx.existingInstanceNames((0..<6).map { "p\($0)" }) } == ["p0", "p1"])
        // Rows from before claims existed (and single inserts) count as claimed.
        try await db.transaction { tx in
            _ = try tx.insertInstance(NewInstance(name: "old", memberID: m1, imageFingerprint: "f", architecture: "x86_64"))
        }
        #expect(try await db.transaction { tx in try tx.releaseUnclaimedInstances(["old"]) }.claimed == ["old"])
        await db.close()
    }
}
