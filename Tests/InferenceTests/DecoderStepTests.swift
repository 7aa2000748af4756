import CKernels
import Foundation
import XCTest
@testable import Inference

/// The decoder step on `WorkerTeam` (phases of column blocks and attention items) against the reference step, the
/// product-by-product composition of `linearRows`, `Kernels.rmsNorm` and a plain attention loop that decoding ran
/// before: the same bits for every logit and cache value, on generated T5 shapes in every weight format, for 1–9
/// rows and 1–3 workers.
final class DecoderStepTests: XCTestCase {
    typealias Generator = BitExactnessTests.Generator

    override func tearDown() {
        NumericsThreading.configure(threads: 0)
        super.tearDown()
    }

    /// A T5 of generated shape: widths that are and are not multiples of 16 and 64, 1–3 layers, tied or not.
    static func randomModel(_ g: inout Generator, precision: ModelPrecision, bf16Values: Bool) throws -> T5Model {
        let heads = g.int(1..<5), headSize = [4, 8, 12, 16][g.int(0..<4)]
        let d = [16, 32, 48, 80, 24, 40][g.int(0..<6)], ff = [16, 40, 64, 72, 100, 130][g.int(0..<6)]
        let layers = g.int(1..<4), vocabulary = g.int(20..<300)
        let config = T5Configuration(vocabularySize: vocabulary, modelSize: d, headSize: headSize, feedForwardSize: ff,
                                     encoderLayers: layers, decoderLayers: layers, heads: heads, relativeBuckets: 8,
                                     relativeMaxDistance: 20, layerNormEps: 1e-6, gatedGELU: true,
                                     tiedEmbeddings: g.int(0..<2) == 0, decoderStartId: 0, eosId: 1, padId: 0)
        let inner = config.innerSize
        var shapes: [String: [Int]] = ["shared.weight": [vocabulary, d], "encoder.final_layer_norm.weight": [d],
                                       "decoder.final_layer_norm.weight": [d]]
        if !config.tiedEmbeddings { shapes["lm_head.weight"] = [vocabulary, d] }
        for stack in ["encoder", "decoder"] {
            shapes["\(stack).block.0.layer.0.SelfAttention.relative_attention_bias.weight"] = [8, heads]
            for l in 0..<layers {
                let p = "\(stack).block.\(l).layer."
                var attentions = [p + "0.SelfAttention."], last = 1
                if stack == "decoder" {
                    attentions.append(p + "1.EncDecAttention.")
                    last = 2
                }
                for a in attentions {
                    for name in ["q", "k", "v"] { shapes[a + name + ".weight"] = [inner, d] }
                    shapes[a + "o.weight"] = [d, inner]
                }
                for norm in 0...last { shapes[p + "\(norm).layer_norm.weight"] = [d] }
                shapes[p + "\(last).DenseReluDense.wi_0.weight"] = [ff, d]
                shapes[p + "\(last).DenseReluDense.wi_1.weight"] = [ff, d]
                shapes[p + "\(last).DenseReluDense.wo.weight"] = [d, ff]
            }
        }
        var tensors: [String: Tensor] = [:]
        for (name, shape) in shapes.sorted(by: { $0.key < $1.key }) {
            let norm = name.hasSuffix("layer_norm.weight")
            let values = g.floats(shape.reduce(1, *)).map { v -> Float in
                let value = norm ? 1 + 0.3 * v : 0.3 * v
                return bf16Values ? Float(bitPattern: value.bitPattern & 0xFFFF_0000) : value
            }
            tensors[name] = Tensor(shape: shape, storage: values)
        }
        let made = tensors
        let store = WeightStore.synthetic(shapes: shapes) { name, _ in made[name]! }
        return try T5Model(configuration: config, store: store, precision: precision)
    }

    /// The step as decoding computed it before the team: one `linearRows` product at a time.
    static func referenceStep(_ model: T5Model, _ rows: inout [T5Model.DecoderRow], tokens: [Int],
                              sources: [T5Model.EncodedSource]) -> Tensor {
        let c = model.configuration, inner = c.innerSize, ff = c.feedForwardSize, eps = c.layerNormEps
        var x = model.shared.gatherRows(tokens)
        func attention(_ queries: Tensor, stride: Int, _ memory: (Int) -> ([Float], [Float]), causal: Bool) -> Tensor {
            var context = Tensor(zeros: [rows.count, inner])
            for r in 0..<rows.count {
                let (keys, values) = memory(r), length = keys.count / inner
                for head in 0..<c.heads {
                    var scores = [Float](repeating: 0, count: length)
                    queries.storage.withUnsafeBufferPointer { pq in
                        keys.withUnsafeBufferPointer { pk in
                            for j in 0..<length {
                                scores[j] = SIMDMath.dot(pq.baseAddress! + r * stride + head * c.headSize,
                                                         pk.baseAddress! + j * inner + head * c.headSize, count: c.headSize)
                            }
                        }
                    }
                    if causal {
                        for j in 0..<length { scores[j] += model.decoderBias.storage[c.bucket(j - (length - 1), bidirectional: false) * c.heads + head] }
                    }
                    scores.withUnsafeMutableBufferPointer { SIMDMath.softmaxInPlace($0.baseAddress!, count: length) }
                    context.storage.withUnsafeMutableBufferPointer { po in
                        values.withUnsafeBufferPointer { pv in
                            for j in 0..<length {
                                SIMDMath.axpy(scores[j], pv.baseAddress! + j * inner + head * c.headSize,
                                              into: po.baseAddress! + r * inner + head * c.headSize, count: c.headSize)
                            }
                        }
                    }
                }
            }
            return context
        }
        for (l, block) in model.decoderBlocks.enumerated() {
            let qkv = block.selfAttention.query.linearRows(Kernels.rmsNorm(x, gamma: block.selfAttentionNorm, eps: eps))
            for r in rows.indices {
                let keyStart: Int = r * 3 * inner + inner, valueStart: Int = keyStart + inner
                rows[r].keys[l].append(contentsOf: qkv.storage[keyStart..<valueStart])
                rows[r].values[l].append(contentsOf: qkv.storage[valueStart..<(valueStart + inner)])
            }
            let selfContext = attention(qkv, stride: 3 * inner, { [rows] r in (rows[r].keys[l], rows[r].values[l]) }, causal: true)
            Kernels.addInPlace(&x, block.selfAttention.output.linearRows(selfContext))
            let q = block.crossAttention.query.linearRows(Kernels.rmsNorm(x, gamma: block.crossAttentionNorm, eps: eps))
            let crossContext = attention(q, stride: inner, { [rows] r in (sources[rows[r].source].keys[l], sources[rows[r].source].values[l]) },
                                         causal: false)
            Kernels.addInPlace(&x, block.crossAttention.output.linearRows(crossContext))
            let both = block.feedForwardIn.linearRows(Kernels.rmsNorm(x, gamma: block.feedForwardNorm, eps: eps))
            var gated = Tensor(zeros: [rows.count, ff])
            for r in rows.indices {
                var out = Array(both.storage[(r * 2 * ff)..<(r * 2 * ff + ff)])
                out.withUnsafeMutableBufferPointer { VectorMath.apply($0.baseAddress!, count: ff, VectorMath.geluTanh) }
                for i in 0..<ff { gated.storage[r * ff + i] = out[i] * both.storage[r * 2 * ff + ff + i] }
            }
            Kernels.addInPlace(&x, block.feedForwardOut.linearRows(gated))
        }
        for r in rows.indices { rows[r].length += 1 }
        return model.outputLayer.linearRows(Kernels.rmsNorm(x, gamma: model.decoderFinalNorm, eps: eps))
    }

    func testTeamStepGivesTheReferenceBitsInEveryFormatRowCountAndWorkerCount() throws {
        var g = Generator(state: 77)
        let formats: [(name: String, precision: ModelPrecision, bf16Values: Bool)] = [
            ("fp32", .fp32, false), ("fp32 bf16-held", .fp32, true), ("bf16", .bf16, false), ("int8", .int8, false),
        ]
        for trial in 0..<12 {
            let format = formats[trial % formats.count]
            let model = try Self.randomModel(&g, precision: format.precision, bf16Values: format.bf16Values)
            let c = model.configuration
            let prompts = (0..<g.int(1..<4)).map { _ in (0..<g.int(1..<30)).map { _ in g.int(2..<c.vocabularySize) } }
            let sources = model.encodeSources(prompts)
            let m = [1, 2, 3, 5, 8, 9][trial % 6]
            var reference = (0..<m).map { _ in model.makeRow(source: g.int(0..<prompts.count)) }
            var teams = Array(repeating: reference, count: 3)
            let shape = "\(format.name) d=\(c.modelSize) heads=\(c.heads)×\(c.headSize) ff=\(c.feedForwardSize) vocab=\(c.vocabularySize) layers=\(c.decoderLayers) rows=\(m)"
            for step in 0..<4 {
                let tokens = (0..<m).map { _ in g.int(0..<c.vocabularySize) }
                NumericsThreading.configure(threads: 1)
                let expected = Self.referenceStep(model, &reference, tokens: tokens, sources: sources)
                for workers in 1...3 {
                    NumericsThreading.configure(threads: workers)
                    let logits = model.decodeStep(&teams[workers - 1], tokens: tokens, sources: sources)
                    XCTAssertEqual(logits.shape, expected.shape, shape)
                    XCTAssertEqual(logits.storage.map(\.bitPattern), expected.storage.map(\.bitPattern), "\(shape) step \(step) workers \(workers)")
                    for r in 0..<m {
                        XCTAssertEqual(teams[workers - 1][r].length, reference[r].length, shape)
                        XCTAssertEqual(teams[workers - 1][r].keys.map { $0.map(\.bitPattern) }, reference[r].keys.map { $0.map(\.bitPattern) },
                                       "\(shape) keys of row \(r) step \(step) workers \(workers)")
                        XCTAssertEqual(teams[workers - 1][r].values.map { $0.map(\.bitPattern) }, reference[r].values.map { $0.map(\.bitPattern) },
                                       "\(shape) values of row \(r) step \(step) workers \(workers)")
                    }
                }
            }
        }
    }

    func testEveryChunkOfEveryPhaseRunsOnceAfterThePreviousPhaseEnded() {
        var g = Generator(state: 5)
        for workers in 1...4 {
            let team = WorkerTeam(size: workers)
            for _ in 0..<20 {
                let counts = (0..<g.int(1..<300)).map { _ in g.int(0..<40) }
                let total = counts.reduce(0, +)
                let runs = UnsafeMutablePointer<Int32>.allocate(capacity: max(1, total))
                runs.initialize(repeating: 0, count: max(1, total))
                defer { runs.deallocate() }
                let starts = counts.indices.map { counts[..<$0].reduce(0, +) }
                let violations = UnsafeMutablePointer<Int32>.allocate(capacity: 1)
                violations.initialize(to: 0)
                defer { violations.deallocate() }
                let prepared = UnsafeMutablePointer<Int32>.allocate(capacity: workers * counts.count)
                prepared.initialize(repeating: 0, count: workers * counts.count)
                defer { prepared.deallocate() }
                team.run(phases: counts.count) { phases in
                    for (p, count) in counts.enumerated() {
                        let worker = phases.worker
                        phases.phase(count, prepare: { prepared[worker * counts.count + p] += 1 }) { chunk in
                            // Every chunk of the phase before has run by now.
                            if p > 0 {
                                for i in 0..<counts[p - 1] where bk_atomic_load(runs + starts[p - 1] + i) != 1 {
                                    _ = bk_atomic_fetch_add(violations, 1)
                                }
                            }
                            if prepared[worker * counts.count + p] != 1 { _ = bk_atomic_fetch_add(violations, 1) }
                            _ = bk_atomic_fetch_add(runs + starts[p] + chunk, 1)
                        }
                    }
                }
                XCTAssertEqual(violations.pointee, 0, "workers \(workers)")
                XCTAssertEqual((0..<total).map { runs[$0] }, Array(repeating: 1, count: total), "workers \(workers): each chunk once")
                for p in counts.indices {
                    let preparations = (0..<workers).map { prepared[$0 * counts.count + p] }
                    XCTAssertTrue(preparations.allSatisfy { $0 <= 1 }, "a worker prepares a phase at most once")
                    if counts[p] > 0 { XCTAssertGreaterThanOrEqual(preparations.reduce(0, +), 1, "a phase with chunks was prepared") }
                }
            }
        }
    }
}
