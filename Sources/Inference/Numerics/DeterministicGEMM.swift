import CKernels
import COpenBLAS

/// Products whose every row is bit-identical whatever else shares the call and wherever the row sits in it.
///
/// OpenBLAS's sgemm does not give that by itself (measured on 0.3.21, `Tests/InferenceTests/BitExactnessTests`):
/// its Haswell kernels compute a row of C differently by the row's position modulo 12 and again in the last,
/// partial tile; its SkylakeX kernels switch to a small-matrix kernel below about 40,000 multiply-adds. So a
/// packed batch is cut into OpenBLAS calls of one fixed shape: `rowBlock` rows (the last block multiplied from a
/// zero-padded copy) times column parts that depend on n alone. Sequences start at multiples of `rowAlignment`,
/// the period after which the active kernels treat a row the same (measured at start: 12 on Haswell, 1 on
/// SkylakeX), so a sequence's row lands in an equivalent position in every batch.
/// Rows that are independent items (decoder steps, the PairRM head) use `linearRows`: one dot product per output,
/// in a fixed order, on our own kernel.
extension Kernels {
    /// Rows of every OpenBLAS call of a packed product, large enough that packing the weight panel once per call
    /// costs little (SkylakeX: ~85 % of the large-M rate at 192 rows, ~60 % at 48).
    static let rowBlock = 192

    /// Sequences of a packed batch start at multiples of this many rows (see `PackedSequences`): the smallest
    /// divisor p of `rowBlock` such that, in a `rowBlock`-row call, every row equal to row 0 comes out as row
    /// i mod p does, on every probe shape. Measured once with the kernels OpenBLAS chose for this process.
    public static let rowAlignment: Int = {
        _ = NumericsThreading.threads  // OpenBLAS single-threaded before the first call
        var alignment = 1
        for (n, k) in [(64, 64), (100, 37), (256, 256), (1024, 96)] {
            let row = (0..<k).map { Float(($0 * 7919) % 61) / 61 - 0.5 }
            let a = [Float]((0..<rowBlock).map { _ in row }.joined())
            let b = (0..<(n * k)).map { Float(($0 * 104_729) % 89) / 89 - 0.5 }
            var c = [Float](repeating: 0, count: rowBlock * n)
            a.withUnsafeBufferPointer { pa in
                b.withUnsafeBufferPointer { pb in
                    c.withUnsafeMutableBufferPointer { pc in
                        sgemmSerial(transposeB: true, m: rowBlock, n: n, k: k, a: pa.baseAddress!, lda: k, b: pb.baseAddress!, ldb: k,
                                    c: pc.baseAddress!, ldc: n)
                    }
                }
            }
            func same(_ i: Int, _ j: Int) -> Bool { (0..<n).allSatisfy { c[i * n + $0].bitPattern == c[j * n + $0].bitPattern } }
            let period = (1...rowBlock).first { p in rowBlock % p == 0 && (0..<rowBlock).allSatisfy { same($0, $0 % p) } }!
            var (x, y) = (alignment, period)
            while y != 0 { (x, y) = (y, x % y) }
            alignment = alignment / x * period  // the least common multiple, again a divisor of rowBlock
        }
        return alignment
    }()

    /// Column ranges of a product with `n` columns: halves of wide products, so that a product of a few row blocks
    /// still feeds two workers; a function of n only, never of the rows or the thread count.
    static func columnParts(_ n: Int) -> [Range<Int>] {
        guard n > 512 else { return [0..<n] }
        let half = (n / 2 + 63) / 64 * 64
        return [0..<half, half..<n]
    }

    /// C = alpha · op(A) · op(B) + beta · C as fixed-shape OpenBLAS calls of `rowBlock` rows × one column part,
    /// spread over the compute workers. Row r of C depends only on row r of op(A), on B and on r modulo `rowBlock`.
    static func sgemm(transposeA: Bool = false, transposeB: Bool = false, m: Int, n: Int, k: Int, alpha: Float = 1,
                      a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                      beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
        guard m > 0, n > 0, k > 0 else { return }
        let block = rowBlock
        let fullBlocks = m / block, tail = m - fullBlocks * block
        let columns = columnParts(n)
        // The partial last block, zero-padded to a full one: its extra rows are computed and thrown away.
        let tailA = UnsafeMutablePointer<Float>.allocate(capacity: tail > 0 ? block * k : 0)
        defer { tailA.deallocate() }
        if tail > 0 {
            tailA.initialize(repeating: 0, count: block * k)
            let start = fullBlocks * block
            for i in 0..<tail {
                for p in 0..<k {
                    if transposeA { tailA[p * block + i] = a[p * lda + start + i] } else { tailA[i * k + p] = a[(start + i) * lda + p] }
                }
            }
        }
        let blocks = fullBlocks + (tail > 0 ? 1 : 0)
        NumericsThreading.forEachItem(blocks * columns.count) { item in
            let r = item / columns.count, part = columns[item % columns.count]
            let start = r * block, width = part.count
            let bPart = transposeB ? b + part.lowerBound * ldb : b + part.lowerBound
            let cPart = c + start * ldc + part.lowerBound
            if r < fullBlocks {
                sgemmSerial(transposeA: transposeA, transposeB: transposeB, m: block, n: width, k: k, alpha: alpha,
                            a: transposeA ? a + start : a + start * lda, lda: lda, b: bPart, ldb: ldb, beta: beta, c: cPart, ldc: ldc)
                return
            }
            let scratch = UnsafeMutablePointer<Float>.allocate(capacity: block * width)
            defer { scratch.deallocate() }
            scratch.initialize(repeating: 0, count: block * width)
            if beta != 0 {
                for i in 0..<tail { (scratch + i * width).update(from: cPart + i * ldc, count: width) }
            }
            sgemmSerial(transposeA: transposeA, transposeB: transposeB, m: block, n: width, k: k, alpha: alpha,
                        a: tailA, lda: transposeA ? block : k, b: bPart, ldb: ldb, beta: beta, c: scratch, ldc: width)
            for i in 0..<tail { (cPart + i * ldc).update(from: scratch + i * width, count: width) }
        }
    }

    /// y = x · Wᵀ + b for rows that are independent items (a decoder step's rows, the PairRM head's features):
    /// each output is one dot product in a fixed order, so a row's values never depend on how many rows share the
    /// call or where the row sits. Memory-bound at a few rows, where it runs at the weight-reading rate.
    public static func linearRows(_ x: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
        precondition(weight.rank == 2 && x.columns == weight.shape[1], "linearRows: input \(x.shape) does not fit weight \(weight.shape)")
        let m = x.rows, n = weight.shape[0], k = weight.shape[1]
        var y = Tensor(zeros: [m, n])
        x.storage.withUnsafeBufferPointer { px in
            weight.storage.withUnsafeBufferPointer { pw in
                y.storage.withUnsafeMutableBufferPointer { py in
                    let xBase = px.baseAddress!, wBase = pw.baseAddress!, yBase = py.baseAddress!
                    NumericsThreading.forEachItem((n + 63) / 64) { b in
                        let start = b * 64, end = min(n, b * 64 + 64)
                        // Rows of 16-multiples (every model shape) on the C kernel, which shares each weight chunk
                        // between four rows; other widths on the Swift loop. The choice depends on k alone.
                        if k % 16 == 0 {
                            bk_f32_rows(xBase, Int32(m), Int32(k), wBase, Int32(start), Int32(end), yBase, Int32(n))
                        } else {
                            for j in start..<end {
                                for r in 0..<m { yBase[r * n + j] = SIMDMath.rowDot(wBase + j * k, xBase + r * k, count: k) }
                            }
                        }
                    }
                }
            }
        }
        if let bias {
            precondition(bias.count == n, "linearRows: bias \(bias.shape) does not fit weight \(weight.shape)")
            addRowVector(&y, bias.storage)
        }
        return y.reshaped(Array(x.shape.dropLast()) + [n])
    }
}

extension SIMDMath {
    /// Σ a[i]·b[i] with two eight-lane accumulators over blocks of 16, then the tail in order: the same operations
    /// for every call with the same count, which is what `linearRows` relies on.
    @inline(__always)
    static func rowDot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) -> Float {
        var sum0 = SIMD8<Float>(), sum1 = SIMD8<Float>()
        var i = 0
        while i + 16 <= count {
            sum0 += UnsafeRawPointer(a + i).loadUnaligned(as: SIMD8<Float>.self) * UnsafeRawPointer(b + i).loadUnaligned(as: SIMD8<Float>.self)
            sum1 += UnsafeRawPointer(a + i + 8).loadUnaligned(as: SIMD8<Float>.self) * UnsafeRawPointer(b + i + 8).loadUnaligned(as: SIMD8<Float>.self)
            i += 16
        }
        var total = (sum0 + sum1).sum()
        while i < count { total += a[i] * b[i]; i += 1 }
        return total
    }
}
