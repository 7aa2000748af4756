import CKernels

/// Single-query attention of decoder rows against one head's keys and values (`query_attention.c`): the decoder
/// step's cross-attention. Keys are held dim-major in blocks of 16 positions (dimension i of position j at
/// ((j / 16)·headSize + i)·16 + j % 16), so the scores of 16 positions are one broadcast-FMA per dimension over contiguous
/// memory and a block is one contiguous run; values position-major, [length][headSize]. Both are held in one of the
/// `Format`s (widened in registers, exactly). Rows that attend to the same keys and values (the beams of a job)
/// go in one call, and each key or value vector is read once for a group of them.
///
/// Arithmetic: every score is fma(q[d−1], K[d−1][j], … fma(q[0], K[0][j], 0)) and every context value
/// fma(p[n−1], V[n−1][i], … fma(p[0], V[0][i], 0)), on every path and whatever rows share a call, so a row's result
/// depends on its own query and probabilities only. With int8, K and V are the integers, the score is the chain times
/// the position's key scale, and the context chain's weights are p[j] · (the position's value scale).
enum QueryAttention {
    /// How keys and values are held.
    enum Format: Int32, Sendable, CaseIterable {
        case fp32 = 0, bf16 = 1
        /// Symmetric int8 with one scale per position (max |x| / 127 over the head's dimensions), as int8 activations
        /// are quantized: q = round-half-even(x · 127 / max |x|).
        case int8 = 2

        /// Bytes per element.
        var unit: Int { self == .fp32 ? 4 : (self == .bf16 ? 2 : 1) }
    }

    /// Which code computes the chains; all give the same bits.
    enum Path: Int32, Sendable, CaseIterable {
        case portable = 0, avx2 = 1, avx512 = 2
    }

    /// The fastest path this CPU runs.
    static var bestPath: Path { Path(rawValue: bk_query_attention_best_path())! }

    /// Selects `path` (nil: the best), capped at what the CPU runs; returns the path in effect (tests).
    @discardableResult
    static func usePath(_ path: Path?) -> Path { Path(rawValue: bk_query_attention_set_path(path?.rawValue ?? -1))! }

    /// scores[r·lds + j] = q_rows[r] · K(·, j) for r < count, j < length; row r's query at `queries + rows[r]·ldq`.
    /// `scales`: with int8, the keys' scale of each position. `ahead`: memory read right after this call, prefetched
    /// while the scores are computed.
    @inline(__always)
    static func scores(_ queries: UnsafePointer<Float>, ldq: Int, rows: UnsafePointer<Int32>, count: Int, keys: UnsafeRawPointer,
                       format: Format, scales: UnsafePointer<Float>? = nil, length: Int, headSize: Int,
                       into scores: UnsafeMutablePointer<Float>, lds: Int, ahead: UnsafeRawBufferPointer? = nil) {
        precondition(format != .int8 || scales != nil, "int8 keys need their scales")
        bk_query_attention_scores(queries, Int32(ldq), rows, Int32(count), keys, format.rawValue, scales, Int32(length), Int32(headSize),
                                  scores, Int32(lds), ahead?.baseAddress, ahead?.count ?? 0)
    }

    /// Starts bringing `region` into L2 (before a product whose end would otherwise wait for it).
    @inline(__always)
    static func prefetch(_ region: UnsafeRawBufferPointer) { bk_prefetch_l2(region.baseAddress, region.count) }

    /// out[rows[r]·ldo + i] = Σ_j probabilities[r·ldp + j] · V[j][i] for r < count, i < headSize.
    /// `scales`: with int8, the values' scale of each position; `ahead` as for `scores`.
    @inline(__always)
    static func context(_ probabilities: UnsafePointer<Float>, ldp: Int, values: UnsafeRawPointer, format: Format,
                        scales: UnsafePointer<Float>? = nil, length: Int, headSize: Int, rows: UnsafePointer<Int32>, count: Int,
                        into out: UnsafeMutablePointer<Float>, ldo: Int, ahead: UnsafeRawBufferPointer? = nil) {
        precondition(format != .int8 || scales != nil, "int8 values need their scales")
        bk_query_attention_context(probabilities, Int32(ldp), values, format.rawValue, scales, Int32(length), Int32(headSize), rows,
                                   Int32(count), out, Int32(ldo), ahead?.baseAddress, ahead?.count ?? 0)
    }
}
