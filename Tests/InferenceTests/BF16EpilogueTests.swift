import CKernels
import Foundation
import XCTest
@testable import Inference

/// The bf16 encoder's row operations (`bk_gelu_erf`, `bk_bf16_finish`, `bk_layer_norm_rows`) and its fused products
/// (`bf16Linear`, `bf16LinearGELU`) against reference loops that repeat their float32 operations in the same order.
final class BF16EpilogueTests: XCTestCase {
    typealias Generator = BitExactnessTests.Generator

    override func setUpWithError() throws {
        guard WeightMatrix.vectorBF16 else { throw XCTSkip("no AVX512-BF16 here: the bf16 encoder runs its float32 layers") }
    }

    /// bf16 bits as the kernels round (vcvtne2ps2bf16: nearest even, subnormals to zero).
    func bf16Bits(_ v: Float) -> UInt16 { abs(v) < Float.leastNormalMagnitude ? (v.sign == .minus ? 0x8000 : 0) : WeightMatrix.roundToBF16(v) }

    /// VectorMath's GELU of one value (its lanes are independent).
    func gelu(_ v: Float) -> Float { VectorMath.geluErf(VectorMath.V(repeating: v))[0] }

    func testGELUHasTheBitsOfVectorMath() {
        var g = Generator(state: 61)
        let x = (0..<5000).map { _ in g.float() * 12 } + [0, -0.0, 1e-30, -1e-30, 5.5, -5.5, 40, -40, 100, -100]
        var y = [Float](repeating: .nan, count: x.count)
        x.withUnsafeBufferPointer { px in y.withUnsafeMutableBufferPointer { bk_gelu_erf(px.baseAddress!, $0.baseAddress!, Int32(x.count)) } }
        XCTAssertEqual(y.map(\.bitPattern), Kernels.geluErf(Tensor(shape: [x.count], storage: x)).storage.map(\.bitPattern))
        for (v, e) in zip(x, y) where abs(v) < 8 {
            XCTAssertEqual(Double(e), 0.5 * Double(v) * (1 + Foundation.erf(Double(v) / 2.0.squareRoot())), accuracy: 1e-6, "gelu(\(v))")
        }
    }

    func testFinishAddsBiasResidualAndGELUAndRoundsAsTheReferenceLoop() {
        var g = Generator(state: 62)
        for (m, n) in [(1, 1), (3, 16), (5, 33), (7, 64), (2, 255), (9, 300)] {
            let ldc = n + g.int(0..<4), ldr = n + g.int(0..<4), ldp = (n + 1) / 2 + 1
            let c = g.floats(m * ldc).map { $0 * 3 }, bias = g.floats(n), residual = g.floats(m * ldr)
            for (withResidual, withGELU, toPairs) in [(false, false, false), (true, false, false), (false, true, true), (true, true, false), (false, false, true)] {
                var out = c
                var pairs = [UInt32](repeating: 0xDEAD_BEEF, count: m * ldp)
                out.withUnsafeMutableBufferPointer { po in
                    residual.withUnsafeBufferPointer { pr in
                        pairs.withUnsafeMutableBufferPointer { pp in
                            bk_bf16_finish(po.baseAddress!, Int32(m), Int32(n), Int32(ldc), bias, withResidual ? pr.baseAddress! : nil, Int32(ldr),
                                           withGELU ? 1 : 0, toPairs ? pp.baseAddress! : nil, Int32(ldp))
                        }
                    }
                }
                let label = "m=\(m) n=\(n) residual \(withResidual) gelu \(withGELU) pairs \(toPairs)"
                for r in 0..<m {
                    for j in 0..<ldc where j >= n || toPairs {
                        XCTAssertEqual(out[r * ldc + j].bitPattern, c[r * ldc + j].bitPattern, "\(label): (\(r), \(j)) changed")
                    }
                    var expected: [Float] = []
                    for j in 0..<n {
                        var v = c[r * ldc + j] + bias[j]
                        if withResidual { v = v + residual[r * ldr + j] }
                        if withGELU { v = gelu(v) }
                        expected.append(v)
                    }
                    if toPairs {
                        for p in 0..<((n + 1) / 2) {
                            let low = bf16Bits(expected[2 * p]), high = 2 * p + 1 < n ? bf16Bits(expected[2 * p + 1]) : 0
                            XCTAssertEqual(pairs[r * ldp + p], UInt32(low) | UInt32(high) << 16, "\(label): pair (\(r), \(p))")
                        }
                        XCTAssertEqual(pairs[r * ldp + ldp - 1], 0xDEAD_BEEF, "\(label): stray write in row \(r)")
                    } else {
                        XCTAssertEqual(out[(r * ldc)..<(r * ldc + n)].map(\.bitPattern), expected.map(\.bitPattern), "\(label): row \(r)")
                    }
                }
            }
        }
    }

    /// The kernel's documented order: 16 lane sums over the columns ≡ l (mod 16), added pairwise.
    func laneSum(_ values: [Float]) -> Float {
        var lanes = [Float](repeating: 0, count: 16)
        for (j, v) in values.enumerated() { lanes[j % 16] += v }
        for width in [8, 4, 2, 1] { for l in 0..<width { lanes[l] = lanes[l] + lanes[l + width] } }
        return lanes[0]
    }

    func testLayerNormRowsMatchTheReferenceLoop() {
        var g = Generator(state: 63)
        for (m, n) in [(1, 1), (2, 15), (4, 16), (3, 47), (5, 128), (2, 1024)] {
            let ldx = n + g.int(0..<3), ldp = (n + 1) / 2 + 1
            let x = g.floats(m * ldx).map { $0 * 5 + 1 }, gamma = g.floats(n), beta = g.floats(n)
            var out = x
            var pairs = [UInt32](repeating: 0xDEAD_BEEF, count: m * ldp)
            out.withUnsafeMutableBufferPointer { po in
                pairs.withUnsafeMutableBufferPointer { bk_layer_norm_rows(po.baseAddress!, Int32(m), Int32(n), Int32(ldx), gamma, beta, 1e-7, $0.baseAddress!, Int32(ldp)) }
            }
            for r in 0..<m {
                let row = Array(x[(r * ldx)..<(r * ldx + n)])
                let mean = laneSum(row) / Float(n)
                let inverse = 1 / (laneSum(row.map { ($0 - mean) * ($0 - mean) }) / Float(n) + 1e-7).squareRoot()
                let expected = (0..<n).map { ((row[$0] - mean) * inverse) * gamma[$0] + beta[$0] }
                XCTAssertEqual(out[(r * ldx)..<(r * ldx + n)].map(\.bitPattern), expected.map(\.bitPattern), "m=\(m) n=\(n) row \(r)")
                XCTAssertEqual(out[(r * ldx + n)..<((r + 1) * ldx)].map(\.bitPattern), x[(r * ldx + n)..<((r + 1) * ldx)].map(\.bitPattern))
                for p in 0..<((n + 1) / 2) {
                    let low = bf16Bits(expected[2 * p]), high = 2 * p + 1 < n ? bf16Bits(expected[2 * p + 1]) : 0
                    XCTAssertEqual(pairs[r * ldp + p], UInt32(low) | UInt32(high) << 16, "m=\(m) n=\(n) pair (\(r), \(p))")
                }
                XCTAssertEqual(pairs[r * ldp + ldp - 1], 0xDEAD_BEEF, "stray write in row \(r)")
            }
        }
    }

    func testFusedProductsAreTheProductFollowedByTheRowOperations() {
        var g = Generator(state: 64)
        defer { NumericsThreading.configure(threads: 0) }
        for (m, n, k) in [(1, 16, 2), (5, 40, 37), (97, 300, 64), (200, 513, 96)] {
            let w = WeightMatrix(Tensor(shape: [n, k], storage: g.floats(n * k)), precision: .bf16, compressExact: false)
            guard case .bf16Pairs(_, _, let words) = w else { return XCTFail("bf16 weights are not bf16 pairs") }
            let x = Tensor(shape: [m, k], storage: g.floats(m * k)), bias = g.floats(n)
            let residual = Tensor(shape: [m, n], storage: g.floats(m * n))
            var product = Tensor(zeros: [m, n])
            WeightMatrix.bf16Product(x, words: words, n: n, into: &product, vector: true)
            var rows = BF16Rows(rows: m, columns: k)
            rows.round(x)
            for threads in [1, 0] {
                NumericsThreading.configure(threads: threads)
                var y = Tensor(zeros: [m, n])
                w.bf16Linear(rows, bias: bias, residual: residual, into: &y)
                let expected = (0..<(m * n)).map { (product.storage[$0] + bias[$0 % n]) + residual.storage[$0] }
                XCTAssertEqual(y.storage.map(\.bitPattern), expected.map(\.bitPattern), "bf16Linear m=\(m) n=\(n) k=\(k) threads \(threads)")
                var inner = BF16Rows(rows: m, columns: n)
                w.bf16LinearGELU(rows, bias: bias, into: &inner)
                var reference = BF16Rows(rows: m, columns: n)
                reference.round(Tensor(shape: [m, n], storage: (0..<(m * n)).map { gelu(product.storage[$0] + bias[$0 % n]) }))
                XCTAssertEqual(inner.words, reference.words, "bf16LinearGELU m=\(m) n=\(n) k=\(k) threads \(threads)")
            }
        }
    }
}
