// Throughput of the pure scheduler: 10,000 placements over 1,000 simulated members, per policy,
// through the batch path a `launch --count` uses. Prints the median of several runs with min/max.
//
//   scheduler-bench [--runs N] [--placements N] [--members N]
//
// No I/O besides printing; the cluster is random but seeded, so runs are comparable.
#if canImport(Glibc)
import Glibc  // exit()
#endif
import Scheduler

let MiB: Int64 = 1024 * 1024
let GiB: Int64 = 1024 * MiB

var runs = 7
var placements = 10_000
var memberCount = 1_000
var arguments = CommandLine.arguments.dropFirst().makeIterator()
while let argument = arguments.next() {
    guard let value = arguments.next().flatMap({ Int($0) }), value > 0 else {
        print("scheduler-bench: \(argument) needs a positive number; usage: scheduler-bench [--runs N] [--placements N] [--members N]")
        exit(2)
    }
    switch argument {
    case "--runs": runs = value
    case "--placements": placements = value
    case "--members": memberCount = value
    default:
        print("scheduler-bench: unknown argument \(argument)")
        exit(2)
    }
}

/// A heterogeneous cluster, up to half allocated, in 20 failure domains.
func cluster(seed: UInt64, memberCount: Int) -> [MemberSnapshot] {
    var rng = SplitMix64(seed: seed)
    return (0..<memberCount).map { index in
        let cpu = Double([8, 16, 32, 64][Int.random(in: 0...3, using: &rng)])
        let memory = Int64([16, 64, 128, 256][Int.random(in: 0...3, using: &rng)]) * GiB
        let used = Double.random(in: 0...0.5, using: &rng)
        return MemberSnapshot(
            id: Int64(index + 1), name: "m\(index + 1)",
            instanceMode: index % 50 == 0 ? .manual : .all,
            failureDomain: "rack\(index % 20)",
            capacity: MemberCapacity(cpu: cpu, memory: memory, disk: 2048 * GiB),
            allocated: Resources(cpu: cpu * 4 * used, memory: Int64(Double(memory) * used),
                                 disk: Int64(Double(2048 * GiB) * used), processes: 0),
            instanceCount: Int(used * 100))
    }
}

/// Requests of mixed sizes, as a fleet of launches would be.
func requests(seed: UInt64, placements: Int, placementGroup: PlacementGroupRule?) -> [PlacementRequest] {
    var rng = SplitMix64(seed: seed)
    return (0..<placements).map { index in
        PlacementRequest(
            name: "bench-\(index + 1)",
            limits: ResourceLimits(cpu: [0.25, 0.5, 1, 2][Int.random(in: 0...3, using: &rng)],
                                   memory: [256, 512, 1024, 4096][Int.random(in: 0...3, using: &rng)] * MiB,
                                   disk: nil, processes: nil),
            placementGroup: placementGroup)
    }
}

let members = cluster(seed: 42, memberCount: memberCount)
let scenarios: [(String, SchedulerPolicy, PlacementGroupRule?)] = [
    ("fewest", .fewest, nil),
    ("spread", .spread, nil),
    ("binpack", .binpack, nil),
    ("spread + permissive anti-affinity (failure domain)", .spread,
     PlacementGroupRule(name: "web", kind: .antiAffinity, rigor: .permissive, scope: .failureDomain)),
]
print("scheduler-bench: \(placements) placements over \(memberCount) members, median of \(runs) runs (min/max)")
var allMet = true
for (label, policy, rule) in scenarios {
    let batch = requests(seed: 7, placements: placements, placementGroup: rule)
    let settings = SchedulerSettings(policy: policy)
    var rates: [Double] = []
    for run in 0..<runs {
        let clock = ContinuousClock()
        var outcome: Result<BatchPlacement, BatchRefusal>?
        let elapsed = clock.measure {
            outcome = Scheduler.placeMany(batch, members: members, settings: settings, seed: UInt64(run))
        }
        guard case .success(let placed)? = outcome, placed.placements.count == placements else {
            print("  \(label): the batch did not place whole: \(String(describing: outcome))")
            exit(1)
        }
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        rates.append(Double(placements) / seconds)
    }
    rates.sort()
    let median = rates[rates.count / 2]
    let met = median >= 50_000
    allMet = allMet && (rule != nil || met)
    print("  \(label): \(Int(median)) placements/s (min \(Int(rates.first!)), max \(Int(rates.last!)))"
        + (rule == nil ? (met ? "  [target >= 50000/s met]" : "  [target >= 50000/s NOT met]") : "  [extra, no target]"))
}
print(allMet ? "all policies meet the 50,000 placements/s target" : "some policy misses the 50,000 placements/s target")
