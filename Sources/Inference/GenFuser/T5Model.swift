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
                                               weightIn: block.feedForwardIn, weightOut: block.feedForwardOut, independentRows: false))
        }
        return (Kernels.rmsNorm(x, gamma: encoderFinalNorm, eps: eps), offsets)
    }

    /// wo(gelu_tanh(wi_0·x) ⊙ wi_1·x); `independentRows` for decoder steps (see `WeightMatrix.linearRows`).
    func feedForward(_ x: Tensor, weightIn: WeightMatrix, weightOut: WeightMatrix, independentRows: Bool) -> Tensor {
        let ff = configuration.feedForwardSize
        let both = independentRows ? weightIn.linearRows(x) : weightIn.linear(x)
        var gated = Tensor(zeros: [x.rows, ff])
        both.storage.withUnsafeBufferPointer { pb in
            gated.storage.withUnsafeMutableBufferPointer { pg in
                let gatedBase = pg.baseAddress!
                NumericsThreading.forEachRow(x.rows) { r in
                    let row = pb.baseAddress! + r * 2 * ff
                    let out = gatedBase + r * ff
                    out.update(from: row, count: ff)
                    VectorMath.apply(out, count: ff, VectorMath.geluTanh)
                    for i in 0..<ff { out[i] *= row[ff + i] }
                }
            }
        }
        return independentRows ? weightOut.linearRows(gated) : weightOut.linear(gated)
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

    /// Feeds one token to each row and returns next-token logits, [rows, vocabulary]. Every product treats the rows
    /// as independent items (`linearRows`), so a row's logits never depend on the other rows of the step.
    public func decodeStep(_ rows: inout [DecoderRow], tokens: [Int], sources: [EncodedSource]) -> Tensor {
        precondition(rows.count == tokens.count, "one token per row")
        let c = configuration, inner = c.innerSize, eps = c.layerNormEps
        var x = shared.gatherRows(tokens)
        for (l, block) in decoderBlocks.enumerated() {
            // Self-attention over the row's own past, with the causal relative bias.
            let qkv = block.selfAttention.query.linearRows(Kernels.rmsNorm(x, gamma: block.selfAttentionNorm, eps: eps))
            for r in rows.indices {
                let base = r * 3 * inner
                rows[r].keys[l] += qkv.storage[(base + inner)..<(base + 2 * inner)]
                rows[r].values[l] += qkv.storage[(base + 2 * inner)..<(base + 3 * inner)]
            }
            let selfContext = rowAttention(queries: qkv, queryStride: 3 * inner, rows: rows.count) { r in
                (rows[r].keys[l], rows[r].values[l], true)
            }
            Kernels.addInPlace(&x, block.selfAttention.output.linearRows(selfContext))
            // Cross-attention over the row's job's encoder states.
            let q = block.crossAttention.query.linearRows(Kernels.rmsNorm(x, gamma: block.crossAttentionNorm, eps: eps))
            let crossContext = rowAttention(queries: q, queryStride: inner, rows: rows.count) { r in
                (sources[rows[r].source].keys[l], sources[rows[r].source].values[l], false)
            }
            Kernels.addInPlace(&x, block.crossAttention.output.linearRows(crossContext))
            Kernels.addInPlace(&x, feedForward(Kernels.rmsNorm(x, gamma: block.feedForwardNorm, eps: eps),
                                               weightIn: block.feedForwardIn, weightOut: block.feedForwardOut, independentRows: true))
        }
        for r in rows.indices { rows[r].length += 1 }
        return outputLayer.linearRows(Kernels.rmsNorm(x, gamma: decoderFinalNorm, eps: eps))
    }

    /// Single-query attention of each row over `memory(r)` (keys, values as [length, inner]); with `causalBias`
    /// the query sits at the last position and the decoder's relative bias applies.
    private func rowAttention(queries: Tensor, queryStride: Int, rows: Int,
                              memory: (Int) -> (keys: [Float], values: [Float], causalBias: Bool)) -> Tensor {
        let c = configuration, inner = c.innerSize, d = c.headSize, heads = c.heads
        var context = Tensor(zeros: [rows, inner])
        let items = (0..<rows).map(memory)
        let bias = decoderBias
        queries.storage.withUnsafeBufferPointer { pq in
            context.storage.withUnsafeMutableBufferPointer { pc in
                let out = pc.baseAddress!
                let work = rows * heads
                let workers = min(NumericsThreading.threads, max(1, work * (items.first?.keys.count ?? 0) / 65_536))
                NumericsThreading.parallel(workers) { w in
                    for item in stride(from: w, to: work, by: workers) {
                        let r = item / heads, head = item % heads
                        let (keys, values, causal) = items[r]
                        let length = keys.count / inner
                        let q = pq.baseAddress! + r * queryStride + head * d
                        var scores = [Float](repeating: 0, count: length)
                        keys.withUnsafeBufferPointer { pk in
                            for j in 0..<length { scores[j] = SIMDMath.dot(q, pk.baseAddress! + j * inner + head * d, count: d) }
                        }
                        if causal {
                            for j in 0..<length {
                                scores[j] += bias.storage[c.bucket(j - (length - 1), bidirectional: false) * heads + head]
                            }
                        }
                        scores.withUnsafeMutableBufferPointer { SIMDMath.softmaxInPlace($0.baseAddress!, count: length) }
                        let o = out + r * inner + head * d
                        values.withUnsafeBufferPointer { pv in
                            for j in 0..<length { SIMDMath.axpy(scores[j], pv.baseAddress! + j * inner + head * d, into: o, count: d) }
                        }
                    }
                }
            }
        }
        return context
    }
}
