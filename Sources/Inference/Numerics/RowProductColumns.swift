import CKernels

/// A decoder step's products one block of output columns at a time, on the calling thread, for `WorkerTeam` chunks:
/// each output runs the same kernel and the same accumulation as in `linearRows`, so its bits do not depend on the
/// block it falls in, on the row count or on which worker computes it.
extension WeightMatrix {
    /// Words per row of activations rounded to bf16 pairs that `rowProduct` needs (bf16 pairs only; else 0).
    var roundedWordsPerRow: Int {
        if case .bf16Pairs(_, let k, _) = self { return (k + 1) / 2 }
        return 0
    }

    /// Rounds `m` rows of x to bf16 pairs into `rounded` when this weight needs them (`roundedWordsPerRow` > 0).
    func roundRows(_ x: UnsafePointer<Float>, rows m: Int, into rounded: UnsafeMutablePointer<UInt32>) {
        guard case .bf16Pairs(_, let k, _) = self else { return }
        bk_bf16_round_rows(x, Int32(m), Int32(k), Int32(k), rounded)
    }

    /// y[r·ldy + j] = Σ_i x[r·k + i]·w[j][i] for j in `columns`; `rounded` holds x from `roundRows` (bf16 pairs).
    func rowProduct(_ x: UnsafePointer<Float>, rounded: UnsafePointer<UInt32>, rows m: Int, columns: Range<Int>,
                    into y: UnsafeMutablePointer<Float>, ldy: Int) {
        let (n0, n1) = (Int32(columns.lowerBound), Int32(columns.upperBound))
        switch self {
        case .f32(let w):
            let k = w.shape[1]
            w.storage.withUnsafeBufferPointer { pw in
                let wBase = pw.baseAddress!
                // The choice `Kernels.linearRows` makes, on k alone.
                if k % 16 == 0 {
                    bk_f32_rows(x, Int32(m), Int32(k), wBase, n0, n1, y, Int32(ldy))
                } else {
                    for j in columns {
                        for r in 0..<m { y[r * ldy + j] = SIMDMath.rowDot(wBase + j * k, x + r * k, count: k) }
                    }
                }
            }
        case let .bf16(_, k, bits):
            bits.withUnsafeBufferPointer { bk_bf16w_rows(x, Int32(m), Int32(k), $0.baseAddress!, n0, n1, y, Int32(ldy)) }
        case let .bf16Pairs(_, k, words):
            words.withUnsafeBufferPointer { pw in
                let start = columns.lowerBound / 16 * 16
                guard start < columns.lowerBound else {
                    bk_bf16_gemm(rounded, Int32(m), Int32(k), pw.baseAddress!, n0, n1, y, Int32(ldy), 1)
                    return
                }
                // The kernel starts at a group of 16 columns: compute from the group's start aside, keep the block.
                let width = columns.upperBound - start
                let aside = UnsafeMutablePointer<Float>.allocate(capacity: m * width)
                defer { aside.deallocate() }
                bk_bf16_gemm(rounded, Int32(m), Int32(k), pw.baseAddress!, Int32(start), n1, aside - start, Int32(width), 1)
                for r in 0..<m {
                    (y + r * ldy + columns.lowerBound).update(from: aside + r * width + (columns.lowerBound - start), count: columns.count)
                }
            }
        case let .int8(_, k, values, scales):
            values.withUnsafeBufferPointer { pq in
                scales.withUnsafeBufferPointer { ps in
                    bk_int8_rows(x, Int32(m), Int32(k), pq.baseAddress!, ps.baseAddress!, n0, n1, y, Int32(ldy))
                }
            }
        }
    }
}

extension SIMDMath {
    /// One row of T5's RMSNorm, `source` to `destination` (they may be the same): x / sqrt(mean(x²) + eps) · γ.
    @inline(__always)
    static func rmsNormRow(_ source: UnsafePointer<Float>, into destination: UnsafeMutablePointer<Float>,
                           gamma: UnsafePointer<Float>, count n: Int, eps: Float) {
        let inv = 1 / (sumOfSquares(UnsafeBufferPointer(start: source, count: n)) / Float(n) + eps).squareRoot()
        for i in 0..<n { destination[i] = source[i] * inv * gamma[i] }
    }
}
