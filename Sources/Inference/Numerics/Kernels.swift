import COpenBLAS
import Foundation

/// The operations DeBERTa-v2 and T5 are built from. GEMMs go to OpenBLAS; row-wise kernels
/// use SIMD and are split over cores by rows (see `NumericsThreading`).
public enum Kernels {
    /// C = op(A) · op(B) for 2-D tensors; `transposeB` reads B as [n, k] (PyTorch's Linear weight layout).
    public static func matmul(_ a: Tensor, _ b: Tensor, transposeA: Bool = false, transposeB: Bool = false) -> Tensor {
        precondition(a.rank == 2 && b.rank == 2, "matmul takes matrices, got \(a.shape) and \(b.shape)")
        let m = transposeA ? a.shape[1] : a.shape[0], k = transposeA ? a.shape[0] : a.shape[1]
        let n = transposeB ? b.shape[0] : b.shape[1], kb = transposeB ? b.shape[1] : b.shape[0]
        precondition(k == kb, "matmul inner dimensions differ: \(a.shape)\(transposeA ? "ᵀ" : "") · \(b.shape)\(transposeB ? "ᵀ" : "")")
        var c = Tensor(zeros: [m, n])
        guard m > 0, n > 0, k > 0 else { return c }
        a.storage.withUnsafeBufferPointer { pa in
            b.storage.withUnsafeBufferPointer { pb in
                c.storage.withUnsafeMutableBufferPointer { pc in
                    sgemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, a: pa.baseAddress!, lda: a.shape[1],
                          b: pb.baseAddress!, ldb: b.shape[1], c: pc.baseAddress!, ldc: n)
                }
            }
        }
        return c
    }

    /// y = x · Wᵀ + b over the last dimension; `weight` is [out, in] as PyTorch stores it.
    public static func linear(_ x: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
        precondition(weight.rank == 2 && x.columns == weight.shape[1], "linear: input \(x.shape) does not fit weight \(weight.shape)")
        var y = matmul(x.reshaped([x.rows, x.columns]), weight, transposeB: true)
        if let bias {
            precondition(bias.count == weight.shape[0], "linear: bias \(bias.shape) does not fit weight \(weight.shape)")
            addRowVector(&y, bias.storage)
        }
        return y.reshaped(Array(x.shape.dropLast()) + [weight.shape[0]])
    }

    static func addRowVector(_ y: inout Tensor, _ v: [Float]) {
        let n = y.columns, rows = y.rows
        y.storage.withUnsafeMutableBufferPointer { py in
            v.withUnsafeBufferPointer { pv in
                NumericsThreading.forEachRow(rows) { r in
                    SIMDMath.add(UnsafeMutableBufferPointer(rebasing: py[(r * n)..<((r + 1) * n)]), pv)
                }
            }
        }
    }

    /// y += x element-wise (residual connections); shapes must hold the same number of values.
    public static func addInPlace(_ y: inout Tensor, _ x: Tensor) {
        precondition(y.count == x.count, "addInPlace: \(x.shape) into \(y.shape)")
        let n = y.columns, rows = y.rows
        y.storage.withUnsafeMutableBufferPointer { py in
            x.storage.withUnsafeBufferPointer { px in
                NumericsThreading.forEachRow(rows) { r in
                    SIMDMath.add(UnsafeMutableBufferPointer(rebasing: py[(r * n)..<((r + 1) * n)]),
                                 UnsafeBufferPointer(rebasing: px[(r * n)..<((r + 1) * n)]))
                }
            }
        }
    }

    /// LayerNorm over the last dimension: (x − mean) / sqrt(var + eps) · γ + β.
    /// `consuming` as `mapVector`: a temporary or a last use is normalized in place.
    public static func layerNorm(_ x: consuming Tensor, gamma: Tensor, beta: Tensor, eps: Float) -> Tensor {
        precondition(gamma.count == x.columns && beta.count == x.columns, "layerNorm: γ/β \(gamma.shape) do not fit \(x.shape)")
        var y = x
        let n = y.columns, rows = y.rows
        y.storage.withUnsafeMutableBufferPointer { py in
            gamma.storage.withUnsafeBufferPointer { pg in
                beta.storage.withUnsafeBufferPointer { pb in
                    NumericsThreading.forEachRow(rows) { r in
                        let row = UnsafeMutableBufferPointer(rebasing: py[(r * n)..<((r + 1) * n)])
                        let mean = SIMDMath.sum(UnsafeBufferPointer(row)) / Float(n)
                        var variance: Float = 0
                        for v in row { variance += (v - mean) * (v - mean) }
                        let inv = 1 / (variance / Float(n) + eps).squareRoot()
                        for i in 0..<n { row[i] = (row[i] - mean) * inv * pg[i] + pb[i] }
                    }
                }
            }
        }
        return y
    }

    /// T5's RMSNorm: x / sqrt(mean(x²) + eps) · γ (no mean subtraction, no bias).
    public static func rmsNorm(_ x: Tensor, gamma: Tensor, eps: Float) -> Tensor {
        precondition(gamma.count == x.columns, "rmsNorm: γ \(gamma.shape) does not fit \(x.shape)")
        var y = x
        let n = x.columns
        y.storage.withUnsafeMutableBufferPointer { py in
            gamma.storage.withUnsafeBufferPointer { pg in
                NumericsThreading.forEachRow(x.rows) { r in
                    let row = py.baseAddress! + r * n
                    SIMDMath.rmsNormRow(row, into: row, gamma: pg.baseAddress!, count: n, eps: eps)
                }
            }
        }
        return y
    }

    /// Softmax over the last dimension after adding `mask` (same row length; −∞ or a large
    /// negative value hides a position). A row whose entries are all masked becomes zeros.
    public static func softmax(_ x: Tensor, additiveMask mask: [Float]? = nil) -> Tensor {
        var y = x
        let n = x.columns
        if let mask { precondition(mask.count == n, "softmax: mask of \(mask.count) for rows of \(n)") }
        y.storage.withUnsafeMutableBufferPointer { py in
            NumericsThreading.forEachRow(x.rows) { r in
                let row = UnsafeMutableBufferPointer(rebasing: py[(r * n)..<((r + 1) * n)])
                if let mask { for i in 0..<n { row[i] += mask[i] } }
                SIMDMath.softmaxInPlace(row.baseAddress!, count: n)
            }
        }
        return y
    }

    /// GELU with the exact erf form (DeBERTa's `gelu`).
    public static func geluErf(_ x: consuming Tensor) -> Tensor {
        mapVector(x, VectorMath.geluErf)
    }

    /// GELU with the tanh approximation (T5's `gelu_new`).
    public static func geluTanh(_ x: consuming Tensor) -> Tensor {
        mapVector(x, VectorMath.geluTanh)
    }

    public static func tanh(_ x: consuming Tensor) -> Tensor { mapVector(x, VectorMath.tanh) }

    /// `consuming`: a temporary passed in (the usual call) is overwritten in place instead of copied, which keeps
    /// one FFN-wide activation fewer alive at the peak.
    static func mapVector(_ x: consuming Tensor, _ f: @escaping (VectorMath.V) -> VectorMath.V) -> Tensor {
        var y = x
        let n = y.columns, rows = y.rows
        y.storage.withUnsafeMutableBufferPointer { py in
            let base = py.baseAddress!
            NumericsThreading.forEachRow(rows) { r in VectorMath.apply(base + r * n, count: n, f) }
        }
        return y
    }

    /// Rows of `table` selected by `ids`: embedding lookup and gather.
    public static func gatherRows(_ table: Tensor, _ ids: [Int]) -> Tensor {
        let n = table.columns
        var out = [Float](repeating: 0, count: ids.count * n)
        for (i, id) in ids.enumerated() {
            precondition(id >= 0 && id < table.rows, "row \(id) is outside a table of \(table.rows) rows")
            out.replaceSubrange((i * n)..<((i + 1) * n), with: table.storage[(id * n)..<((id + 1) * n)])
        }
        return Tensor(shape: [ids.count, n], storage: out)
    }
}

/// SIMD inner loops shared by the kernels.
enum SIMDMath {
    static func sum(_ v: UnsafeBufferPointer<Float>) -> Float {
        var acc = SIMD16<Float>()
        var i = 0
        while i + 16 <= v.count {
            acc += SIMD16<Float>(v[i..<(i + 16)])
            i += 16
        }
        var total = acc.sum()
        while i < v.count { total += v[i]; i += 1 }
        return total
    }

    static func sumOfSquares(_ v: UnsafeBufferPointer<Float>) -> Float {
        var acc = SIMD16<Float>()
        var i = 0
        while i + 16 <= v.count {
            let chunk = SIMD16<Float>(v[i..<(i + 16)])
            acc += chunk * chunk
            i += 16
        }
        var total = acc.sum()
        while i < v.count { total += v[i] * v[i]; i += 1 }
        return total
    }

    static func add(_ y: UnsafeMutableBufferPointer<Float>, _ v: UnsafeBufferPointer<Float>) {
        var i = 0
        while i + 16 <= y.count {
            let sum = SIMD16<Float>(y[i..<(i + 16)]) + SIMD16<Float>(v[i..<(i + 16)])
            for j in 0..<16 { y[i + j] = sum[j] }
            i += 16
        }
        while i < y.count { y[i] += v[i]; i += 1 }
    }

    static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) -> Float {
        var acc = SIMD8<Float>()
        var i = 0
        while i + 8 <= count {
            acc += UnsafeRawPointer(a + i).loadUnaligned(as: SIMD8<Float>.self) * UnsafeRawPointer(b + i).loadUnaligned(as: SIMD8<Float>.self)
            i += 8
        }
        var total = acc.sum()
        while i < count { total += a[i] * b[i]; i += 1 }
        return total
    }

    /// y += alpha · x.
    static func axpy(_ alpha: Float, _ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count: Int) {
        var i = 0
        while i + 8 <= count {
            let sum = UnsafeRawPointer(y + i).loadUnaligned(as: SIMD8<Float>.self) + alpha * UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self)
            UnsafeMutableRawPointer(y + i).storeBytes(of: sum, as: SIMD8<Float>.self)
            i += 8
        }
        while i < count { y[i] += alpha * x[i]; i += 1 }
    }

    /// Softmax of `count` values in place (max-subtracted, in Float32 as PyTorch computes it).
    static func softmaxInPlace(_ row: UnsafeMutablePointer<Float>, count: Int) {
        var maxValue = -Float.infinity
        for j in 0..<count where row[j] > maxValue { maxValue = row[j] }
        guard maxValue > -Float.infinity else {
            for j in 0..<count { row[j] = 0 }
            return
        }
        VectorMath.apply(row, count: count) { VectorMath.exp($0 - maxValue) }
        let inverse = 1 / sum(UnsafeBufferPointer(start: row, count: count))
        VectorMath.apply(row, count: count) { $0 * inverse }
    }
}
