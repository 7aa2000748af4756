import BlendCore
import Foundation
import XCTest
@testable import Inference

/// The bf16 and int8 paths against reference loops, their row bit-exactness, and their measured agreement with
/// fp32 on the fixture models (the figures docs/operations.md quotes come from these tests' output).
final class ReducedPrecisionTests: XCTestCase {
    typealias Generator = BitExactnessTests.Generator

    func bf16(_ v: Float) -> Double { Double(Float(bitPattern: UInt32(WeightMatrix.roundToBF16(v)) << 16)) }

    func testBF16ProductsMatchTheReferenceLoopOnEveryKernel() {
        var g = Generator(state: 21)
        // 7 and 8 rows with k past 2 · 48 run the tiles that prefetch their weights ahead (up to 8 rows).
        for (m, n, k) in [(1, 16, 2), (5, 40, 37), (97, 130, 64), (7, 300, 256), (8, 130, 200)] {
            let w = Tensor(shape: [n, k], storage: g.floats(n * k)), x = Tensor(shape: [m, k], storage: g.floats(m * k))
            var words = [UInt32](repeating: 0, count: n * k)
            if case .bf16Pairs(_, _, let packed) = WeightMatrix(w, precision: .bf16, compressExact: false) { words = packed } else {
                // Without AVX512-BF16 the weight is held as rounded bf16 with float32 arithmetic; pack it for the portable loop.
                XCTAssertFalse(WeightMatrix.vectorBF16)
                guard case .bf16 = WeightMatrix(w, precision: .bf16, compressExact: false) else { return XCTFail("bf16 fallback is not bf16 storage") }
                continue
            }
            var portable = Tensor(zeros: [m, n])
            WeightMatrix.bf16Product(x, words: words, n: n, into: &portable, vector: false)
            var vector = Tensor(zeros: [m, n])
            WeightMatrix.bf16Product(x, words: words, n: n, into: &vector, vector: true)
            // The portable loop spells out the instruction's arithmetic: same bits (no subnormals in these inputs).
            XCTAssertEqual(vector.storage.map(\.bitPattern), portable.storage.map(\.bitPattern), "m=\(m) n=\(n) k=\(k)")
            for r in 0..<m {
                for j in 0..<n {
                    var sum = 0.0
                    for p in 0..<k { sum += bf16(x.storage[r * k + p]) * bf16(w.storage[j * k + p]) }
                    XCTAssertEqual(Double(vector.storage[r * n + j]), sum, accuracy: 1e-5 * Double(k), "(\(r), \(j))")
                }
            }
        }
    }

    func testInt8RowsAndPackedProductsMatchTheQuantizedLoopAndQuantizationStaysWithinHalfAStep() throws {
        var g = Generator(state: 22)
        for (m, n, k) in [(1, 70, 16), (3, 64, 40), (9, 100, 2048)] {
            let w = Tensor(shape: [n, k], storage: g.floats(n * k)), x = Tensor(shape: [m, k], storage: g.floats(m * k))
            let matrix = WeightMatrix(w, precision: .int8, compressExact: false)
            guard case .int8(let weights) = matrix else { return XCTFail("int8 weights are not int8") }
            for j in 0..<n {
                let top = (0..<k).map { abs(w.storage[j * k + $0]) }.max()!, scale = weights.scale(j)
                XCTAssertEqual(scale, top / 127, accuracy: 1e-7)
                for p in 0..<k { XCTAssertLessThanOrEqual(abs(Float(weights.value(j, p)) * scale - w.storage[j * k + p]), scale / 2 * 1.0001) }
            }
            // Decoder rows and packed sequences run the same integer product: the same bits.
            let rows = matrix.linearRows(x), packed = matrix.linear(x)
            XCTAssertEqual(rows.storage.map(\.bitPattern), packed.storage.map(\.bitPattern), "m=\(m) n=\(n) k=\(k)")
            for r in 0..<m {
                let (q, rowScale) = Int8GEMMTests.referenceRow(x[row: r])
                for j in 0..<n {
                    var sum = 0.0
                    for p in 0..<k { sum += Double(q[p]) * Double(weights.value(j, p)) }
                    sum *= Double(rowScale) * Double(weights.scale(j))
                    XCTAssertEqual(Double(rows.storage[r * n + j]), sum, accuracy: 1e-6 * abs(sum) + 1e-7, "(\(r), \(j)) m=\(m) n=\(n) k=\(k)")
                }
            }
        }
    }

    func testReducedRowsAreIdenticalForAnyRowCountAndPosition() {
        var g = Generator(state: 23)
        let (n, k) = (200, 96)
        let w = Tensor(shape: [n, k], storage: g.floats(n * k))
        for precision in [ModelPrecision.bf16, .int8] {
            let matrix = WeightMatrix(w, precision: precision, compressExact: false)
            let row = g.floats(k)
            let single = Tensor(shape: [1, k], storage: row)
            let expectedRows = matrix.linearRows(single).storage.map(\.bitPattern)
            for m in [2, 4, 5, 8, 9, 31, 100] {
                let at = g.int(0..<m)
                var x = g.floats(m * k)
                x.replaceSubrange((at * k)..<((at + 1) * k), with: row)
                let batch = Tensor(shape: [m, k], storage: x)
                XCTAssertEqual(matrix.linearRows(batch)[row: at].map(\.bitPattern), expectedRows, "\(precision) rows m=\(m) row \(at)")
            }
        }
    }

    // MARK: Agreement with fp32

    struct Agreement: CustomStringConvertible {
        var jobs = 0, sameOrder = 0, sameTop = 0
        var maxLogitDelta: Float = 0
        var description: String {
            String(format: "%d jobs: rank order %d/%d, top-1 %d/%d, max |Δ logit| %.2e", jobs, sameOrder, jobs, sameTop, jobs, maxLogitDelta)
        }
    }

    func rankAgreement(_ precision: ModelPrecision) throws -> Agreement {
        var g = Generator(state: 24)
        let directory = ReferenceFixtures.path("pairrm-tiny")
        let exact = PairRMParityTests.model
        let reduced = try PairRMModel(directory: directory, precision: precision)
        let planner = TokenBudgetPlanner(maxSequences: 8, maxTokens: 2048)
        let jobs = (0..<40).map { BitExactnessTests.randomJob(&g, id: "agree-\($0)") }
        let a = PairRMRanker(model: exact, planner: planner).rankNow(jobs).results
        let b = PairRMRanker(model: reduced, planner: planner).rankNow(jobs).results
        var agreement = Agreement()
        for (x, y) in zip(a, b) {
            let (p, q) = (try x.get(), try y.get())
            agreement.jobs += 1
            if p.ranks == q.ranks { agreement.sameOrder += 1 }
            if RankAggregation.topK(ranks: p.ranks, k: 1) == RankAggregation.topK(ranks: q.ranks, k: 1) { agreement.sameTop += 1 }
            for (u, v) in zip(try XCTUnwrap(p.comparisons).values, try XCTUnwrap(q.comparisons).values) {
                agreement.maxLogitDelta = max(agreement.maxLogitDelta, abs(u - v))
            }
        }
        return agreement
    }

    func testPairRMInBF16AndInt8AgreesWithFP32OnGeneratedJobs() throws {
        for precision in [ModelPrecision.bf16, .int8] {
            let agreement = try rankAgreement(precision)
            print("PairRM fixture \(precision) vs fp32 (\(WeightMatrix.vectorBF16 ? "AVX512-BF16" : "no AVX512-BF16")): \(agreement)")
            // The fixture's logits are O(1); a reduced model that lost the signal would be off by that much.
            XCTAssertLessThan(agreement.maxLogitDelta, 0.25, "\(precision)")
            XCTAssertGreaterThanOrEqual(agreement.sameTop * 10, agreement.jobs * 7, "\(precision): top-1 agreement \(agreement)")
        }
        XCTAssertTrue(try PairRMModel(directory: ReferenceFixtures.path("pairrm-tiny"), precision: .int8).label.hasSuffix("+int8"))
    }

    /// The fixture T5's crude random init makes it numerically chaotic (its fp32 drifts from fp64, see
    /// Tests/Fixtures/README.md), which says nothing about a trained model; so its matrices are scaled by
    /// `damping` into a well-conditioned model of the same shape, and that pair of models is compared.
    func dampedT5(precision: ModelPrecision, damping: Float = 0.35) throws -> T5Model {
        let directory = ReferenceFixtures.path("t5-tiny")
        let base = try WeightStore.open(directory: directory)
        let shapes = Dictionary(uniqueKeysWithValues: base.names.map { ($0, base.shape(of: $0)!) })
        let store = WeightStore.synthetic(shapes: shapes) { name, _ in
            let t = try! base.tensor(name)!
            let keep = name.contains("layer_norm") || name.contains("relative_attention_bias") || name == "shared.weight"
            return keep ? t : Tensor(shape: t.shape, storage: t.storage.map { $0 * damping })
        }
        return try T5Model(configuration: try T5Configuration.load(directory: directory), store: store, precision: precision)
    }

    func testGenFuserInBF16AndInt8AgreesWithFP32OnGeneratedPrompts() throws {
        var g = Generator(state: 25)
        let exactModel = try dampedT5(precision: .fp32)
        let prompts = (0..<24).map { _ in BitExactnessTests.randomPrompt(&g) }
        let settings = prompts.indices.map { GenerationSettings(maxNewTokens: 16, numBeams: [1, 4][$0 % 2]) }
        let reference = T5Generator(model: exactModel).generate(prompts, settings: settings)
        func firstStep(_ model: T5Model) -> Tensor {
            let sources = model.encodeSources(prompts)
            var rows = prompts.indices.map { model.makeRow(source: $0) }
            return model.decodeStep(&rows, tokens: Array(repeating: model.configuration.decoderStartId, count: rows.count), sources: sources)
        }
        let v = exactModel.configuration.vocabularySize
        let exactStep = firstStep(exactModel)
        for precision in [ModelPrecision.bf16, .int8] {
            let model = try dampedT5(precision: precision)
            let ours = T5Generator(model: model).generate(prompts, settings: settings)
            let identical = zip(reference, ours).filter { $0.tokens == $1.tokens }.count
            let step = firstStep(model)
            var sameFirst = 0
            var worst: Float = 0, spread: Float = 0
            for r in prompts.indices {
                let a = Array(exactStep[row: r]), b = Array(step[row: r])
                if DecodingJob.argmax(a) == DecodingJob.argmax(b) { sameFirst += 1 }
                worst = max(worst, zip(a, b).map { abs($0 - $1) }.max()!)
                spread = max(spread, a.max()! - a.min()!)
            }
            print("GenFuser fixture \(precision) vs fp32: identical outputs \(identical)/\(prompts.count), first token \(sameFirst)/\(prompts.count), "
                  + "max |Δ first-step logit| \(String(format: "%.2e", worst)) of a logit range \(String(format: "%.1f", spread)), "
                  + "weights \(model.weightBytes) bytes (fp32 run: \(exactModel.weightBytes))")
            // Measured: bf16 0.7 %, int8 3.7 % of the range (2.7 % with weight-only int8), first token 24/24; a broken kernel
            // is off by the whole range.
            XCTAssertLessThan(worst, spread * 0.1, "\(precision)")
            XCTAssertGreaterThanOrEqual(sameFirst * 10, prompts.count * 8, "\(precision): first token \(sameFirst)/\(prompts.count)")
            XCTAssertEqual(v, step.columns)
            if precision == .int8 { XCTAssertLessThan(model.weightBytes, exactModel.weightBytes) }
        }
    }
}
