/// The pairwise logits of one job: `self[i, j]` = ℓ(i, j), candidate i in the left
/// (`<|candidate1|>`) slot and j in the right slot; ℓ > 0 means i is better (spec §2).
/// The diagonal is 0 and never computed.
public struct ComparisonMatrix: Sendable, Equatable {
    public let count: Int
    /// Row-major, `count × count`.
    public private(set) var values: [Float]

    public init(count: Int) {
        precondition(count >= 0, "negative candidate count")
        self.count = count
        self.values = [Float](repeating: 0, count: count * count)
    }

    public init(rows: [[Float]]) {
        self.init(count: rows.count)
        for (i, row) in rows.enumerated() {
            precondition(row.count == count, "comparison matrix row \(i) has \(row.count) entries, expected \(count)")
            for (j, v) in row.enumerated() where i != j { values[i * count + j] = v }
        }
    }

    public subscript(left: Int, right: Int) -> Float {
        get { values[left * count + right] }
        set {
            precondition(left != right, "the diagonal of a comparison matrix is not computed")
            values[left * count + right] = newValue
        }
    }

    /// Every ordered pair (i ≠ j), i outer and j inner, as the reference's `_full_predict` visits them.
    public static func orderedPairs(count: Int) -> [(left: Int, right: Int)] {
        var pairs: [(left: Int, right: Int)] = []
        pairs.reserveCapacity(max(0, count * (count - 1)))
        for i in 0..<count {
            for j in 0..<count where j != i { pairs.append((i, j)) }
        }
        return pairs
    }

    public var rows: [[Float]] {
        (0..<count).map { i in Array(values[(i * count)..<((i + 1) * count)]) }
    }
}
