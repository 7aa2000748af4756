import BlendCore
import Dispatch
import Foundation

/// A T5 v1.1 encoder-decoder (HF `T5ForConditionalGeneration` with Flan-T5's settings): shared
/// embedding, pre-norm blocks with RMSNorm, attention without 1/√d scaling, relative position
/// bias from block 0 of each stack, gated-GELU (tanh) FFN, no biases, untied lm_head.
///
/// The encoder runs over packed sequences (aligned, see `PackedSequences`). The decoder advances any set of
/// rows one token at a time; each row keeps its own self-attention cache and reads the
/// cross-attention keys/values of its job, computed once per job and shared by all its beams.
public final class T5Model: Sendable {
    struct Attention: Sendable {
        /// q, k, v stacked [3·inner, d] (self-attention) or q alone [inner, d] with k, v stacked [2·inner, d] (cross).
        let query: WeightMatrix
        let keyValue: WeightMatrix?
        let output: WeightMatrix
    }

    struct EncoderBlock: Sendable {
        let attentionNorm: Tensor
        let attention: Attention
        let feedForwardNorm: Tensor
        /// wi_0 and wi_1 stacked [2·ff, d]: one GEMM for both halves of the gate.
        let feedForwardIn: WeightMatrix
        let feedForwardOut: WeightMatrix
    }

    struct DecoderBlock: Sendable {
        let selfAttentionNorm: Tensor
        let selfAttention: Attention
        let crossAttentionNorm: Tensor
        let crossAttention: Attention
        let feedForwardNorm: Tensor
        let feedForwardIn: WeightMatrix
        let feedForwardOut: WeightMatrix
    }

    public let configuration: T5Configuration
    let shared: WeightMatrix
    let encoderBlocks: [EncoderBlock]
    let encoderBias: Tensor
    let encoderFinalNorm: Tensor
    let decoderBlocks: [DecoderBlock]
    let decoderBias: Tensor
    let decoderFinalNorm: Tensor
    let outputLayer: WeightMatrix
    /// Bytes the weights occupy in memory (bf16 checkpoints stay bf16; see `WeightMatrix`).
    public let weightBytes: Int
    /// Weight bytes one decoder step reads: every decoder projection except the cross-attention keys/values
    /// (computed once per job), plus the output layer.
    public let decoderStepBytes: Int

    public convenience init(directory: String, precision: ModelPrecision = .fp32) throws {
        try self.init(configuration: try T5Configuration.load(directory: directory), store: try WeightStore.open(directory: directory),
                      precision: precision)
    }

    /// Takes the tensors by their HF names; every missing, mis-shaped or unexpected tensor is reported at once.
    /// `precision` applies to every projection and the output layer; the embedding table stays exact.
    public init(configuration c: T5Configuration, store: WeightStore, precision: ModelPrecision = .fp32) throws {
        configuration = c
        let reader = store.reader()
        // The hub's .bin files also carry the stacks' tied copies of `shared`.
        reader.ignore { $0 == "encoder.embed_tokens.weight" || $0 == "decoder.embed_tokens.weight" }
        let d = c.modelSize, inner = c.innerSize, ff = c.feedForwardSize
        func matrix(_ t: Tensor) -> WeightMatrix { WeightMatrix(t, precision: precision, compressExact: true) }
        // The Float32 copy of the table is dropped at once: held beside the rest it would add a vocabulary × d_model
        // Float32 matrix to loading's peak.
        shared = WeightMatrix(try reader.take("shared.weight", [c.vocabularySize, d]), compress: true)
        func selfAttention(_ p: String) throws -> Attention {
            let q = try reader.take(p + "q.weight", [inner, d]), k = try reader.take(p + "k.weight", [inner, d])
            let v = try reader.take(p + "v.weight", [inner, d])
            return Attention(query: matrix(Tensor(shape: [3 * inner, d], storage: q.storage + k.storage + v.storage)),
                             keyValue: nil, output: matrix(try reader.take(p + "o.weight", [d, inner])))
        }
        func crossAttention(_ p: String) throws -> Attention {
            let k = try reader.take(p + "k.weight", [inner, d]), v = try reader.take(p + "v.weight", [inner, d])
            return Attention(query: matrix(try reader.take(p + "q.weight", [inner, d])),
                             keyValue: matrix(Tensor(shape: [2 * inner, d], storage: k.storage + v.storage)),
                             output: matrix(try reader.take(p + "o.weight", [d, inner])))
        }
        func feedForward(_ p: String) throws -> (WeightMatrix, WeightMatrix) {
            let gate = try reader.take(p + "wi_0.weight", [ff, d]), linear = try reader.take(p + "wi_1.weight", [ff, d])
            return (matrix(Tensor(shape: [2 * ff, d], storage: gate.storage + linear.storage)), matrix(try reader.take(p + "wo.weight", [d, ff])))
        }
        encoderBias = try reader.take("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", [c.relativeBuckets, c.heads])
        encoderBlocks = try (0..<c.encoderLayers).map { l in
            let p = "encoder.block.\(l).layer."
            let (ffIn, ffOut) = try feedForward(p + "1.DenseReluDense.")
            return EncoderBlock(attentionNorm: try reader.take(p + "0.layer_norm.weight", [d]),
                                attention: try selfAttention(p + "0.SelfAttention."),
                                feedForwardNorm: try reader.take(p + "1.layer_norm.weight", [d]),
                                feedForwardIn: ffIn, feedForwardOut: ffOut)
        }
        encoderFinalNorm = try reader.take("encoder.final_layer_norm.weight", [d])
        decoderBias = try reader.take("decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", [c.relativeBuckets, c.heads])
        decoderBlocks = try (0..<c.decoderLayers).map { l in
            let p = "decoder.block.\(l).layer."
            let (ffIn, ffOut) = try feedForward(p + "2.DenseReluDense.")
            return DecoderBlock(selfAttentionNorm: try reader.take(p + "0.layer_norm.weight", [d]),
                                selfAttention: try selfAttention(p + "0.SelfAttention."),
                                crossAttentionNorm: try reader.take(p + "1.layer_norm.weight", [d]),
                                crossAttention: try crossAttention(p + "1.EncDecAttention."),
                                feedForwardNorm: try reader.take(p + "2.layer_norm.weight", [d]),
                                feedForwardIn: ffIn, feedForwardOut: ffOut)
        }
        decoderFinalNorm = try reader.take("decoder.final_layer_norm.weight", [d])
        if c.tiedEmbeddings {
            reader.ignore { $0 == "lm_head.weight" }
            // Tied: the decoder output is rescaled by d^−½ before `shared`; folding the factor into a copy is exact enough
            // and keeps the step a single GEMM.
            let scale = 1 / Float(d).squareRoot()
            outputLayer = matrix(Tensor(shape: [c.vocabularySize, d], storage: shared.floatTensor().storage.map { $0 * scale }))
        } else {
            outputLayer = matrix(try reader.take("lm_head.weight", [c.vocabularySize, d]))
        }
        try reader.finish()
        let attentionBytes = { (a: Attention) in a.query.bytes + (a.keyValue?.bytes ?? 0) + a.output.bytes }
        weightBytes = shared.bytes + outputLayer.bytes
            + encoderBlocks.reduce(0) { $0 + attentionBytes($1.attention) + $1.feedForwardIn.bytes + $1.feedForwardOut.bytes }
            + decoderBlocks.reduce(0) { $0 + attentionBytes($1.selfAttention) + attentionBytes($1.crossAttention) + $1.feedForwardIn.bytes + $1.feedForwardOut.bytes }
        decoderStepBytes = outputLayer.bytes + decoderBlocks.reduce(0) {
            $0 + attentionBytes($1.selfAttention) + attentionBytes($1.crossAttention) - ($1.crossAttention.keyValue?.bytes ?? 0)
                + $1.feedForwardIn.bytes + $1.feedForwardOut.bytes
        }
    }

    // MARK: Encoder

    /// Final encoder states of every sequence, stacked; rows `offsets[s] ..< offsets[s] + sequences[s].count`, the
    /// rows between sequences being alignment padding.
    public func encode(_ sequences: [[Int]]) -> (hidden: Tensor, offsets: [Int]) {
        let packed = PackedSequences(sequences, padding: configuration.padId)
        let (ids, offsets, lengths) = (packed.ids, packed.offsets, packed.lengths)
        let eps = configuration.layerNormEps
        var x = shared.gatherRows(ids)
        for block in encoderBlocks {
            let h = Kernels.rmsNorm(x, gamma: block.attentionNorm, eps: eps)
            let qkv = block.attention.query.linear(h)
            let context = encoderAttention(qkv, offsets: offsets, lengths: lengths)
            Kernels.addInPlace(&x, block.attention.output.linear(context))
            Kernels.addInPlace(&x, feedForward(Kernels.rmsNorm(x, gamma: block.feedForwardNorm, eps: eps),
                                               weightIn: block.feedForwardIn, weightOut: block.feedForwardOut))
        }
        return (Kernels.rmsNorm(x, gamma: encoderFinalNorm, eps: eps), offsets)
    }

    /// wo(gelu_tanh(wi_0·x) ⊙ wi_1·x) over packed sequences.
    func feedForward(_ x: Tensor, weightIn: WeightMatrix, weightOut: WeightMatrix) -> Tensor {
        let ff = configuration.feedForwardSize
        let both = weightIn.linear(x)
        var gated = Tensor(zeros: [x.rows, ff])
        both.storage.withUnsafeBufferPointer { pb in
            gated.storage.withUnsafeMutableBufferPointer { pg in
                let gatedBase = pg.baseAddress!
                NumericsThreading.forEachRow(x.rows) { r in
                    Self.gate(pb.baseAddress! + r * 2 * ff, into: gatedBase + r * ff, ff: ff, columns: 0..<ff)
                }
            }
        }
        return weightOut.linear(gated)
    }

    /// gelu_tanh(gate) ⊙ linear for `columns` of one row of the stacked wi_0/wi_1 product (`both`, 2·ff wide). Every
    /// value is computed alone (lane-wise), so a block of columns gives the bits the whole row gives.
    @inline(__always)
    static func gate(_ both: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, ff: Int, columns: Range<Int>) {
        let start = columns.lowerBound
        (out + start).update(from: both + start, count: columns.count)
        VectorMath.apply(out + start, count: columns.count, VectorMath.geluTanh)
        for i in columns { out[i] *= both[ff + i] }
    }

    /// Bidirectional self-attention per sequence and head: softmax(Q·Kᵀ + bias[bucket(j − i)])·V, unscaled.
    /// Each (sequence, head) is one task on one core; tasks run in parallel.
    private func encoderAttention(_ qkv: Tensor, offsets: [Int], lengths: [Int]) -> Tensor {
        let c = configuration
        let inner = c.innerSize, d = c.headSize, ld = 3 * inner
        var context = Tensor(zeros: [qkv.rows, inner])
        // bias[s][head][j − i + length − 1]
        let biases = lengths.map { length in
            (0..<c.heads).map { head in
                (-(max(length, 1) - 1)...(max(length, 1) - 1)).map { encoderBias.storage[c.bucket($0, bidirectional: true) * c.heads + head] }
            }
        }
        let items = PackedSequences.tasks(lengths: lengths, heads: c.heads)
        qkv.storage.withUnsafeBufferPointer { pqkv in
            context.storage.withUnsafeMutableBufferPointer { pctx in
                let ctxBase = pctx.baseAddress!
                NumericsThreading.forEachItem(items.count) { item in
                    let (s, head) = items[item]
                    let offset = offsets[s], length = lengths[s]
                    guard length > 0 else { return }
                    let scores = UnsafeMutablePointer<Float>.allocate(capacity: length * length)
                    defer { scores.deallocate() }
                    let q = pqkv.baseAddress! + offset * ld + head * d
                    Kernels.sgemmSerial(transposeB: true, m: length, n: length, k: d, a: q, lda: ld, b: q + inner, ldb: ld,
                                        c: scores, ldc: length)
                    biases[s][head].withUnsafeBufferPointer { pt in
                        for i in 0..<length {
                            let row = scores + i * length, bias = pt.baseAddress! + length - 1 - i
                            for j in 0..<length { row[j] += bias[j] }
                            SIMDMath.softmaxInPlace(row, count: length)
                        }
                    }
                    Kernels.sgemmSerial(m: length, n: d, k: length, a: scores, lda: length, b: q + 2 * inner, ldb: ld,
                                        c: ctxBase + offset * inner + head * d, ldc: inner)
                }
            }
        }
        return context
    }

    // MARK: Decoder

    /// Cross-attention keys and values of one encoded job for every decoder layer, [length, inner] each.
    public struct EncodedSource: Sendable {
        public let length: Int
        let keys: [[Float]]
        let values: [[Float]]
    }

    /// Encodes the jobs' inputs and precomputes each job's cross-attention keys and values.
    public func encodeSources(_ sequences: [[Int]]) -> [EncodedSource] {
        let (hidden, offsets) = encode(sequences)
        let inner = configuration.innerSize
        var keys = [[[Float]]](repeating: [], count: sequences.count)
        var values = keys
        for block in decoderBlocks {
            let kv = block.crossAttention.keyValue!.linear(hidden)
            for (s, offset) in offsets.enumerated() {
                var k = [Float](), v = [Float]()
                k.reserveCapacity(sequences[s].count * inner)
                v.reserveCapacity(sequences[s].count * inner)
                for r in offset..<(offset + sequences[s].count) {
                    k += kv.storage[(r * 2 * inner)..<(r * 2 * inner + inner)]
                    v += kv.storage[(r * 2 * inner + inner)..<((r + 1) * 2 * inner)]
                }
                keys[s].append(k)
                values[s].append(v)
            }
        }
        return sequences.indices.map { EncodedSource(length: sequences[$0].count, keys: keys[$0], values: values[$0]) }
    }

    /// One decoding row (a greedy sequence or one beam): its self-attention cache per layer. Rows are values;
    /// beams that share a parent share its cache storage until one of them appends (copy on write).
    public struct DecoderRow: Sendable {
        public let source: Int
        public internal(set) var length = 0
        var keys: [[Float]]
        var values: [[Float]]

        public init(source: Int, layers: Int) {
            self.source = source
            keys = Array(repeating: [], count: layers)
            values = Array(repeating: [], count: layers)
        }
    }

    public func makeRow(source: Int) -> DecoderRow { DecoderRow(source: source, layers: configuration.decoderLayers) }

    /// The phases of a decoder step, in order: nine per layer, then the output layer.
    public static let decodeStepPhases = ["q/k/v product", "cache append", "self-attention", "self-attention output + residual",
                                          "cross-attention query product", "cross-attention", "cross-attention output + residual",
                                          "FFN wi_0/wi_1 product + gate", "FFN wo product + residual", "output layer"]

    /// Weight bytes each phase kind of `decodeStepPhases` reads in one step (all layers).
    public var decodeStepPhaseBytes: [Int] {
        [decoderBlocks.reduce(0) { $0 + $1.selfAttention.query.bytes }, 0, 0, decoderBlocks.reduce(0) { $0 + $1.selfAttention.output.bytes },
         decoderBlocks.reduce(0) { $0 + $1.crossAttention.query.bytes }, 0, decoderBlocks.reduce(0) { $0 + $1.crossAttention.output.bytes },
         decoderBlocks.reduce(0) { $0 + $1.feedForwardIn.bytes }, decoderBlocks.reduce(0) { $0 + $1.feedForwardOut.bytes }, outputLayer.bytes]
    }


    /// Feeds one token to each row and returns next-token logits, [rows, vocabulary]. Every product treats the rows
    /// as independent items (the kernels of `linearRows`), so a row's logits never depend on the other rows of the step.
    ///
    /// The step runs on `NumericsThreading.team` as nine phases per layer and one for the output layer: each product is
    /// split into blocks of 64 output columns (the residual add and the FFN gate done in the block that produced the
    /// columns), attention into (row, head) items; each worker normalizes (and rounds, for bf16 pairs) its own copy of
    /// a product's input. No value depends on the split. With `profile`, the time of each phase is added there.
    public func decodeStep(_ rows: inout [DecoderRow], tokens: [Int], sources: [EncodedSource],
                           profile: DecodeStepProfile? = nil) -> Tensor {
        precondition(rows.count == tokens.count, "one token per row")
        let started = DispatchTime.now().uptimeNanoseconds
        let c = configuration, m = rows.count, d = c.modelSize, inner = c.innerSize, ff = c.feedForwardSize
        let heads = c.heads, dh = c.headSize, eps = c.layerNormEps, vocabulary = c.vocabularySize
        guard m > 0 else { return Tensor(zeros: [0, vocabulary]) }
        var logits = [Float](repeating: 0, count: m * vocabulary)
        let x = UnsafeMutablePointer<Float>.allocate(capacity: m * d)
        defer { x.deallocate() }
        shared.gatherRows(tokens).storage.withUnsafeBufferPointer { x.initialize(from: $0.baseAddress!, count: m * d) }
        // Step buffers: the q/k/v product, the cross-attention queries, the attention context, a product before its
        // residual add, the stacked wi_0/wi_1 product and the gated FFN activations.
        let sizes = [m * 3 * inner, m * inner, m * inner, m * d, m * 2 * ff, m * ff]
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: sizes.reduce(0, +))
        defer { buffer.deallocate() }
        buffer.initialize(repeating: 0, count: sizes.reduce(0, +))
        let qkv = buffer, query = qkv + sizes[0], context = query + sizes[1], projected = context + sizes[2]
        let both = projected + sizes[3], gated = both + sizes[4]
        let widest = max(d, inner, ff)
        let blocks = { (n: Int) in (n + 63) / 64 }
        func block(_ chunk: Int, of n: Int) -> Range<Int> { (chunk * 64)..<min(n, chunk * 64 + 64) }
        let phases = 9 * decoderBlocks.count + 1
        let clock = profile == nil ? nil : UnsafeMutablePointer<UInt64>.allocate(capacity: phases)
        defer { clock?.deallocate() }
        let teamStarted = DispatchTime.now().uptimeNanoseconds
        // Pointers taken once, outside the workers: concurrent `withUnsafe…` accesses to one array would conflict.
        rows.withUnsafeMutableBufferPointer { rowsBuffer in logits.withUnsafeMutableBufferPointer { logitsBuffer in
            let rowStates = rowsBuffer.baseAddress!, out = logitsBuffer.baseAddress!
            NumericsThreading.team.run(phases: phases, clock: clock) { team in
                // This worker's copy of a product's input (normalized, or as given) and its bf16 pairs.
                let normed = UnsafeMutablePointer<Float>.allocate(capacity: m * d)
                let rounded = UnsafeMutablePointer<UInt32>.allocate(capacity: m * max((widest + 1) / 2, (widest + 3) / 4 + 1))
                defer {
                    normed.deallocate()
                    rounded.deallocate()
                }
                func normalize(_ gamma: Tensor, for weight: WeightMatrix) {
                    gamma.storage.withUnsafeBufferPointer { pg in
                        for r in 0..<m { SIMDMath.rmsNormRow(x + r * d, into: normed + r * d, gamma: pg.baseAddress!, count: d, eps: eps) }
                    }
                    weight.roundRows(normed, rows: m, into: rounded)
                }
                /// y = input · Wᵀ for one block of columns; with `residual` the block is then added into x.
                func product(_ weight: WeightMatrix, _ input: UnsafePointer<Float>, columns: Range<Int>,
                             into y: UnsafeMutablePointer<Float>, ldy: Int, residual: Bool = false) {
                    weight.rowProduct(input, rounded: rounded, rows: m, columns: columns, into: y, ldy: ldy)
                    guard residual else { return }
                    for r in 0..<m {
                        for j in columns { x[r * d + j] += y[r * ldy + j] }
                    }
                }
                for (l, layer) in decoderBlocks.enumerated() {
                    // Self-attention over the row's own past, with the causal relative bias.
                    let selfAttention = layer.selfAttention, crossAttention = layer.crossAttention
                    team.phase(blocks(3 * inner), prepare: { normalize(layer.selfAttentionNorm, for: selfAttention.query) }) { chunk in
                        product(selfAttention.query, normed, columns: block(chunk, of: 3 * inner), into: qkv, ldy: 3 * inner)
                    }
                    team.phase(1) { _ in
                        for r in 0..<m {
                            let base = qkv + r * 3 * inner
                            rowStates[r].keys[l].append(contentsOf: UnsafeBufferPointer(start: base + inner, count: inner))
                            rowStates[r].values[l].append(contentsOf: UnsafeBufferPointer(start: base + 2 * inner, count: inner))
                        }
                    }
                    team.phase(m * heads) { item in
                        let r = item / heads, head = item % heads
                        attend(qkv + r * 3 * inner + head * dh, head: head, keys: rowStates[r].keys[l], values: rowStates[r].values[l],
                               causal: true, into: context + r * inner + head * dh)
                    }
                    team.phase(blocks(d), prepare: { selfAttention.output.roundRows(context, rows: m, into: rounded) }) { chunk in
                        product(selfAttention.output, context, columns: block(chunk, of: d), into: projected, ldy: d, residual: true)
                    }
                    // Cross-attention over the row's job's encoder states.
                    team.phase(blocks(inner), prepare: { normalize(layer.crossAttentionNorm, for: crossAttention.query) }) { chunk in
                        product(crossAttention.query, normed, columns: block(chunk, of: inner), into: query, ldy: inner)
                    }
                    team.phase(m * heads) { item in
                        let r = item / heads, head = item % heads
                        let source = sources[rowStates[r].source]
                        attend(query + r * inner + head * dh, head: head, keys: source.keys[l], values: source.values[l],
                               causal: false, into: context + r * inner + head * dh)
                    }
                    team.phase(blocks(d), prepare: { crossAttention.output.roundRows(context, rows: m, into: rounded) }) { chunk in
                        product(crossAttention.output, context, columns: block(chunk, of: d), into: projected, ldy: d, residual: true)
                    }
                    // Gated FFN: a block takes the same columns of both halves, so it can gate them itself.
                    team.phase(blocks(ff), prepare: { normalize(layer.feedForwardNorm, for: layer.feedForwardIn) }) { chunk in
                        let columns = block(chunk, of: ff)
                        product(layer.feedForwardIn, normed, columns: columns, into: both, ldy: 2 * ff)
                        product(layer.feedForwardIn, normed, columns: (ff + columns.lowerBound)..<(ff + columns.upperBound), into: both, ldy: 2 * ff)
                        for r in 0..<m { Self.gate(both + r * 2 * ff, into: gated + r * ff, ff: ff, columns: columns) }
                    }
                    team.phase(blocks(d), prepare: { layer.feedForwardOut.roundRows(gated, rows: m, into: rounded) }) { chunk in
                        product(layer.feedForwardOut, gated, columns: block(chunk, of: d), into: projected, ldy: d, residual: true)
                    }
                }
                team.phase(blocks(vocabulary), prepare: { normalize(decoderFinalNorm, for: outputLayer) }) { chunk in
                    product(outputLayer, normed, columns: block(chunk, of: vocabulary), into: out, ldy: vocabulary)
                }
            }
        } }
        for r in rows.indices { rows[r].length += 1 }
        let result = Tensor(shape: [m, vocabulary], storage: logits)
        if let profile, let clock { profile.add(started: started, teamStarted: teamStarted, phaseEnds: clock, phases: phases,
                                                finished: DispatchTime.now().uptimeNanoseconds) }
        return result
    }

    /// One head of one row's single-query attention over the cached positions (keys, values as [length, inner]), into
    /// `out` (the head's `headSize` values); with `causal` the query sits at the last position and the decoder's
    /// relative bias applies.
    private func attend(_ q: UnsafePointer<Float>, head: Int, keys: [Float], values: [Float], causal: Bool,
                        into out: UnsafeMutablePointer<Float>) {
        let c = configuration, inner = c.innerSize, dh = c.headSize, heads = c.heads
        let length = keys.count / inner
        out.initialize(repeating: 0, count: dh)
        let scores = UnsafeMutablePointer<Float>.allocate(capacity: max(1, length))
        defer { scores.deallocate() }
        keys.withUnsafeBufferPointer { pk in
            for j in 0..<length { scores[j] = SIMDMath.dot(q, pk.baseAddress! + j * inner + head * dh, count: dh) }
        }
        if causal {
            decoderBias.storage.withUnsafeBufferPointer { pb in
                for j in 0..<length { scores[j] += pb[c.bucket(j - (length - 1), bidirectional: false) * heads + head] }
            }
        }
        SIMDMath.softmaxInPlace(scores, count: length)
        values.withUnsafeBufferPointer { pv in
            for j in 0..<length { SIMDMath.axpy(scores[j], pv.baseAddress! + j * inner + head * dh, into: out, count: dh) }
        }
    }
}

/// Where decoder steps spend their time (`T5Model.decodeStep(profile:)`): for each phase kind of
/// `T5Model.decodeStepPhases`, the wall time from the end of the phase before to its own end on the calling worker,
/// and the time outside the team (embedding lookup, cache room, pointer tables, the logits tensor), summed over steps.
public final class DecodeStepProfile {
    public private(set) var steps = 0
    /// Seconds per phase kind, in `T5Model.decodeStepPhases` order.
    public private(set) var phaseSeconds = [Double](repeating: 0, count: T5Model.decodeStepPhases.count)
    public private(set) var outsideSeconds = 0.0

    public init() {}

    public var totalSeconds: Double { phaseSeconds.reduce(outsideSeconds, +) }

    fileprivate func add(started: UInt64, teamStarted: UInt64, phaseEnds: UnsafePointer<UInt64>, phases: Int, finished: UInt64) {
        let kinds = T5Model.decodeStepPhases.count
        var previous = teamStarted
        for p in 0..<phases {
            let kind = p == phases - 1 ? kinds - 1 : p % (kinds - 1)
            phaseSeconds[kind] += Double(phaseEnds[p] &- previous) / 1e9
            previous = phaseEnds[p]
        }
        outsideSeconds += Double((teamStarted &- started) &+ (finished &- previous)) / 1e9
        steps += 1
    }
}
