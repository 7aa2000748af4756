import Foundation
import XCTest
@testable import Inference

/// Every kernel against a plain loop on seeded random inputs. Tolerances are relative to
/// Float32 rounding over the reduction length (sums of up to 1024 terms).
final class NumericsKernelTests: XCTestCase {
    struct Seeded: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    func random(_ shape: [Int], seed: UInt64, scale: Float = 1) -> Tensor {
        var rng = Seeded(state: seed)
        return Tensor(shape: shape, storage: (0..<shape.reduce(1, *)).map { _ in Float.random(in: -scale...scale, using: &rng) })
    }

    func assertClose(_ a: [Float], _ b: [Float], tolerance: Float, _ what: String) {
        XCTAssertEqual(a.count, b.count, what)
        var worst: Float = 0
        for (x, y) in zip(a, b) { worst = max(worst, abs(x - y)) }
        XCTAssertLessThanOrEqual(worst, tolerance, "\(what): max abs difference \(worst)")
    }

    func testMatmulInEveryTransposeAgainstALoop() {
        for (m, k, n) in [(1, 1, 1), (3, 5, 7), (64, 128, 33), (17, 1024, 9)] {
            for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
                let a = random(ta ? [k, m] : [m, k], seed: UInt64(m * 31 + k))
                let b = random(tb ? [n, k] : [k, n], seed: UInt64(n * 17 + k))
                var expected = [Float](repeating: 0, count: m * n)
                for i in 0..<m {
                    for j in 0..<n {
                        var s: Double = 0
                        for p in 0..<k {
                            let av = ta ? a.storage[p * m + i] : a.storage[i * k + p]
                            let bv = tb ? b.storage[j * k + p] : b.storage[p * n + j]
                            s += Double(av) * Double(bv)
                        }
                        expected[i * n + j] = Float(s)
                    }
                }
                let c = Kernels.matmul(a, b, transposeA: ta, transposeB: tb)
                XCTAssertEqual(c.shape, [m, n])
                assertClose(c.storage, expected, tolerance: 1e-5 * Float(k).squareRoot() * 4, "matmul \(m)x\(k)x\(n) tA=\(ta) tB=\(tb)")
            }
        }
    }

    func testLinearUsesPyTorchWeightLayoutAndKeepsLeadingDimensions() {
        let x = random([2, 3, 8], seed: 1), w = random([5, 8], seed: 2), b = random([5], seed: 3)
        let y = Kernels.linear(x, weight: w, bias: b)
        XCTAssertEqual(y.shape, [2, 3, 5])
        var expected: [Float] = []
        for r in 0..<6 {
            for o in 0..<5 {
                var s = b.storage[o]
                for i in 0..<8 { s += x.storage[r * 8 + i] * w.storage[o * 8 + i] }
                expected.append(s)
            }
        }
        assertClose(y.storage, expected, tolerance: 1e-5, "linear")
    }

    func testLayerNormAndRMSNormAgainstLoops() {
        let x = random([40, 96], seed: 4, scale: 3), g = random([96], seed: 5), b = random([96], seed: 6)
        var ln: [Float] = [], rms: [Float] = []
        for r in 0..<40 {
            let row = Array(x.storage[(r * 96)..<((r + 1) * 96)]).map(Double.init)
            let mean = row.reduce(0, +) / 96
            let variance = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 96
            let ms = row.map { $0 * $0 }.reduce(0, +) / 96
            for i in 0..<96 {
                ln.append(Float((row[i] - mean) / (variance + 1e-7).squareRoot()) * g.storage[i] + b.storage[i])
                rms.append(Float(row[i] / (ms + 1e-6).squareRoot()) * g.storage[i])
            }
        }
        assertClose(Kernels.layerNorm(x, gamma: g, beta: b, eps: 1e-7).storage, ln, tolerance: 2e-5, "layerNorm")
        assertClose(Kernels.rmsNorm(x, gamma: g, eps: 1e-6).storage, rms, tolerance: 2e-5, "rmsNorm")
    }

    func testSoftmaxWithAdditiveMaskAndFullyMaskedRows() {
        let x = random([20, 13], seed: 7, scale: 8)
        let mask: [Float] = (0..<13).map { $0 % 4 == 3 ? -Float.greatestFiniteMagnitude : 0 }
        var expected: [Float] = []
        for r in 0..<20 {
            let row = (0..<13).map { Double(x.storage[r * 13 + $0]) + (mask[$0] < 0 ? -1e30 : 0) }
            let m = row.max()!
            let e = row.map { exp($0 - m) }
            let s = e.reduce(0, +)
            expected += e.map { Float($0 / s) }
        }
        let y = Kernels.softmax(x, additiveMask: mask)
        assertClose(y.storage, expected, tolerance: 1e-6, "softmax")
        for r in 0..<20 { XCTAssertEqual(y[row: r].reduce(0, +), 1, accuracy: 1e-5) }
        let allMasked = Kernels.softmax(Tensor(shape: [1, 3], storage: [1, 2, 3]), additiveMask: [-.infinity, -.infinity, -.infinity])
        XCTAssertEqual(allMasked.storage, [0, 0, 0])
    }

    func testGELUFormsAndTanhAgainstDoublePrecision() {
        let x = random([33, 50], seed: 8, scale: 6)
        let erfForm = x.storage.map { v in Float(0.5 * Double(v) * (1 + erf(Double(v) / 2.0.squareRoot()))) }
        let tanhForm = x.storage.map { v -> Float in
            let d = Double(v)
            return Float(0.5 * d * (1 + Foundation.tanh((2 / Double.pi).squareRoot() * (d + 0.044715 * d * d * d))))
        }
        assertClose(Kernels.geluErf(x).storage, erfForm, tolerance: 2e-6, "gelu erf")
        assertClose(Kernels.geluTanh(x).storage, tanhForm, tolerance: 2e-6, "gelu tanh")
        assertClose(Kernels.tanh(x).storage, x.storage.map { Float(Foundation.tanh(Double($0))) }, tolerance: 1e-6, "tanh")
        // The two GELUs differ: T5 and DeBERTa must not be swapped.
        XCTAssertGreaterThan(zip(Kernels.geluErf(x).storage, Kernels.geluTanh(x).storage).map { abs($0 - $1) }.max()!, 1e-4)
    }

    func testGatherRowsIsEmbeddingLookup() {
        let table = random([10, 4], seed: 9)
        let g = Kernels.gatherRows(table, [3, 0, 3, 9])
        XCTAssertEqual(g.shape, [4, 4])
        XCTAssertEqual(Array(g[row: 0]), Array(table[row: 3]))
        XCTAssertEqual(Array(g[row: 2]), Array(table[row: 3]))
        XCTAssertEqual(Array(g[row: 3]), Array(table[row: 9]))
    }

    func testBatchedMatmulInEveryTransposeAgainstALoop() {
        let batch = 3, m = 5, k = 7, n = 4
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let a = random(ta ? [batch, k, m] : [batch, m, k], seed: 21)
            let b = random(tb ? [batch, n, k] : [batch, k, n], seed: 22)
            let c = Kernels.batchedMatmul(a, b, transposeA: ta, transposeB: tb)
            XCTAssertEqual(c.shape, [batch, m, n])
            var expected = [Float](repeating: 0, count: batch * m * n)
            for s in 0..<batch {
                for i in 0..<m {
                    for j in 0..<n {
                        var sum: Float = 0
                        for p in 0..<k {
                            let x = ta ? a.storage[s * k * m + p * m + i] : a.storage[s * m * k + i * k + p]
                            let y = tb ? b.storage[s * n * k + j * k + p] : b.storage[s * k * n + p * n + j]
                            sum += x * y
                        }
                        expected[s * m * n + i * n + j] = sum
                    }
                }
            }
            assertClose(c.storage, expected, tolerance: 1e-5, "batchedMatmul ta=\(ta) tb=\(tb)")
        }
    }

    func testStridedSGEMMReadsAndWritesColumnSlicesInPlace() {
        // A head slice: columns 4..<8 of a [6, 12] activation times columns 4..<8 of another, transposed,
        // accumulated into columns 2..<8 of a [6, 10] output (beta = 1 keeps what is there).
        let a = random([6, 12], seed: 31), b = random([6, 12], seed: 32)
        var c = random([6, 10], seed: 33)
        let before = c
        a.storage.withUnsafeBufferPointer { pa in
            b.storage.withUnsafeBufferPointer { pb in
                c.storage.withUnsafeMutableBufferPointer { pc in
                    Kernels.sgemm(transposeB: true, m: 6, n: 6, k: 4, a: pa.baseAddress! + 4, lda: 12,
                                  b: pb.baseAddress! + 4, ldb: 12, beta: 1, c: pc.baseAddress! + 2, ldc: 10)
                }
            }
        }
        for i in 0..<6 {
            for j in 0..<10 {
                var expected = before.storage[i * 10 + j]
                if j >= 2 && j < 8 {
                    for p in 0..<4 { expected += a.storage[i * 12 + 4 + p] * b.storage[(j - 2) * 12 + 4 + p] }
                }
                XCTAssertEqual(c.storage[i * 10 + j], expected, accuracy: 1e-5, "(\(i), \(j))")
            }
        }
    }

    func testScatterRowsInvertsGatherAndConcatJoinsColumns() {
        let table = random([6, 3], seed: 41)
        var target = Tensor(zeros: [6, 3])
        let rows = [4, 1, 5, 0, 2, 3]
        Kernels.scatterRows(Kernels.gatherRows(table, rows), into: &target, rows: rows)
        XCTAssertEqual(target, table)

        let left = random([2, 3], seed: 42), right = random([2, 2], seed: 43)
        let joined = Kernels.concatColumns([left, right])
        XCTAssertEqual(joined.shape, [2, 5])
        XCTAssertEqual(Array(joined[row: 1]), Array(left[row: 1]) + Array(right[row: 1]))

        var sum = random([33, 17], seed: 44)
        let addend = random([33, 17], seed: 45)
        let expected = zip(sum.storage, addend.storage).map { $0 + $1 }
        Kernels.addInPlace(&sum, addend)
        XCTAssertEqual(sum.storage, expected)
    }

    func testVectorExpTanhErfAgainstLibm() {
        var worstExp: Float = 0, worstTanh: Float = 0, worstErf: Float = 0
        var x: Float = -87
        while x < 88 {
            let lanes = VectorMath.V((0..<8).map { x + Float($0) * 0.0137 })
            let e = VectorMath.exp(lanes), t = VectorMath.tanh(lanes * 0.1), r = VectorMath.erf(lanes * 0.05)
            for k in 0..<8 {
                let v = lanes[k]
                worstExp = max(worstExp, abs(e[k] - expf(v)) / expf(v))
                worstTanh = max(worstTanh, abs(t[k] - tanhf(v * 0.1)))
                worstErf = max(worstErf, abs(r[k] - erff(v * 0.05)))
            }
            x += 0.0917
        }
        XCTAssertLessThanOrEqual(worstExp, 4e-7, "exp relative error")
        XCTAssertLessThanOrEqual(worstTanh, 3e-7, "tanh absolute error")
        XCTAssertLessThanOrEqual(worstErf, 5e-7, "erf absolute error")
        let special = VectorMath.exp(VectorMath.V(-.infinity, -100, -87.3, 0, 1, -1, 88, 0.5))
        XCTAssertEqual(special[0], 0)
        XCTAssertEqual(special[1], 0)
        XCTAssertEqual(special[3], 1)
        XCTAssertEqual(special[4], expf(1), accuracy: 1e-6)
    }

    func testBF16WeightMatrixMultipliesLikeItsFloat32Copy() {
        // Values rounded to bf16, as a bf16 checkpoint gives them.
        let w = Tensor(shape: [300, 96], storage: random([300, 96], seed: 51).storage.map { Float(bitPattern: $0.bitPattern & 0xFFFF_0000) })
        let matrix = WeightMatrix(w, compress: true)
        guard case .bf16 = matrix else { return XCTFail("a bf16-representable tensor is stored as bf16") }
        XCTAssertEqual(matrix.bytes, w.count * 2)
        for rows in [1, 3, 16, 17, 63, 64, 130] {  // the direct, panel and widen-once paths
            let x = random([rows, 96], seed: UInt64(60 + rows))
            assertClose(matrix.linear(x).storage, Kernels.linear(x, weight: w, bias: nil).storage, tolerance: 1e-5, "\(rows) rows")
        }
        XCTAssertEqual(matrix.gatherRows([5, 299, 0]), Kernels.gatherRows(w, [5, 299, 0]))
        // Anything that bf16 cannot hold exactly stays float32.
        guard case .f32 = WeightMatrix(random([4, 4], seed: 52), compress: true) else { return XCTFail("lossy compression") }
    }
}
