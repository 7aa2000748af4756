import COpenBLAS

extension Kernels {
    /// C = alpha · op(A) · op(B) + beta · C on raw row-major memory with explicit leading dimensions, so
    /// per-head slices of a [rows, hidden] activation are multiplied in place without copying. Runs on the
    /// calling thread; callers that are already parallel (attention heads) use this one.
    @inline(__always)
    static func sgemmSerial(transposeA: Bool = false, transposeB: Bool = false, m: Int, n: Int, k: Int, alpha: Float = 1,
                            a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                            beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
        guard m > 0, n > 0, k > 0 else { return }
        cblas_sgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// [batch, m, k] · [batch, k, n] (or with either operand transposed in its last two dimensions).
    public static func batchedMatmul(_ a: Tensor, _ b: Tensor, transposeA: Bool = false, transposeB: Bool = false) -> Tensor {
        precondition(a.rank == 3 && b.rank == 3 && a.shape[0] == b.shape[0], "batchedMatmul takes [batch, ·, ·] pairs, got \(a.shape) and \(b.shape)")
        let batch = a.shape[0]
        let m = transposeA ? a.shape[2] : a.shape[1], k = transposeA ? a.shape[1] : a.shape[2]
        let n = transposeB ? b.shape[1] : b.shape[2], kb = transposeB ? b.shape[2] : b.shape[1]
        precondition(k == kb, "batchedMatmul inner dimensions differ: \(a.shape) · \(b.shape)")
        var c = Tensor(zeros: [batch, m, n])
        let aStride = a.shape[1] * a.shape[2], bStride = b.shape[1] * b.shape[2]
        a.storage.withUnsafeBufferPointer { pa in
            b.storage.withUnsafeBufferPointer { pb in
                c.storage.withUnsafeMutableBufferPointer { pc in
                    for i in 0..<batch {
                        sgemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k,
                              a: pa.baseAddress! + i * aStride, lda: a.shape[2], b: pb.baseAddress! + i * bStride, ldb: b.shape[2],
                              c: pc.baseAddress! + i * m * n, ldc: n)
                    }
                }
            }
        }
        return c
    }

    /// Rows of `source` written to `rows` of `destination` (the inverse of `gatherRows`); the
    /// destination must have as many columns as the source.
    public static func scatterRows(_ source: Tensor, into destination: inout Tensor, rows: [Int]) {
        precondition(source.rows == rows.count && source.columns == destination.columns, "scatterRows: \(source.shape) into \(destination.shape) at \(rows.count) rows")
        let n = source.columns
        for (i, r) in rows.enumerated() {
            precondition(r >= 0 && r < destination.rows, "row \(r) is outside \(destination.rows) rows")
            destination.storage.replaceSubrange((r * n)..<((r + 1) * n), with: source.storage[(i * n)..<((i + 1) * n)])
        }
    }

    /// Tensors joined along the last dimension (every one must have the same rows).
    public static func concatColumns(_ parts: [Tensor]) -> Tensor {
        guard let first = parts.first else { return Tensor(zeros: [0, 0]) }
        let rows = first.rows
        precondition(parts.allSatisfy { $0.rows == rows }, "concatColumns: row counts differ")
        let total = parts.reduce(0) { $0 + $1.columns }
        var out = [Float](repeating: 0, count: rows * total)
        var offset = 0
        for p in parts {
            let n = p.columns
            for r in 0..<rows { out.replaceSubrange((r * total + offset)..<(r * total + offset + n), with: p.storage[(r * n)..<((r + 1) * n)]) }
            offset += n
        }
        return Tensor(shape: Array(first.shape.dropLast()) + [total], storage: out)
    }
}
