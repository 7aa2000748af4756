import BlendCore
import CKernels
import Foundation

/// The DeBERTa-v2/v3 encoder as HF `modeling_deberta_v2` computes it with v3's settings
/// (log-bucketed relative positions, shared key/query projections for the c2p and p2c terms,
/// post-LN blocks, erf GELU), run over *packed* sequences: the tokens of every sequence of a
/// batch are stacked into one [tokens, hidden] matrix for the dense layers, and attention runs
/// per sequence over its own length. Each sequence starts at an aligned row (`PackedSequences`) and no mask is
/// needed, so a sequence's states are bit-identical whatever shares its batch.
public final class DebertaEncoder: Sendable {
    struct Layer: Sendable {
        /// query, key and value projections stacked into one [3·hidden, hidden] weight: one GEMM per layer.
        let qkvWeight: WeightMatrix
        let qkvBias: Tensor
        let attentionOutWeight: WeightMatrix
        let attentionOutBias: Tensor
        let attentionNormGamma: Tensor
        let attentionNormBeta: Tensor
        let intermediateWeight: WeightMatrix
        let intermediateBias: Tensor
        let outputWeight: WeightMatrix
        let outputBias: Tensor
        let outputNormGamma: Tensor
        let outputNormBeta: Tensor
        /// key_proj / query_proj of the normalized relative table, [2·span, hidden]: they depend on
        /// weights only, so they are computed once at load instead of in every forward pass. Empty where the
        /// bf16 rows below serve instead (they are all the bf16 attention reads, and the float32 copies would add
        /// 100 MB to DeBERTa-large's bf16 weights).
        let positionKeys: Tensor
        let positionQueries: Tensor
        /// The same tables as bf16 rows per head for `bk_bf16_attention_head` (bf16 encoders on AVX512-BF16 only,
        /// else empty).
        let positionKeyRows: [UInt32]
        let positionQueryRows: [UInt32]
    }

    public let configuration: DebertaConfiguration
    let wordEmbeddings: Tensor
    let embeddingNormGamma: Tensor
    let embeddingNormBeta: Tensor
    let layers: [Layer]
    /// Whether the forward pass runs in bf16 (`forwardBF16`): a bf16 encoder on a CPU with AVX512-BF16. Elsewhere a bf16
    /// encoder holds bf16-rounded weights and runs the float32 layers.
    let bf16Attention: Bool

    /// Reads the backbone's tensors (names as HF saves `DebertaV2Model`, under `reader`'s prefix); the dense
    /// layers take `precision`, the relative-position projections are computed once in fp32.
    public init(configuration c: DebertaConfiguration, reader: WeightReader, precision: ModelPrecision = .fp32) throws {
        configuration = c
        let h = c.hiddenSize, span = c.attentionSpan
        bf16Attention = precision == .bf16 && WeightMatrix.vectorBF16
        wordEmbeddings = try reader.take("embeddings.word_embeddings.weight", [c.vocabularySize, h])
        embeddingNormGamma = try reader.take("embeddings.LayerNorm.weight", [h])
        embeddingNormBeta = try reader.take("embeddings.LayerNorm.bias", [h])
        let relative = try reader.take("encoder.rel_embeddings.weight", [2 * span, h])
        let relativeNormed = Kernels.layerNorm(relative, gamma: try reader.take("encoder.LayerNorm.weight", [h]),
                                               beta: try reader.take("encoder.LayerNorm.bias", [h]), eps: c.layerNormEps)
        var layers: [Layer] = []
        for l in 0..<c.layers {
            let p = "encoder.layer.\(l)."
            func take(_ name: String, _ shape: [Int]) throws -> Tensor { try reader.take(p + name, shape) }
            let qw = try take("attention.self.query_proj.weight", [h, h]), qb = try take("attention.self.query_proj.bias", [h])
            let kw = try take("attention.self.key_proj.weight", [h, h]), kb = try take("attention.self.key_proj.bias", [h])
            let vw = try take("attention.self.value_proj.weight", [h, h]), vb = try take("attention.self.value_proj.bias", [h])
            func dense(_ t: Tensor) -> WeightMatrix { WeightMatrix(t, precision: precision, compressExact: false) }
            let positionKeys = Kernels.linear(relativeNormed, weight: kw, bias: kb)
            let positionQueries = Kernels.linear(relativeNormed, weight: qw, bias: qb)
            layers.append(Layer(
                qkvWeight: dense(Tensor(shape: [3 * h, h], storage: qw.storage + kw.storage + vw.storage)),
                qkvBias: Tensor(shape: [3 * h], storage: qb.storage + kb.storage + vb.storage),
                attentionOutWeight: dense(try take("attention.output.dense.weight", [h, h])),
                attentionOutBias: try take("attention.output.dense.bias", [h]),
                attentionNormGamma: try take("attention.output.LayerNorm.weight", [h]),
                attentionNormBeta: try take("attention.output.LayerNorm.bias", [h]),
                intermediateWeight: dense(try take("intermediate.dense.weight", [c.intermediateSize, h])),
                intermediateBias: try take("intermediate.dense.bias", [c.intermediateSize]),
                outputWeight: dense(try take("output.dense.weight", [h, c.intermediateSize])),
                outputBias: try take("output.dense.bias", [h]),
                outputNormGamma: try take("output.LayerNorm.weight", [h]),
                outputNormBeta: try take("output.LayerNorm.bias", [h]),
                positionKeys: bf16Attention ? Tensor(zeros: [0, h]) : positionKeys,
                positionQueries: bf16Attention ? Tensor(zeros: [0, h]) : positionQueries,
                positionKeyRows: bf16Attention ? Self.headRows(positionKeys, heads: c.heads) : [],
                positionQueryRows: bf16Attention ? Self.headRows(positionQueries, heads: c.heads) : []))
        }
        self.layers = layers
    }

    /// Last-layer hidden states of every sequence, stacked: rows `offsets[s] ..< offsets[s] + lengths[s]`
    /// belong to sequence `s`; the rows between sequences are alignment padding.
    public func forward(_ sequences: [[Int]]) -> (hidden: Tensor, offsets: [Int]) {
        let packed = PackedSequences(sequences, padding: 0)
        let (ids, offsets, lengths) = (packed.ids, packed.offsets, packed.lengths)
        if bf16Attention { return (forwardBF16(ids: ids, offsets: offsets, lengths: lengths), offsets) }
        var x = Kernels.layerNorm(Kernels.gatherRows(wordEmbeddings, ids), gamma: embeddingNormGamma,
                                  beta: embeddingNormBeta, eps: configuration.layerNormEps)
        for layer in layers {
            x = forward(layer, x, offsets: offsets, lengths: lengths)
        }
        return (x, offsets)
    }

    /// The activations of a bf16 forward pass, allocated once and reused by every layer.
    private struct BF16Workspace {
        var x, qkv, context, attended: Tensor
        var xRows, contextRows, attendedRows, innerRows: BF16Rows

        init(tokens t: Int, hidden h: Int, inner: Int) {
            x = Tensor(zeros: [t, h])
            qkv = Tensor(zeros: [t, 3 * h])
            context = Tensor(zeros: [t, h])
            attended = Tensor(zeros: [t, h])
            xRows = BF16Rows(rows: t, columns: h)
            contextRows = BF16Rows(rows: t, columns: h)
            attendedRows = BF16Rows(rows: t, columns: h)
            innerRows = BF16Rows(rows: t, columns: inner)
        }
    }

    /// The forward pass with bf16 products (AVX512-BF16): each dense layer's bias, residual, GELU and the rounding of
    /// the next product's operand run in the product's tile epilogue (`bf16Linear`), LayerNorm writes its bf16 rows
    /// with its output, and the attention's relative positions are tabulated once for all layers.
    private func forwardBF16(ids: [Int], offsets: [Int], lengths: [Int]) -> Tensor {
        let c = configuration, eps = c.layerNormEps
        var w = BF16Workspace(tokens: ids.count, hidden: c.hiddenSize, inner: c.intermediateSize)
        w.x = Kernels.gatherRows(wordEmbeddings, ids)
        Kernels.layerNormBF16(&w.x, gamma: embeddingNormGamma, beta: embeddingNormBeta, eps: eps, rows: &w.xRows)
        let deltas = lengths.map { attentionDeltas(length: $0) }
        for layer in layers {
            layer.qkvWeight.bf16Linear(w.xRows, bias: layer.qkvBias.storage, into: &w.qkv)
            attentionBF16(w.qkv, layer: layer, offsets: offsets, lengths: lengths, deltas: deltas, into: &w.context)
            w.contextRows.round(w.context)
            layer.attentionOutWeight.bf16Linear(w.contextRows, bias: layer.attentionOutBias.storage, residual: w.x, into: &w.attended)
            Kernels.layerNormBF16(&w.attended, gamma: layer.attentionNormGamma, beta: layer.attentionNormBeta, eps: eps, rows: &w.attendedRows)
            layer.intermediateWeight.bf16LinearGELU(w.attendedRows, bias: layer.intermediateBias.storage, into: &w.innerRows)
            layer.outputWeight.bf16Linear(w.innerRows, bias: layer.outputBias.storage, residual: w.attended, into: &w.x)
            Kernels.layerNormBF16(&w.x, gamma: layer.outputNormGamma, beta: layer.outputNormBeta, eps: eps, rows: &w.xRows)
        }
        return w.x
    }

    private func forward(_ layer: Layer, _ x: Tensor, offsets: [Int], lengths: [Int]) -> Tensor {
        let eps = configuration.layerNormEps
        func dense(_ x: Tensor, _ weight: WeightMatrix, _ bias: Tensor) -> Tensor {
            var y = weight.linear(x)
            Kernels.addRowVector(&y, bias.storage)
            return y
        }
        let qkv = dense(x, layer.qkvWeight, layer.qkvBias)
        let context = attention(qkv, layer: layer, offsets: offsets, lengths: lengths)
        var attended = dense(context, layer.attentionOutWeight, layer.attentionOutBias)
        Kernels.addInPlace(&attended, x)
        attended = Kernels.layerNorm(attended, gamma: layer.attentionNormGamma, beta: layer.attentionNormBeta, eps: eps)
        let inner = Kernels.geluErf(dense(attended, layer.intermediateWeight, layer.intermediateBias))
        var out = dense(inner, layer.outputWeight, layer.outputBias)
        Kernels.addInPlace(&out, attended)
        return Kernels.layerNorm(out, gamma: layer.outputNormGamma, beta: layer.outputNormBeta, eps: eps)
    }

    /// Disentangled self-attention of every sequence and head:
    /// score(i, j) = [Qᵢ·Kⱼ + Qᵢ·PK[δ(i,j)] + Kⱼ·PQ[δ(i,j)]] / √(3d), δ(i,j) = clamp(bucket(i−j) + span, 0, 2·span−1).
    /// The c2p and p2c products are computed only for the δ a sequence of this length can reach. Each
    /// (sequence, head) is one task on one core; tasks run in parallel.
    private func attention(_ qkv: Tensor, layer: Layer, offsets: [Int], lengths: [Int]) -> Tensor {
        let c = configuration
        let h = c.hiddenSize, d = c.headSize, ld = 3 * h
        let scale = 1 / (Float(d * 3)).squareRoot()
        var context = Tensor(zeros: [qkv.rows, h])
        let tables = lengths.map { deltaTable(length: $0) }
        let items = PackedSequences.tasks(lengths: lengths, heads: c.heads)
        qkv.storage.withUnsafeBufferPointer { pqkv in
            layer.positionKeys.storage.withUnsafeBufferPointer { ppk in
                layer.positionQueries.storage.withUnsafeBufferPointer { ppq in
                    context.storage.withUnsafeMutableBufferPointer { pctx in
                        let ctxBase = pctx.baseAddress!
                        NumericsThreading.forEachItem(items.count) { item in
                            let (s, head) = items[item]
                            let offset = offsets[s], length = lengths[s], table = tables[s]
                            guard length > 0 else { return }
                            let lo = table.first!, width = table.last! - lo + 1
                            let scores = UnsafeMutablePointer<Float>.allocate(capacity: length * length + 2 * length * width)
                            defer { scores.deallocate() }
                            let c2p = scores + length * length, p2c = c2p + length * width
                            let q = pqkv.baseAddress! + offset * ld + head * d
                            let k = q + h, v = q + 2 * h
                            Kernels.sgemmSerial(transposeB: true, m: length, n: length, k: d, a: q, lda: ld, b: k, ldb: ld, c: scores, ldc: length)
                            Kernels.sgemmSerial(transposeB: true, m: length, n: width, k: d, a: q, lda: ld,
                                                b: ppk.baseAddress! + lo * h + head * d, ldb: h, c: c2p, ldc: width)
                            Kernels.sgemmSerial(transposeB: true, m: length, n: width, k: d, a: k, lda: ld,
                                                b: ppq.baseAddress! + lo * h + head * d, ldb: h, c: p2c, ldc: width)
                            table.withUnsafeBufferPointer { pt in
                                for i in 0..<length {
                                    let row = scores + i * length, crow = c2p + i * width
                                    // δ(i, j) for j = 0..<length runs down the table from i + length − 1.
                                    let deltas = pt.baseAddress! + i + length - 1
                                    for j in 0..<length {
                                        let delta = deltas[-j] - lo
                                        row[j] = (row[j] + crow[delta] + p2c[j * width + delta]) * scale
                                    }
                                    SIMDMath.softmaxInPlace(row, count: length)
                                }
                            }
                            Kernels.sgemmSerial(m: length, n: d, k: length, a: scores, lda: length, b: v, ldb: ld,
                                                c: ctxBase + offset * h + head * d, ldc: h)
                        }
                    }
                }
            }
        }
        return context
    }

    /// The attention of `attention` with bf16 products and a float32 softmax (`bk_bf16_attention_head`), one
    /// (sequence, head) per task as there; a sequence's context rows depend on that sequence alone.
    private func attentionBF16(_ qkv: Tensor, layer: Layer, offsets: [Int], lengths: [Int], deltas tables: [[Int32]],
                               into context: inout Tensor) {
        let c = configuration
        let h = c.hiddenSize, d = c.headSize, ld = 3 * h, span = c.attentionSpan
        let scale = 1 / (Float(d * 3)).squareRoot()
        let rowsPerHead = 2 * span * ((d + 1) / 2)
        precondition(context.rows == qkv.rows && context.columns == h, "attentionBF16: context \(context.shape) for \(qkv.shape)")
        let scratch = lengths.map { bk_bf16_attention_scratch(Int32($0), Int32(d)) }.max() ?? 0
        let items = PackedSequences.tasks(lengths: lengths, heads: c.heads)
        qkv.storage.withUnsafeBufferPointer { pqkv in
            layer.positionKeyRows.withUnsafeBufferPointer { ppk in
                layer.positionQueryRows.withUnsafeBufferPointer { ppq in
                    context.storage.withUnsafeMutableBufferPointer { pctx in
                        let ctxBase = pctx.baseAddress!
                        NumericsThreading.forEachClaimedItem(items.count, scratchBytes: scratch) { item, buffer in
                            let (s, head) = items[item]
                            let offset = offsets[s], length = lengths[s]
                            guard length > 0 else { return }
                            let q = pqkv.baseAddress! + offset * ld + head * d
                            tables[s].withUnsafeBufferPointer { pt in
                                bk_bf16_attention_head(q, q + h, q + 2 * h, Int32(ld), Int32(length), Int32(d),
                                                       ppk.baseAddress! + head * rowsPerHead, ppq.baseAddress! + head * rowsPerHead,
                                                       pt.baseAddress!, scale, ctxBase + offset * h + head * d, Int32(h), buffer)
                            }
                        }
                    }
                }
            }
        }
    }

    /// δ by `bk_bf16_attention_head`'s expanded column t for a sequence of `length` tokens: the relative position
    /// t − 32 − (length − 1), bucketed and clamped as `deltaTable`.
    func attentionDeltas(length: Int) -> [Int32] {
        let c = configuration, span = c.attentionSpan
        return (0..<Int(bk_bf16_attention_columns(Int32(length)))).map { t in
            Int32(min(max(c.bucket(t - 32 - (length - 1)) + span, 0), 2 * span - 1))
        }
    }

    /// A relative-position table [2·span, hidden] per head as bf16 rows (`bk_bf16_round_rows`), heads one after another.
    static func headRows(_ table: Tensor, heads: Int) -> [UInt32] {
        let rows = table.rows, h = table.columns, d = h / heads, d2 = (d + 1) / 2
        var out = [UInt32](repeating: 0, count: heads * rows * d2)
        table.storage.withUnsafeBufferPointer { pt in
            out.withUnsafeMutableBufferPointer { po in
                for head in 0..<heads {
                    bk_bf16_round_rows(pt.baseAddress! + head * d, Int32(rows), Int32(d), Int32(h), po.baseAddress! + head * rows * d2)
                }
            }
        }
        return out
    }

    /// δ for every i − j of a sequence of `length` tokens, indexed by i − j + length − 1 (ascending in i − j,
    /// so the first and last entries bound the rows of the relative table the sequence reads).
    func deltaTable(length: Int) -> [Int] {
        let span = configuration.attentionSpan
        return (-(length - 1)...(length - 1)).map { min(max(configuration.bucket($0) + span, 0), 2 * span - 1) }
    }
}
