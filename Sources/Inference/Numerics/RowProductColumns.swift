import CKernels

/// A decoder step's products one block of output columns at a time, on the calling thread, for `WorkerTeam` chunks:
/// each output runs the same kernel and the same accumulation as in `linearRows`, so its bits do not depend on the
/// block it falls in, on the row count or on which worker computes it.
extension WeightMatrix {
    /// Words per row of prepared activations that `rowProduct` needs: bf16 pairs, or int8 rows (k padded to 4
    /// bytes) with their scales after all the rows; else 0.
    var roundedWordsPerRow: Int {
        switch self {
        case .bf16Pairs(_, let k, _): (k + 1) / 2
        case .int8(let w): (w.columns + 3) / 4 + 1
        default: 0
        }
    }

    /// Prepares `m` rows of x in `rounded` when this weight needs them (`roundedWordsPerRow` > 0): rounded to bf16
    /// pairs, or quantized per row as `Int8Weights.product` quantizes them.
    func roundRows(_ x: UnsafePointer<Float>, rows m: Int, into rounded: UnsafeMutablePointer<UInt32>) {
        switch self {
        case .bf16Pairs(_, let k, _):
            bk_bf16_round_rows(x, Int32(m), Int32(k), Int32(k), rounded)
        case .int8(let w):
            let k4 = (w.columns + 3) / 4 * 4
            let bytes = UnsafeMutableRawPointer(rounded).assumingMemoryBound(to: UInt8.self)
            let scales = UnsafeMutableRawPointer(rounded + m * k4 / 4).assumingMemoryBound(to: Float.self)
            bk_i8_quantize_rows(x, Int32(m), Int32(w.columns), Int32(w.columns), bytes, scales)
        default:
            return
        }
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
        case .int8(let w):
            let k4 = (w.columns + 3) / 4 * 4
            let bytes = UnsafeRawPointer(rounded).assumingMemoryBound(to: UInt8.self)
            let rowScales = UnsafeRawPointer(rounded + m * k4 / 4).assumingMemoryBound(to: Float.self)
            w.packed.withUnsafeBufferPointer { pw in
                w.columnSums.withUnsafeBufferPointer { pc in
                    w.scales.withUnsafeBufferPointer { ps in
                        let start = columns.lowerBound / 16 * 16
                        guard start < columns.lowerBound else {
                            bk_i8_gemm(bytes, Int32(m), Int32(w.columns), pw.baseAddress!, pc.baseAddress!, ps.baseAddress!, rowScales,
                                       n0, n1, y, Int32(ldy), nil)
                            return
                        }
                        // As for bf16 pairs: the kernel starts at a group of 16 columns. Integer sums are exact, so the
                        // block's values are those of any other split.
                        let width = columns.upperBound - start
                        let aside = UnsafeMutablePointer<Float>.allocate(capacity: m * width)
                        defer { aside.deallocate() }
                        bk_i8_gemm(bytes, Int32(m), Int32(w.columns), pw.baseAddress!, pc.baseAddress!, ps.baseAddress!, rowScales,
                                   Int32(start), n1, aside - start, Int32(width), nil)
                        for r in 0..<m {
                            (y + r * ldy + columns.lowerBound).update(from: aside + r * width + (columns.lowerBound - start), count: columns.count)
                        }
                    }
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
