/// Sequences of a batch stacked back to back: the encoders run their dense layers on all rows at once and
/// attention per sequence, rows `offsets[s] ..< offsets[s] + lengths[s]`. Each sequence starts at a multiple of
/// `Kernels.rowAlignment`, so its rows meet the GEMM kernels at the same positions in every batch and its
/// results are bit-identical whatever shares the batch (see `Kernels.sgemm`). The rows between a sequence's end
/// and the next start hold `padding` and are computed but never read; attention never sees them.
struct PackedSequences {
    let ids: [Int]
    let offsets: [Int]
    let lengths: [Int]

    init(_ sequences: [[Int]], padding: Int) {
        let alignment = Kernels.rowAlignment
        var ids: [Int] = []
        var offsets: [Int] = []
        ids.reserveCapacity(sequences.reduce(0) { $0 + ($1.count + alignment - 1) / alignment * alignment })
        for s in sequences {
            offsets.append(ids.count)
            ids += s
            ids += repeatElement(padding, count: (alignment - s.count % alignment) % alignment)
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
