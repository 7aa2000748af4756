import Foundation
import XCTest
@testable import Inference

/// The decoder's row kernels (`WeightMatrix.linearRows`) on generated shapes: the AVX-512 tiles give the AVX2 tiles'
/// bits for the float32 and bf16-held formats (int8: Int8GEMMTests), both agree with a double-precision reference loop, and a row's result does not depend
/// on how many rows share the call or where it sits; the AVX512-BF16 tiles of every row count against the portable loop
/// and the earlier 4-row tiles.
final class RowKernelTests: XCTestCase {
    typealias Generator = BitExactnessTests.Generator

    override func tearDown() {
        WeightMatrix.useAVX512RowKernels(true)
        super.tearDown()
    }

    /// A weight of `n` × `k` in each float row format: float32, bf16-held (exact bf16 values).
    func matrices(_ g: inout Generator, n: Int, k: Int) -> [(name: String, matrix: WeightMatrix, values: [Double])] {
        let raw = g.floats(n * k)
        var result: [(String, WeightMatrix, [Double])] = []
        let f32 = Tensor(shape: [n, k], storage: raw)
        result.append(("f32", WeightMatrix(f32, compress: false), raw.map(Double.init)))
        if k % 16 == 0 {
            let rounded = raw.map { Float(bitPattern: $0.bitPattern & 0xFFFF_0000) }
            let bf16 = WeightMatrix(Tensor(shape: [n, k], storage: rounded), compress: true)
            guard case .bf16 = bf16 else { XCTFail("bf16 values are held as bf16"); return result }
            result.append(("bf16", bf16, rounded.map(Double.init)))
        }
        return result
    }

    func testAVX512TilesGiveTheAVX2BitsAndMatchTheReferenceLoop() throws {
        var g = Generator(state: 41)
        for _ in 0..<40 {
            // Row counts across every tile height (8, 4, 2, 1 and their mixes), widths across strips of 8 and their
            // remainders, k a multiple of 16 (the f32 and bf16 kernels' unit).
            let m = g.int(1..<20), n = g.int(1..<140), k = 16 * g.int(1..<24)
            let x = Tensor(shape: [m, k], storage: g.floats(m * k))
            for (name, matrix, values) in matrices(&g, n: n, k: k) {
                WeightMatrix.useAVX512RowKernels(false)
                let avx2 = matrix.linearRows(x)
                let usingAVX512 = WeightMatrix.useAVX512RowKernels(true)
                let avx512 = matrix.linearRows(x)
                if usingAVX512 {
                    XCTAssertEqual(avx512.storage.map(\.bitPattern), avx2.storage.map(\.bitPattern), "\(name) m=\(m) n=\(n) k=\(k)")
                }
                for r in 0..<m {
                    for j in 0..<n {
                        var sum = 0.0
                        for p in 0..<k { sum += Double(x.storage[r * k + p]) * values[j * k + p] }
                        XCTAssertEqual(Double(avx512.storage[r * n + j]), sum, accuracy: 1e-5 * Double(k), "\(name) (\(r), \(j)) m=\(m) n=\(n) k=\(k)")
                    }
                }
            }
        }
        if !WeightMatrix.avx512RowKernels { throw XCTSkip("no AVX-512 here: only the AVX2 tiles were checked against the loop") }
    }

    func testARowsResultDoesNotDependOnTheOtherRowsOrItsPosition() {
        var g = Generator(state: 42)
        for (n, k) in [(70, 64), (129, 48), (24, 2048)] {
            for (name, matrix, _) in matrices(&g, n: n, k: k) {
                let row = g.floats(k)
                let expected = matrix.linearRows(Tensor(shape: [1, k], storage: row)).storage.map(\.bitPattern)
                for m in [2, 3, 7, 8, 9, 12, 16, 17, 33] {
                    let at = g.int(0..<m)
                    var x = g.floats(m * k)
                    x.replaceSubrange((at * k)..<((at + 1) * k), with: row)
                    XCTAssertEqual(matrix.linearRows(Tensor(shape: [m, k], storage: x))[row: at].map(\.bitPattern), expected,
                                   "\(name) n=\(n) k=\(k) m=\(m) row \(at)")
                }
            }
        }
    }

    func testBF16PairTilesOfEveryRowCountMatchThePortableLoop() throws {
        guard WeightMatrix.vectorBF16 else { throw XCTSkip("no AVX512-BF16 here") }
        var g = Generator(state: 43)
        for _ in 0..<25 {
            // Full 64-column panels (8 × 32 halves, 4 × 64, 2 × 64, 1 × 64 tiles) and partial ones.
            let m = g.int(1..<21), n = [64, 128, 192, 80, g.int(1..<200)][g.int(0..<5)], k = g.int(1..<160)
            let w = Tensor(shape: [n, k], storage: g.floats(n * k)), x = Tensor(shape: [m, k], storage: g.floats(m * k))
            guard case .bf16Pairs(_, _, let words) = WeightMatrix(w, precision: .bf16, compressExact: false) else {
                return XCTFail("bf16 weights on AVX512-BF16 are packed pairs")
            }
            var portable = Tensor(zeros: [m, n]), vector = Tensor(zeros: [m, n]), earlier = Tensor(zeros: [m, n])
            WeightMatrix.bf16Product(x, words: words, n: n, into: &portable, vector: false)
            WeightMatrix.useAVX512RowKernels(false)
            WeightMatrix.bf16Product(x, words: words, n: n, into: &earlier, vector: true)
            WeightMatrix.useAVX512RowKernels(true)
            WeightMatrix.bf16Product(x, words: words, n: n, into: &vector, vector: true)
            XCTAssertEqual(vector.storage.map(\.bitPattern), portable.storage.map(\.bitPattern), "m=\(m) n=\(n) k=\(k)")
            XCTAssertEqual(vector.storage.map(\.bitPattern), earlier.storage.map(\.bitPattern), "earlier tiles m=\(m) n=\(n) k=\(k)")
        }
    }
}
