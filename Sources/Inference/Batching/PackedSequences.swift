/// Sequences of a batch stacked back to back, without padding: the encoders run their dense layers on
/// all tokens at once and attention per sequence, rows `offsets[s] ..< offsets[s] + lengths[s]`.
struct PackedSequences {
    let ids: [Int]
    let offsets: [Int]
    let lengths: [Int]

    init(_ sequences: [[Int]]) {
        var ids: [Int] = []
        var offsets: [Int] = []
        ids.reserveCapacity(sequences.reduce(0) { $0 + $1.count })
        for s in sequences {
            offsets.append(ids.count)
            ids += s
        }
        self.ids = ids
        self.offsets = offsets
        lengths = sequences.map(\.count)
    }

    /// (sequence, head) attention tasks, longest sequences first so a strided split over workers stays balanced.
    static func tasks(lengths: [Int], heads: Int) -> [(sequence: Int, head: Int)] {
        lengths.indices.sorted { lengths[$0] > lengths[$1] }.flatMap { s in (0..<heads).map { (s, $0) } }
    }
}
