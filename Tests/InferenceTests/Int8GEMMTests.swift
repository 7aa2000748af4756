import Foundation
import XCTest
@testable import Inference

/// The int8 × int8 products (`Int8Weights`, `bk_i8_gemm`) against scalar reference loops on generated shapes: the
/// quantized activations and weights, the int32 sums (exactly) and the float outputs (bit for bit) on every path the
/// CPU runs; and a GenFuser in int8 that decodes a job the same alone as with other jobs.
final class Int8GEMMTests: XCTestCase {
    typealias Generator = BitExactnessTests.Generator

    override func tearDown() {
        Int8Weights.usePath(nil)
        super.tearDown()
    }

    /// The quantization the kernels are specified to do, in Swift: q = round-half-even(v · 127 / max|v|) in ±127.
    static func referenceRow(_ x: ArraySlice<Float>) -> (values: [Int32], scale: Float) {
        let top = x.reduce(Float(0)) { max($0, abs($1)) }
        let inverse: Float = top > 0 ? 127 / top : 0
        return (x.map { Int32(min(127, max(-127, ($0 * inverse).rounded(.toNearestOrEven)))) }, top / 127)
    }

    /// Weights: per output row, scale = max|w| / 127 and q = round-half-even(w / scale) (`bk_int8_quantize`).
    static func referenceWeights(_ w: Tensor) -> (values: [Int32], scales: [Float]) {
        let n = w.shape[0]
        var values = [Int32](), scales = [Float]()
        for j in 0..<n {
            let row = w[row: j], top = row.reduce(Float(0)) { max($0, abs($1)) }
            let s: Float = top > 0 ? top / 127 : 1
            scales.append(s)
            values += row.map { Int32(min(127, max(-127, ($0 / s).rounded(.toNearestOrEven)))) }
        }
        return (values, scales)
    }

    /// Activations with the edge cases mixed in: an all-zero row, a row with one huge value, rows of tiny values.
    func activations(_ g: inout Generator, m: Int, k: Int) -> Tensor {
        var x = g.floats(m * k)
        for r in 0..<m {
            switch g.int(0..<6) {
            case 0: for i in 0..<k { x[r * k + i] = 0 }
            case 1: x[r * k + g.int(0..<k)] = 1e6
            case 2: for i in 0..<k { x[r * k + i] *= 1e-7 }
            default: break
            }
        }
        return Tensor(shape: [m, k], storage: x)
    }

    func testSumsAreExactAndOutputsIdenticalOnEveryPathForGeneratedShapes() throws {
        var g = Generator(state: 81)
        let paths = Int8Weights.Path.allCases.filter { $0.rawValue <= Int8Weights.bestPath.rawValue }
        // Fixed edges (1 row, k of 1 and odd, n below a tile), the decoder's widths, where tiles of up to 8 rows prefetch
        // their weights ahead (k past 4 · 48), and random shapes across the 1–8-row and many-row kernels.
        var shapes = [(1, 1, 1), (1, 3, 17), (2, 5, 16), (8, 63, 49), (9, 65, 64), (7, 130, 200), (6, 64, 48), (13, 257, 97),
                      (8, 768, 200), (7, 301, 130), (1, 768, 70)]
        for _ in 0..<30 { shapes.append((g.int(1..<40), g.int(1..<300), g.int(1..<260))) }
        shapes.append((120, 100, 300))
        for (m, k, n) in shapes {
            var wValues = g.floats(n * k)
            if n > 2 { for i in 0..<k { wValues[k + i] = 0 } }  // an all-zero weight row
            let w = Tensor(shape: [n, k], storage: wValues), x = activations(&g, m: m, k: k)
            let weights = Int8Weights(w)
            let (wq, ws) = Self.referenceWeights(w)
            for j in 0..<n {
                XCTAssertEqual(weights.scale(j).bitPattern, ws[j].bitPattern, "scale \(j) m=\(m) k=\(k) n=\(n)")
                for i in 0..<k where Int32(weights.value(j, i)) != wq[j * k + i] {
                    return XCTFail("weight (\(j), \(i)) packed as \(weights.value(j, i)), expected \(wq[j * k + i]) (k=\(k) n=\(n))")
                }
            }
            let (bytes, rowScales) = Int8Weights.quantizeRows(x)
            let k4 = (k + 3) / 4 * 4
            var xq = [Int32]()
            for r in 0..<m {
                let (values, scale) = Self.referenceRow(x[row: r])
                XCTAssertEqual(rowScales[r].bitPattern, scale.bitPattern, "row scale \(r) m=\(m) k=\(k)")
                XCTAssertEqual(bytes[(r * k4)..<(r * k4 + k)].map { Int32($0) - 128 }, values, "quantized row \(r) m=\(m) k=\(k)")
                XCTAssertTrue(bytes[(r * k4 + k)..<((r + 1) * k4)].allSatisfy { $0 == 128 }, "row padding m=\(m) k=\(k)")
                xq += values
            }
            var expectedSums = [Int32](repeating: 0, count: m * n), expected = [UInt32](repeating: 0, count: m * n)
            for r in 0..<m {
                for j in 0..<n {
                    var sum: Int64 = 0
                    for i in 0..<k { sum += Int64(xq[r * k + i]) * Int64(wq[j * k + i]) }
                    expectedSums[r * n + j] = Int32(sum)
                    expected[r * n + j] = (Float(Int32(sum)) * (rowScales[r] * ws[j])).bitPattern
                }
            }
            for path in paths {
                XCTAssertEqual(Int8Weights.usePath(path), path)
                XCTAssertEqual(weights.sums(bytes, rowScales, m: m), expectedSums, "\(path) sums m=\(m) k=\(k) n=\(n)")
                XCTAssertEqual(weights.product(x).storage.map(\.bitPattern), expected, "\(path) outputs m=\(m) k=\(k) n=\(n)")
            }
        }
        if paths.count < Int8Weights.Path.allCases.count { throw XCTSkip("this CPU runs \(paths.last!) at best: the faster paths were not checked") }
    }

    func testProductsStayWithinTheQuantizationErrorOfFloat32() {
        var g = Generator(state: 82)
        for (m, k, n) in [(1, 768, 64), (8, 2048, 40), (33, 100, 70)] {
            let w = Tensor(shape: [n, k], storage: g.floats(n * k)), x = Tensor(shape: [m, k], storage: g.floats(m * k))
            let y = WeightMatrix(w, precision: .int8, compressExact: false).linear(x)
            for r in 0..<m {
                for j in 0..<n {
                    var exact = 0.0, magnitude = 0.0
                    for i in 0..<k {
                        exact += Double(x.storage[r * k + i]) * Double(w.storage[j * k + i])
                        magnitude += abs(Double(x.storage[r * k + i]) * Double(w.storage[j * k + i]))
                    }
                    // Each factor is off by at most half a step of 1/127 of its row's range (values here are within ±1).
                    XCTAssertEqual(Double(y.storage[r * n + j]), exact, accuracy: Double(k) / 127 + 1e-3 * magnitude, "(\(r), \(j)) m=\(m) k=\(k)")
                }
            }
        }
    }

    func testAnInt8GenFuserDecodesAJobTheSameAloneAndAmongOtherJobs() throws {
        var g = Generator(state: 83)
        let model = try T5Model(directory: ReferenceFixtures.path("t5-tiny"), precision: .int8)
        let d = model.configuration.modelSize, v = model.configuration.vocabularySize
        let generator = T5Generator(model: model)
        let prompts = (0..<5).map { _ in BitExactnessTests.randomPrompt(&g) }
        let settings = prompts.indices.map { GenerationSettings(maxNewTokens: 10, numBeams: [1, 4, 2][$0 % 3]) }
        let aloneStates = prompts.map { model.encode([$0]).hidden.storage[0..<($0.count * d)].map(\.bitPattern) }
        let aloneSteps = prompts.map { prompt -> [UInt32] in
            let sources = model.encodeSources([prompt])
            var rows = [model.makeRow(source: 0)]
            return model.decodeStep(&rows, tokens: [model.configuration.decoderStartId], sources: sources).storage.map(\.bitPattern)
        }
        let alone = prompts.indices.map { generator.generate([prompts[$0]], settings: [settings[$0]])[0] }
        for round in 0..<2 {
            let others = (0..<g.int(1..<5)).map { _ in BitExactnessTests.randomPrompt(&g) }
            let mixed = g.shuffle(prompts.indices.map { ($0, prompts[$0]) } + others.map { (-1, $0) })
            let (hidden, offsets) = model.encode(mixed.map(\.1))
            let sources = model.encodeSources(mixed.map(\.1))
            var rows = mixed.indices.map { model.makeRow(source: $0) }
            let step = model.decodeStep(&rows, tokens: Array(repeating: model.configuration.decoderStartId, count: rows.count), sources: sources)
            let generated = generator.generate(mixed.map(\.1), settings: mixed.map { $0.0 >= 0 ? settings[$0.0] : GenerationSettings(maxNewTokens: 7, numBeams: 3) })
            for (slot, (index, prompt)) in mixed.enumerated() where index >= 0 {
                XCTAssertEqual(hidden.storage[(offsets[slot] * d)..<((offsets[slot] + prompt.count) * d)].map(\.bitPattern), aloneStates[index],
                               "round \(round): encoder states of prompt \(index)")
                XCTAssertEqual(step.storage[(slot * v)..<((slot + 1) * v)].map(\.bitPattern), aloneSteps[index], "round \(round): first-step logits of prompt \(index)")
                XCTAssertEqual(generated[slot].tokens, alone[index].tokens, "round \(round): fused ids of prompt \(index)")
                XCTAssertEqual(generated[slot].score?.bitPattern, alone[index].score?.bitPattern, "round \(round): beam score of prompt \(index)")
            }
        }
    }
}
