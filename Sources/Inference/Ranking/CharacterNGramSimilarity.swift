/// chrF (Popović 2015): character n-gram F-score, orders 1…6, β = 2, whitespace ignored;
/// precision and recall are averaged over the orders that occur, then combined.
public struct CharacterNGramSimilarity: Sendable {
    public var maxOrder = 6
    public var beta = 2.0

    public init() {}

    /// The n-grams of one text, computed once per text: for each order, its distinct n-grams in
    /// ascending code order with their counts. Two profiles then meet in one linear merge per
    /// order, with no hashing.
    public struct Profile: Sendable {
        /// Distinct n-grams of every order, order 1 first: `starts[n - 1]..<starts[n]` hold order n.
        fileprivate let grams: [UInt128]
        fileprivate let counts: [Int]
        fileprivate let starts: [Int]
        /// n-grams per order, repeats included.
        fileprivate let totals: [Int]
    }

    /// Bits per scalar in a code. A scalar is stored as its value + 1 (at most 0x110000), so 0
    /// marks "past the end of the text" and codes of up to six scalars fit in 126 bits.
    private static let scalarBits = 21
    private static let scalarMask: UInt128 = (1 << 21) - 1

    /// `properties.isWhitespace` of the ASCII scalars, looked up once: most text is ASCII.
    private static let asciiWhitespace: [Bool] = (0..<128).map { Unicode.Scalar(UInt8($0)).properties.isWhitespace }

    public func profile(_ text: String) -> Profile {
        precondition((1...6).contains(maxOrder), "n-grams are packed into 126 bits: 1 to 6 scalars")
        let ascii = Self.asciiWhitespace
        var scalars: [UInt32] = []
        scalars.reserveCapacity(text.utf8.count)
        for s in text.unicodeScalars {
            let white = s.value < 128 ? ascii[Int(s.value)] : s.properties.isWhitespace
            if !white { scalars.append(s.value + 1) }
        }
        let width = maxOrder, length = scalars.count, bits = Self.scalarBits
        // The window of `width` scalars from each position, first scalar in the highest bits, so
        // numeric order is lexicographic order and the order-n gram is the window shifted right.
        // Built from the end: each window is the next one shifted down by a scalar, with its own
        // first scalar on top.
        var windows = [UInt128](repeating: 0, count: length)
        var window: UInt128 = 0
        for p in stride(from: length - 1, through: 0, by: -1) {
            window = UInt128(scalars[p]) << (bits * (width - 1)) | window >> bits
            windows[p] = window
        }
        // Sorted windows list the grams of every order sorted, equal ones adjacent.
        windows.sort()
        var grams: [UInt128] = [], counts: [Int] = [], starts = [0], totals: [Int] = []
        grams.reserveCapacity(length * width)
        counts.reserveCapacity(length * width)
        for n in 1...width {
            let shift = bits * (width - n)
            let start = grams.count
            for w in windows {
                let gram = w >> shift
                // A zero last scalar: fewer than n scalars are left from this position.
                guard gram & Self.scalarMask != 0 else { continue }
                if grams.count > start && grams[grams.count - 1] == gram {
                    counts[counts.count - 1] += 1
                } else {
                    grams.append(gram)
                    counts.append(1)
                }
            }
            starts.append(grams.count)
            totals.append(max(0, length - n + 1))
        }
        return Profile(grams: grams, counts: counts, starts: starts, totals: totals)
    }

    public func chrF(hypothesis h: Profile, reference r: Profile) -> Double {
        chrFBothWays(h, r).forward
    }

    /// chrF(a | b) and chrF(b | a) from one merge per order: the clipped matches of a pair are
    /// the same in both directions, and so are the sums, with precision and recall swapped.
    public func chrFBothWays(_ a: Profile, _ b: Profile) -> (forward: Double, backward: Double) {
        var precision = 0.0, recall = 0.0, orders = 0
        a.grams.withUnsafeBufferPointer { ag in a.counts.withUnsafeBufferPointer { ac in
            b.grams.withUnsafeBufferPointer { bg in b.counts.withUnsafeBufferPointer { bc in
                for n in 0..<maxOrder where a.totals[n] > 0 && b.totals[n] > 0 {
                    var i = a.starts[n], j = b.starts[n]
                    let iEnd = a.starts[n + 1], jEnd = b.starts[n + 1]
                    var matches = 0
                    while i < iEnd && j < jEnd {
                        let x = ag[i], y = bg[j]
                        if x < y {
                            i += 1
                        } else if y < x {
                            j += 1
                        } else {
                            matches += min(ac[i], bc[j])
                            i += 1
                            j += 1
                        }
                    }
                    // In the order and with the operations of the per-direction definition, so every
                    // value is bit-identical to it.
                    precision += Double(matches) / Double(a.totals[n])
                    recall += Double(matches) / Double(b.totals[n])
                    orders += 1
                }
            } }
        } }
        guard orders > 0 else { return (0, 0) }
        precision /= Double(orders)
        recall /= Double(orders)
        return (combine(precision: precision, recall: recall), combine(precision: recall, recall: precision))
    }

    private func combine(precision: Double, recall: Double) -> Double {
        guard precision + recall > 0 else { return 0 }
        let b2 = beta * beta
        return (1 + b2) * precision * recall / (b2 * precision + recall)
    }
}
