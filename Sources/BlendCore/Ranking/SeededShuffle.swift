/// SplitMix64: a small, well-mixed generator whose output depends only on its seed, so a
/// job's bubble order (and sampling) reproduces on every worker and every redelivery.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

extension Array {
    /// Fisher–Yates with an explicit generator; `shuffled(using:)` of the standard library
    /// does not promise a stable algorithm across releases, and a job's order must not change.
    public func seededShuffle(seed: UInt64) -> [Element] {
        var rng = SplitMix64(seed: seed)
        var out = self
        guard out.count > 1 else { return out }
        for i in stride(from: out.count - 1, to: 0, by: -1) {
            let j = Int(rng.next() % UInt64(i + 1))
            out.swapAt(i, j)
        }
        return out
    }
}
