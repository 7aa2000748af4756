/// FNV-1a, 64-bit: a stable, fast, non-cryptographic hash for seeds and fingerprints (unlike
/// Swift's `Hasher`, the same input gives the same value in every process).
public struct FNV1a: Sendable {
    public private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

    public init() {}

    public mutating func combine(_ bytes: some Sequence<UInt8>) {
        for b in bytes { value = (value ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
    }

    public static func hash(_ bytes: some Sequence<UInt8>) -> UInt64 {
        var h = FNV1a()
        h.combine(bytes)
        return h.value
    }

    /// Eight hex digits folded from the 64-bit value, for labels.
    public var shortHex: String {
        let folded = UInt32(truncatingIfNeeded: value ^ (value >> 32))
        let hex = String(folded, radix: 16)
        return String(repeating: "0", count: 8 - hex.count) + hex
    }
}
