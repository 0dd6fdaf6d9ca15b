/// SplitMix64 (Steele, Lea, Flood 2014): a tiny, fast, well-mixed generator. The scheduler uses
/// its mixing function for seeded tie-breaking; tests and the benchmark use the generator to build
/// reproducible random clusters.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state = state &+ 0x9E37_79B9_7F4A_7C15
        return SplitMix64.finalize(state)
    }

    /// The generator's output function: a bijection on UInt64 that scatters nearby inputs.
    @inline(__always)
    public static func finalize(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
