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
    /// The weight formats the step tests cycle through, trial by trial.
    static let formats: [(name: String, precision: ModelPrecision, bf16Values: Bool)] = [
        ("fp32", .fp32, false), ("fp32 bf16-held", .fp32, true), ("bf16", .bf16, false), ("int8", .int8, false),
    ]

    /// Trial `trial`'s format, a random model in it, one to three random prompts of `promptTokens` tokens and their sources.
    static func trialModel(_ g: inout Generator, trial: Int, promptTokens: Range<Int>) throws
        -> (format: (name: String, precision: ModelPrecision, bf16Values: Bool), model: T5Model, prompts: [[Int]], sources: [T5Model.EncodedSource]) {
        let format = formats[trial % formats.count]
        let model = try randomModel(&g, precision: format.precision, bf16Values: format.bf16Values)
        let vocabulary = model.configuration.vocabularySize
        let prompts = (0..<g.int(1..<4)).map { _ in (0..<g.int(promptTokens)).map { _ in g.int(2..<vocabulary) } }
        return (format, model, prompts, model.encodeSources(prompts))
    }

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

    /// What one row attends to in the reference step: keys and values [length, inner] (for cross-attention, the held
    /// elements) and, for int8-held cross-attention, the scales [length, heads].
    struct CrossMemory {
        var keys: [Float]
        var values: [Float]
        var keyScales: [Float]?
        var valueScales: [Float]?
    }

    /// A row of the reference step: its source and its own self-attention cache, [length, inner] per layer.
    struct ReferenceRow {
        let source: Int
        var keys: [[Float]]
        var values: [[Float]]
    }

    /// The step as decoding computed it before the team: one `linearRows` product at a time, the caches as growing
    /// arrays, and attention as a plain loop over (row, head) with the bias bucketed for every key; cross-attention's
    /// scores and context as the fused multiply-add chains of `QueryAttention`, written out (with int8-held keys and
    /// values: over the integers, the score times its position's key scale, the weights times the value scales).
    static func referenceStep(_ model: T5Model, _ rows: inout [ReferenceRow], tokens: [Int],
                              sources: [T5Model.EncodedSource]) -> Tensor {
        let c = model.configuration, inner = c.innerSize, ff = c.feedForwardSize, eps = c.layerNormEps
        var x = model.shared.gatherRows(tokens)
        func attention(_ queries: Tensor, stride: Int, _ memory: (Int) -> CrossMemory, causal: Bool) -> Tensor {
            var context = Tensor(zeros: [rows.count, inner])
            for r in 0..<rows.count {
                let held = memory(r), (keys, values) = (held.keys, held.values), length = keys.count / inner
                for head in 0..<c.heads {
                    var scores = [Float](repeating: 0, count: length)
                    let q = r * stride + head * c.headSize
                    queries.storage.withUnsafeBufferPointer { pq in
                        keys.withUnsafeBufferPointer { pk in
                            for j in 0..<length {
                                let k = j * inner + head * c.headSize
                                if causal {
                                    scores[j] = SIMDMath.dot(pq.baseAddress! + q, pk.baseAddress! + k, count: c.headSize)
                                } else {
                                    // Cross-attention: one fused multiply-add chain per score, dimension by dimension.
                                    var acc: Float = 0
                                    for i in 0..<c.headSize { acc = acc.addingProduct(pq[q + i], pk[k + i]) }
                                    scores[j] = held.keyScales.map { acc * $0[j * c.heads + head] } ?? acc
                                }
                            }
                        }
                    }
                    if causal {
                        for j in 0..<length { scores[j] += model.decoderBias.storage[c.bucket(j - (length - 1), bidirectional: false) * c.heads + head] }
                    }
                    scores.withUnsafeMutableBufferPointer { SIMDMath.softmaxInPlace($0.baseAddress!, count: length) }
                    context.storage.withUnsafeMutableBufferPointer { po in
                        values.withUnsafeBufferPointer { pv in
                            if causal {
                                for j in 0..<length {
                                    SIMDMath.axpy(scores[j], pv.baseAddress! + j * inner + head * c.headSize,
                                                  into: po.baseAddress! + r * inner + head * c.headSize, count: c.headSize)
                                }
                            } else {
                                // Cross-attention: one fused multiply-add chain per value, position by position.
                                let weights = (0..<length).map { j in held.valueScales.map { scores[j] * $0[j * c.heads + head] } ?? scores[j] }
                                for i in 0..<c.headSize {
                                    var acc: Float = 0
                                    for j in 0..<length { acc = acc.addingProduct(weights[j], pv[j * inner + head * c.headSize + i]) }
                                    po[r * inner + head * c.headSize + i] = acc
                                }
                            }
                        }
                    }
                }
            }
            return context
        }
        // The source's layer as held (keys in blocks of 16 positions, values [length, headSize], per head) as [length,
        // inner], the layout of the product that made them; int8 scales as [length, heads].
        func crossMemory(_ source: T5Model.EncodedSource, _ l: Int) -> CrossMemory {
            let n = source.length, dh = c.headSize
            var memory = CrossMemory(keys: [Float](repeating: 0, count: n * inner), values: [Float](repeating: 0, count: n * inner),
                                     keyScales: source.format == .int8 ? [Float](repeating: 0, count: n * c.heads) : nil, valueScales: nil)
            memory.valueScales = memory.keyScales
            for h in 0..<c.heads {
                let held = source.held(layer: l, head: h)
                for p in 0..<n {
                    for i in 0..<dh {
                        memory.keys[p * inner + h * dh + i] = held.keys[source.keyIndex(dimension: i, position: p)]
                        memory.values[p * inner + h * dh + i] = held.values[p * dh + i]
                    }
                    if let keyScales = held.keyScales, let valueScales = held.valueScales {
                        memory.keyScales![p * c.heads + h] = keyScales[p]
                        memory.valueScales![p * c.heads + h] = valueScales[p]
                    }
                }
            }
            return memory
        }
        for (l, block) in model.decoderBlocks.enumerated() {
            // The decoder's q/k/v weight is stacked head by head (head h's q, k, v at 3·h·headSize): each row back to
            // [q | k | v], the layout of the separate products.
            let byHead = block.selfAttention.query.linearRows(Kernels.rmsNorm(x, gamma: block.selfAttentionNorm, eps: eps))
            var qkv = byHead
            for r in rows.indices {
                for h in 0..<c.heads {
                    for part in 0..<3 {
                        for i in 0..<c.headSize {
                            qkv.storage[r * 3 * inner + part * inner + h * c.headSize + i] =
                                byHead.storage[r * 3 * inner + (3 * h + part) * c.headSize + i]
                        }
                    }
                }
            }
            for r in rows.indices {
                let keyStart: Int = r * 3 * inner + inner, valueStart: Int = keyStart + inner
                rows[r].keys[l].append(contentsOf: qkv.storage[keyStart..<valueStart])
                rows[r].values[l].append(contentsOf: qkv.storage[valueStart..<(valueStart + inner)])
            }
            let selfContext = attention(qkv, stride: 3 * inner, { [rows] r in
                CrossMemory(keys: rows[r].keys[l], values: rows[r].values[l], keyScales: nil, valueScales: nil)
            }, causal: true)
            Kernels.addInPlace(&x, block.selfAttention.output.linearRows(selfContext))
            let q = block.crossAttention.query.linearRows(Kernels.rmsNorm(x, gamma: block.crossAttentionNorm, eps: eps))
            let crossContext = attention(q, stride: inner, { [rows] r in crossMemory(sources[rows[r].source], l) }, causal: false)
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
        return model.outputLayer.linearRows(Kernels.rmsNorm(x, gamma: model.decoderFinalNorm, eps: eps))
    }

    /// Asserts that the team's rows hold the reference rows' caches bit for bit.
    static func assertCaches(_ team: [T5Model.DecoderRow], _ reference: [ReferenceRow], _ label: String,
                             file: StaticString = #filePath, line: UInt = #line) {
        for r in team.indices {
            XCTAssertEqual(team[r].length * team[r].cache.inner, reference[r].keys[0].count, "\(label) length of row \(r)", file: file, line: line)
            for l in reference[r].keys.indices {
                XCTAssertEqual(team[r].cachedKeys(layer: l).map(\.bitPattern), reference[r].keys[l].map(\.bitPattern),
                               "\(label) keys of row \(r) layer \(l)", file: file, line: line)
                XCTAssertEqual(team[r].cachedValues(layer: l).map(\.bitPattern), reference[r].values[l].map(\.bitPattern),
                               "\(label) values of row \(r) layer \(l)", file: file, line: line)
            }
        }
    }

    func testTeamStepGivesTheReferenceBitsInEveryFormatRowCountAndWorkerCount() throws {
        var g = Generator(state: 77)
        for trial in 0..<12 {
            let (format, model, prompts, sources) = try Self.trialModel(&g, trial: trial, promptTokens: 1..<30)
            let c = model.configuration
            let m = [1, 2, 3, 5, 8, 9][trial % 6]
            let rowSources = (0..<m).map { _ in g.int(0..<prompts.count) }
            let empty = [[Float]](repeating: [], count: c.decoderLayers)
            var reference = rowSources.map { ReferenceRow(source: $0, keys: empty, values: empty) }
            var teams = Array(repeating: rowSources.map { model.makeRow(source: $0) }, count: 3)
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
                    Self.assertCaches(teams[workers - 1], reference, "\(shape) step \(step) workers \(workers)")
                }
            }
        }
    }

    /// Beam-like reorders: rows that share a parent's cache (as beams do after a reorder), rows shuffled between steps,
    /// rows of different lengths in one step (some joining late, as continuous batching admits them), a cache growing
    /// past its first room: every step gives the reference bits, and a row's append never shows in its siblings.
    func testSharedAndShuffledRowsGiveTheReferenceBits() throws {
        var g = Generator(state: 91)
        for trial in 0..<8 {
            let (_, model, prompts, sources) = try Self.trialModel(&g, trial: trial, promptTokens: 1..<20)
            let c = model.configuration
            let empty = [[Float]](repeating: [], count: c.decoderLayers)
            var team: [T5Model.DecoderRow] = []
            var reference: [ReferenceRow] = []
            NumericsThreading.configure(threads: 1 + trial % 3)
            // 19 steps: the first room of 16 positions fills and the cache grows.
            for step in 0..<19 {
                // A late row joins, then every row is either kept or replaced by a copy of another (a reorder).
                if team.isEmpty || g.int(0..<4) == 0 {
                    let source = g.int(0..<prompts.count)
                    team.append(model.makeRow(source: source))
                    reference.append(ReferenceRow(source: source, keys: empty, values: empty))
                }
                let parents = team.indices.map { _ in g.int(0..<team.count) }
                team = parents.map { team[$0] }
                reference = parents.map { reference[$0] }
                let tokens = team.indices.map { _ in g.int(0..<c.vocabularySize) }
                let expected = Self.referenceStep(model, &reference, tokens: tokens, sources: sources)
                let logits = model.decodeStep(&team, tokens: tokens, sources: sources)
                let label = "trial \(trial) step \(step) rows \(team.count) parents \(parents)"
                XCTAssertEqual(logits.storage.map(\.bitPattern), expected.storage.map(\.bitPattern), label)
                Self.assertCaches(team, reference, label)
                if team.count > 6 {
                    team.removeFirst(team.count - 6)
                    reference.removeFirst(reference.count - 6)
                }
            }
        }
    }

    /// Cross-attention keys and values are the k/v product of the encoder states, head-major (keys dim-major in blocks of
    /// 16 positions within a head, the last block padded with zeros; values position-major): float32 as computed under
    /// fp32, rounded to nearest-even bf16 under bf16, and under int8 each position's head vector quantized symmetrically
    /// (scale max |x| / 127, integers round-half-even(x · 127 / max |x|)), every integer within half a step of x.
    func testSourcesHoldTheCrossAttentionKeysAndValuesHeadMajorInTheirPrecision() throws {
        var g = Generator(state: 41)
        for precision in [ModelPrecision.fp32, .bf16, .int8] {
            let model = try Self.randomModel(&g, precision: precision, bf16Values: false)
            let c = model.configuration, inner = c.innerSize, dh = c.headSize
            let prompts = (0..<3).map { _ in (0..<g.int(1..<20)).map { _ in g.int(2..<c.vocabularySize) } }
            let sources = model.encodeSources(prompts)
            let (hidden, offsets) = model.encode(prompts)
            for (l, block) in model.decoderBlocks.enumerated() {
                let kv = block.crossAttention.keyValue!.linear(hidden)
                for (s, source) in sources.enumerated() {
                    XCTAssertEqual(source.format, [ModelPrecision.fp32: .fp32, .bf16: .bf16, .int8: .int8][precision])
                    let n = source.length, padded = (n + 15) / 16 * 16
                    XCTAssertEqual(source.keyPositions, padded)
                    for h in 0..<c.heads {
                        let held = source.held(layer: l, head: h), label = "\(precision) layer \(l) source \(s) head \(h)"
                        // Position t's key and value vectors of this head, as the product computed them.
                        func vector(_ t: Int, value: Bool) -> ArraySlice<Float> {
                            let row = (offsets[s] + t) * 2 * inner + (value ? inner : 0) + h * dh
                            return kv.storage[row..<(row + dh)]
                        }
                        var expectedKeys = [Float](repeating: 0, count: padded * dh), expectedValues = [Float](repeating: 0, count: n * dh)
                        var expectedKeyScales = [Float](repeating: 0, count: padded), expectedValueScales = [Float](repeating: 0, count: n)
                        for t in 0..<n {
                            for value in [false, true] {
                                var x = Array(vector(t, value: value))
                                if precision == .int8 {
                                    let top = x.map(abs).max()!, scale = top / 127
                                    let q = x.map { top > 0 ? ($0 * (127 / top)).rounded(.toNearestOrEven) : 0 }
                                    for i in 0..<dh { XCTAssertLessThanOrEqual(abs(q[i] * scale - x[i]), scale / 2 * 1.0001 + 1e-30, label) }
                                    if value { expectedValueScales[t] = scale } else { expectedKeyScales[t] = scale }
                                    x = q.map { Float(Int8($0)) }  // as held: −0 is the integer 0
                                } else if precision == .bf16 {
                                    x = x.map { Float(bitPattern: UInt32(WeightMatrix.roundToBF16($0)) << 16) }
                                }
                                for i in 0..<dh {
                                    if value { expectedValues[t * dh + i] = x[i] } else { expectedKeys[source.keyIndex(dimension: i, position: t)] = x[i] }
                                }
                            }
                        }
                        XCTAssertEqual(held.keys.map(\.bitPattern), expectedKeys.map(\.bitPattern), "\(label) keys")
                        XCTAssertEqual(held.values.map(\.bitPattern), expectedValues.map(\.bitPattern), "\(label) values")
                        XCTAssertEqual(held.keyScales?.map(\.bitPattern), precision == .int8 ? expectedKeyScales.map(\.bitPattern) : nil, "\(label) key scales")
                        XCTAssertEqual(held.valueScales?.map(\.bitPattern), precision == .int8 ? expectedValueScales.map(\.bitPattern) : nil, "\(label) value scales")
                    }
                }
            }
        }
    }

    /// A row's logits do not depend on which other rows share its step or where it sits among them.
    func testRowLogitsDoNotDependOnTheOtherRowsOrTheirOrder() throws {
        var g = Generator(state: 23)
        for precision in [ModelPrecision.fp32, .bf16, .int8] {
            let model = try Self.randomModel(&g, precision: precision, bf16Values: false)
            let c = model.configuration
            let prompts = (0..<5).map { _ in (0..<g.int(1..<25)).map { _ in g.int(2..<c.vocabularySize) } }
            let sources = model.encodeSources(prompts)
            let tokens = (0..<5).map { _ in g.int(0..<c.vocabularySize) }
            var alone: [[UInt32]] = []
            for r in 0..<5 {
                var rows = [model.makeRow(source: r)]
                alone.append(model.decodeStep(&rows, tokens: [tokens[r]], sources: sources).storage.map(\.bitPattern))
            }
            for _ in 0..<4 {
                let order = g.shuffle(Array(0..<5))
                var rows = order.map { model.makeRow(source: $0) }
                let logits = model.decodeStep(&rows, tokens: order.map { tokens[$0] }, sources: sources).storage.map(\.bitPattern)
                for (i, r) in order.enumerated() {
                    XCTAssertEqual(Array(logits[(i * c.vocabularySize)..<((i + 1) * c.vocabularySize)]), alone[r], "\(precision) order \(order)")
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
