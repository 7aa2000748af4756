/// `compare(A, B)` (spec §2.4) with the documented meaning in every mode: the result is
/// positive when A is better.
///
/// Deliberate differences from the reference: `[B,A]` is negated (the reference returns
/// ℓ(B,A) as is, so its sign means "B better"), and `[A,B]+[B,A]` is the average of the two
/// orientations as documented (the reference returns their sum). The boolean verdict
/// `> 0` is the same as the reference's in the default mode.
public enum CompareMode: String, Sendable, Codable, CaseIterable {
    case forward = "[A,B]"
    case reverse = "[B,A]"
    case both = "[A,B]+[B,A]"

    /// The ordered pairs (left, right) to score, as (A=0, B=1).
    public var orientations: [(left: Int, right: Int)] {
        switch self {
        case .forward: [(0, 1)]
        case .reverse: [(1, 0)]
        case .both: [(0, 1), (1, 0)]
        }
    }

    /// Combines ℓ(A,B) and/or ℓ(B,A) into "positive = A better".
    public func combine(ab: Float?, ba: Float?) -> Float {
        switch self {
        case .forward: return ab!
        case .reverse: return -ba!
        case .both: return (ab! - ba!) / 2
        }
    }
}

/// How `rank_with_ref` picks the reference candidate (spec §2.5). Lengths are counted in
/// Unicode scalars, as Python's `len` counts a `str`.
public enum ReferenceMode: String, Sendable, Codable, CaseIterable {
    case longest, shortest
    case medianLength = "median_length"
    case first, last

    public func referenceIndex(of texts: [String]) -> Int {
        precondition(!texts.isEmpty, "no candidates to choose a reference from")
        let lengths = texts.map(\.unicodeScalars.count)
        switch self {
        case .first: return 0
        case .last: return texts.count - 1
        case .longest:
            // Python's max returns the first of equal maxima.
            var best = 0
            for i in lengths.indices where lengths[i] > lengths[best] { best = i }
            return best
        case .shortest:
            var best = 0
            for i in lengths.indices where lengths[i] < lengths[best] { best = i }
            return best
        case .medianLength:
            let sorted = lengths.indices.sorted { lengths[$0] != lengths[$1] ? lengths[$0] < lengths[$1] : $0 < $1 }
            return sorted[texts.count / 2]
        }
    }

    /// Reward r_j = −compare(ref, j) = compare(j, ref): positive when candidate j beats the reference.
    public static func rewards(referenceVersus: [Float]) -> [Float] { referenceVersus.map { -$0 } }
}
