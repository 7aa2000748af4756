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
        /// q, k, v stacked [3·inner, d] (the encoder's self-attention), or head by head (the decoder's: head h's q, k
        /// and v rows at 3·h·headSize, so a decoder step computes a head's three in one product call), or q alone
        /// [inner, d] with k, v stacked [2·inner, d] (cross).
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
    /// How jobs' cross-attention keys and values are held: as the precision's own (`EncodedSource`).
    let crossAttentionFormat: QueryAttention.Format

    public convenience init(directory: String, precision: ModelPrecision = .fp32) throws {
        try self.init(configuration: try T5Configuration.load(directory: directory), store: try WeightStore.open(directory: directory),
                      precision: precision)
    }

    /// Takes the tensors by their HF names; every missing, mis-shaped or unexpected tensor is reported at once.
    /// `precision` applies to every projection and the output layer; the embedding table stays exact.
    public init(configuration c: T5Configuration, store: WeightStore, precision: ModelPrecision = .fp32) throws {
        configuration = c
        crossAttentionFormat = switch precision {
        case .fp32: .fp32
        case .bf16: .bf16
        case .int8: .int8
        }
        let reader = store.reader()
        // The hub's .bin files also carry the stacks' tied copies of `shared`.
        reader.ignore { $0 == "encoder.embed_tokens.weight" || $0 == "decoder.embed_tokens.weight" }
        let d = c.modelSize, inner = c.innerSize, ff = c.feedForwardSize
        func matrix(_ t: Tensor) -> WeightMatrix { WeightMatrix(t, precision: precision, compressExact: true) }
        // The Float32 copy of the table is dropped at once: held beside the rest it would add a vocabulary × d_model
        // Float32 matrix to loading's peak.
        shared = WeightMatrix(try reader.take("shared.weight", [c.vocabularySize, d]), compress: true)
        func selfAttention(_ p: String, byHead: Bool = false) throws -> Attention {
            let q = try reader.take(p + "q.weight", [inner, d]), k = try reader.take(p + "k.weight", [inner, d])
            let v = try reader.take(p + "v.weight", [inner, d])
            var stacked: [Float]
            if byHead {
                // Output rows are independent (every kernel and the int8 per-row scales), so reordering them moves
                // each output's bits unchanged.
                let rows = c.headSize * d
                stacked = []
                stacked.reserveCapacity(3 * inner * d)
                for h in 0..<c.heads {
                    for part in [q, k, v] { stacked += part.storage[(h * rows)..<((h + 1) * rows)] }
                }
            } else {
                stacked = q.storage + k.storage + v.storage
            }
            return Attention(query: matrix(Tensor(shape: [3 * inner, d], storage: stacked)),
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
                                selfAttention: try selfAttention(p + "0.SelfAttention.", byHead: true),
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

    /// Cross-attention keys and values of one encoded job for every decoder layer, head by head. A head's keys are
    /// dim-major in blocks of 16 positions (`keyIndex`), the last block padded with zeros: the scores of 16 consecutive
    /// positions are broadcast-FMAs over a contiguous run and a block is one contiguous stretch of memory
    /// (`QueryAttention`). A head's values are one position-major [length, headSize] run. Layer l's head h is one key
    /// region at `keyRegion(layer:head:)` and one value region at `valueRegion(layer:head:)` (`Layout`).
    /// Written once when the job is encoded and read-only afterwards, so every worker of a decoder step reads it
    /// through plain pointers (no reference counting in the step's loops).
    ///
    /// fp32 holds float32. bf16 holds bfloat16 (rounded to nearest even): half the bytes a step reads for them. int8
    /// holds symmetric int8 with one scale per position and head (`QueryAttention.Format.int8`), a quarter of the
    /// bytes, the scales at the end of the head's region so a head stays one region to prefetch. Attention widens them
    /// in registers, exactly, and computes in float32.
    public final class EncodedSource: @unchecked Sendable {
        public let length: Int
        let headSize: Int
        let layout: Layout
        /// Elements in `layout.format`.
        let keys: UnsafeMutableRawPointer
        let values: UnsafeMutableRawPointer

        /// Where a head's keys and values sit (bytes from `keys` and `values`) and how they are held.
        struct Layout: Sendable {
            let format: QueryAttention.Format
            let length: Int
            let heads: Int
            /// Bytes of one head's keys (values), its scales included; the int8 scales, one float per position, start
            /// `keyScaleOffset` (`valueScaleOffset`) bytes into the head's region, 64-byte aligned.
            let keyHeadBytes: Int
            let valueHeadBytes: Int
            let keyScaleOffset: Int
            let valueScaleOffset: Int

            init(format: QueryAttention.Format, length: Int, heads: Int, headSize: Int) {
                (self.format, self.length, self.heads) = (format, length, heads)
                func lines(_ bytes: Int) -> Int { (bytes + 63) / 64 * 64 }
                let keyElements = EncodedSource.keyPositions(length) * headSize * format.unit, valueElements = length * headSize * format.unit
                if format == .int8 {
                    (keyScaleOffset, valueScaleOffset) = (lines(keyElements), lines(valueElements))
                    keyHeadBytes = keyScaleOffset + lines(4 * EncodedSource.keyPositions(length))
                    valueHeadBytes = valueScaleOffset + lines(4 * length)
                } else {
                    (keyScaleOffset, valueScaleOffset, keyHeadBytes, valueHeadBytes) = (keyElements, valueElements, keyElements, valueElements)
                }
            }

            func keyRegion(_ base: UnsafeRawPointer, layer l: Int, head h: Int) -> UnsafeRawBufferPointer {
                UnsafeRawBufferPointer(start: base + (l * heads + h) * keyHeadBytes, count: keyHeadBytes)
            }

            func valueRegion(_ base: UnsafeRawPointer, layer l: Int, head h: Int) -> UnsafeRawBufferPointer {
                UnsafeRawBufferPointer(start: base + (l * heads + h) * valueHeadBytes, count: valueHeadBytes)
            }

            /// A region's scales (int8), else nil.
            func keyScales(_ region: UnsafeRawBufferPointer) -> UnsafePointer<Float>? { scales(region, at: keyScaleOffset) }
            func valueScales(_ region: UnsafeRawBufferPointer) -> UnsafePointer<Float>? { scales(region, at: valueScaleOffset) }

            private func scales(_ region: UnsafeRawBufferPointer, at offset: Int) -> UnsafePointer<Float>? {
                format == .int8 ? UnsafePointer((region.baseAddress! + offset).assumingMemoryBound(to: Float.self)) : nil
            }
        }

        init(length: Int, layers: Int, heads: Int, headSize: Int, format: QueryAttention.Format) {
            self.length = length
            self.headSize = headSize
            layout = Layout(format: format, length: length, heads: heads, headSize: headSize)
            // Zeroed: the keys' padding positions (and their int8 scales) are read by the 16-wide kernels.
            let keyBytes = max(64, layers * heads * layout.keyHeadBytes), valueBytes = max(64, layers * heads * layout.valueHeadBytes)
            keys = .allocate(byteCount: keyBytes, alignment: 64)
            keys.initializeMemory(as: UInt8.self, repeating: 0, count: keyBytes)
            values = .allocate(byteCount: valueBytes, alignment: 64)
            values.initializeMemory(as: UInt8.self, repeating: 0, count: valueBytes)
        }

        /// A source of no tokens (an emptied slot).
        public convenience init() { self.init(length: 0, layers: 0, heads: 0, headSize: 0, format: .fp32) }

        deinit {
            keys.deallocate()
            values.deallocate()
        }

        var format: QueryAttention.Format { layout.format }

        /// Positions a head's keys take room for: the length rounded up to whole blocks of 16.
        static func keyPositions(_ length: Int) -> Int { (length + 15) / 16 * 16 }
        var keyPositions: Int { Self.keyPositions(length) }

        /// Where dimension `i` of position `j` sits among a head's keys (elements).
        func keyIndex(dimension i: Int, position j: Int) -> Int { ((j / 16) * headSize + i) * 16 + j % 16 }

        func keyRegion(layer l: Int, head h: Int) -> UnsafeRawBufferPointer { layout.keyRegion(keys, layer: l, head: h) }
        func valueRegion(layer l: Int, head h: Int) -> UnsafeRawBufferPointer { layout.valueRegion(values, layer: l, head: h) }

        /// Stores position t of layer l: `keyRow` and `valueRow` hold headSize floats per head, head after head.
        func store(layer l: Int, position t: Int, keyRow: UnsafePointer<Float>, valueRow: UnsafePointer<Float>) {
            for h in 0..<layout.heads {
                let keyRegion = keyRegion(layer: l, head: h), valueRegion = valueRegion(layer: l, head: h)
                Self.hold(keyRow + h * headSize, count: headSize, into: UnsafeMutableRawPointer(mutating: keyRegion.baseAddress!),
                          at: keyIndex(dimension: 0, position: t), stride: 16, scale: layout.keyScales(keyRegion).map { UnsafeMutablePointer(mutating: $0 + t) },
                          format: format)
                Self.hold(valueRow + h * headSize, count: headSize, into: UnsafeMutableRawPointer(mutating: valueRegion.baseAddress!),
                          at: t * headSize, stride: 1, scale: layout.valueScales(valueRegion).map { UnsafeMutablePointer(mutating: $0 + t) }, format: format)
            }
        }

        /// Layer l's head h as held: its keys in the kernel's order (`keyPositions·headSize`, see `keyIndex`) and values
        /// ([length, headSize]) as the floats of their elements (int8: the integers), with int8 the scales of each position.
        func held(layer l: Int, head h: Int) -> (keys: [Float], keyScales: [Float]?, values: [Float], valueScales: [Float]?) {
            let keyRegion = keyRegion(layer: l, head: h), valueRegion = valueRegion(layer: l, head: h)
            func floats(_ block: UnsafeRawPointer, _ count: Int) -> [Float] {
                (0..<count).map { i in
                    switch format {
                    case .fp32: block.load(fromByteOffset: 4 * i, as: Float.self)
                    case .bf16: Float(bitPattern: UInt32(block.load(fromByteOffset: 2 * i, as: UInt16.self)) << 16)
                    case .int8: Float(block.load(fromByteOffset: i, as: Int8.self))
                    }
                }
            }
            return (floats(keyRegion.baseAddress!, keyPositions * headSize), layout.keyScales(keyRegion).map { Array(UnsafeBufferPointer(start: $0, count: keyPositions)) },
                    floats(valueRegion.baseAddress!, length * headSize), layout.valueScales(valueRegion).map { Array(UnsafeBufferPointer(start: $0, count: length)) })
        }

        /// Stores `count` values from `from` at elements `index`, `index + stride`, … of `block`: as they are (fp32),
        /// rounded to bf16, or as int8 with their scale written to `scale` (max |x| / 127; q = round-half-even(x · 127 /
        /// max |x|), the activations' rule in int8_gemm.c).
        static func hold(_ from: UnsafePointer<Float>, count: Int, into block: UnsafeMutableRawPointer, at index: Int, stride: Int,
                         scale: UnsafeMutablePointer<Float>?, format: QueryAttention.Format) {
            let span = count > 0 ? (count - 1) * stride + 1 : 0
            switch format {
            case .fp32:
                let out = (block + 4 * index).bindMemory(to: Float.self, capacity: span)
                for i in 0..<count { out[i * stride] = from[i] }
            case .bf16:
                let out = (block + 2 * index).bindMemory(to: UInt16.self, capacity: span)
                for i in 0..<count { out[i * stride] = WeightMatrix.roundToBF16(from[i]) }
            case .int8:
                let out = (block + index).bindMemory(to: Int8.self, capacity: span)
                var top: Float = 0
                for i in 0..<count { top = max(top, abs(from[i])) }
                let inverse: Float = top > 0 ? 127 / top : 0
                scale![0] = top / 127
                for i in 0..<count { out[i * stride] = Int8(max(-127, min(127, (from[i] * inverse).rounded(.toNearestOrEven)))) }
            }
        }
    }

    /// Encodes the jobs' inputs and precomputes each job's cross-attention keys and values.
    public func encodeSources(_ sequences: [[Int]]) -> [EncodedSource] {
        let (hidden, offsets) = encode(sequences)
        let inner = configuration.innerSize, heads = configuration.heads, dh = configuration.headSize
        let sources = sequences.map {
            EncodedSource(length: $0.count, layers: decoderBlocks.count, heads: heads, headSize: dh, format: crossAttentionFormat)
        }
        for (l, block) in decoderBlocks.enumerated() {
            let kv = block.crossAttention.keyValue!.linear(hidden)
            kv.storage.withUnsafeBufferPointer { pkv in
                for (source, offset) in zip(sources, offsets) {
                    for t in 0..<source.length {
                        let row = pkv.baseAddress! + (offset + t) * 2 * inner
                        source.store(layer: l, position: t, keyRow: row, valueRow: row + inner)
                    }
                }
            }
        }
        return sources
    }

    /// A row's self-attention keys and values: per layer a block of heads × `capacity` positions × headSize (keys
    /// and values apart; a head's positions contiguous, as in `EncodedSource`), so a step writes its position of every
    /// layer in place. Mutated only by `decodeStep` through a row that
    /// holds the only reference (`DecoderRow.prepareAppend` copies a shared cache first).
    final class SelfAttentionCache: @unchecked Sendable {
        let layers: Int
        let heads: Int
        let headSize: Int
        let capacity: Int
        let keys: UnsafeMutablePointer<Float>
        let values: UnsafeMutablePointer<Float>
        var inner: Int { heads * headSize }

        init(layers: Int, heads: Int, headSize: Int, capacity: Int) {
            self.layers = layers
            self.heads = heads
            self.headSize = headSize
            self.capacity = capacity
            let inner = heads * headSize
            keys = .allocate(capacity: max(1, layers * capacity * inner))
            values = .allocate(capacity: max(1, layers * capacity * inner))
        }

        deinit {
            keys.deallocate()
            values.deallocate()
        }

        /// Layer l's block: head h's position p at `(h·capacity + p)·headSize`.
        func layerKeys(_ l: Int) -> UnsafeMutablePointer<Float> { keys + l * capacity * inner }
        func layerValues(_ l: Int) -> UnsafeMutablePointer<Float> { values + l * capacity * inner }

        /// A cache of `capacity` positions holding this one's first `length` positions of every layer and head.
        func copy(length: Int, capacity: Int) -> SelfAttentionCache {
            let copy = SelfAttentionCache(layers: layers, heads: heads, headSize: headSize, capacity: capacity)
            for l in 0..<layers {
                for h in 0..<heads {
                    let from = h * self.capacity * headSize, to = h * capacity * headSize
                    (copy.layerKeys(l) + to).initialize(from: layerKeys(l) + from, count: length * headSize)
                    (copy.layerValues(l) + to).initialize(from: layerValues(l) + from, count: length * headSize)
                }
            }
            return copy
        }

        /// Layer l's first `length` positions as [length, inner] (position-major, as the q/k/v product lays them out).
        func positionMajor(_ block: UnsafeMutablePointer<Float>, length: Int) -> [Float] {
            var out = [Float](repeating: 0, count: length * inner)
            for p in 0..<length {
                for h in 0..<heads {
                    for i in 0..<headSize { out[p * inner + h * headSize + i] = block[(h * capacity + p) * headSize + i] }
                }
            }
            return out
        }
    }

    /// One decoding row (a greedy sequence or one beam): its self-attention cache. Rows are values; beams that share
    /// a parent share its cache until a step appends to one of them, which then copies it (once per reorder, all
    /// layers at once, before the step's workers start).
    public struct DecoderRow: Sendable {
        public let source: Int
        public internal(set) var length = 0
        var cache: SelfAttentionCache

        init(source: Int, layers: Int, heads: Int, headSize: Int) {
            self.source = source
            cache = SelfAttentionCache(layers: layers, heads: heads, headSize: headSize, capacity: 0)
        }

        /// Gives this row a cache of its own with room for position `length` (doubling the room when it is full).
        mutating func prepareAppend() {
            let shared = !isKnownUniquelyReferenced(&cache)
            guard shared || cache.capacity <= length else { return }
            let capacity = cache.capacity > length ? cache.capacity : max(16, 2 * cache.capacity)
            cache = cache.copy(length: length, capacity: capacity)
        }

        /// Layer l's cached keys or values, [length, inner].
        func cachedKeys(layer l: Int) -> [Float] { cache.positionMajor(cache.layerKeys(l), length: length) }
        func cachedValues(layer l: Int) -> [Float] { cache.positionMajor(cache.layerValues(l), length: length) }
    }

    public func makeRow(source: Int) -> DecoderRow {
        DecoderRow(source: source, layers: configuration.decoderLayers, heads: configuration.heads, headSize: configuration.headSize)
    }

    /// What one row's attention reads in a step, taken before the workers start.
    private struct RowMemory {
        let selfKeys: UnsafeMutablePointer<Float>
        let selfValues: UnsafeMutablePointer<Float>
        /// Positions of room in the self-attention cache: a head's block is `capacity·headSize` floats, a layer's
        /// `capacity·inner`.
        let capacity: Int
        /// Positions attended in self-attention, this step's included.
        let positions: Int
        let crossKeys: UnsafeRawPointer
        let crossValues: UnsafeRawPointer
        let cross: EncodedSource.Layout
    }

    /// The phases of a decoder step, in order: six per layer, then the output layer.
    public static let decodeStepPhases = ["self-attention: q/k/v product, cache write, attention", "self-attention output + residual",
                                          "cross-attention: query product, attention", "cross-attention output + residual",
                                          "FFN wi_0/wi_1 product + gate", "FFN wo product + residual", "output layer"]

    /// Weight bytes each phase kind of `decodeStepPhases` reads in one step (all layers).
    public var decodeStepPhaseBytes: [Int] {
        [decoderBlocks.reduce(0) { $0 + $1.selfAttention.query.bytes }, decoderBlocks.reduce(0) { $0 + $1.selfAttention.output.bytes },
         decoderBlocks.reduce(0) { $0 + $1.crossAttention.query.bytes }, decoderBlocks.reduce(0) { $0 + $1.crossAttention.output.bytes },
         decoderBlocks.reduce(0) { $0 + $1.feedForwardIn.bytes }, decoderBlocks.reduce(0) { $0 + $1.feedForwardOut.bytes }, outputLayer.bytes]
    }

    /// Feeds one token to each row and returns next-token logits, [rows, vocabulary]. Every product treats the rows
    /// as independent items (the kernels of `linearRows`), so a row's logits never depend on the other rows of the step.
    ///
    /// The step runs on `NumericsThreading.team` as six phases per layer and one for the output layer. The output
    /// projections and the FFN are split into blocks of 64 output columns (the residual add and the FFN gate done in
    /// the block that produced the columns); each attention phase into heads, a head's chunk computing its own query
    /// (and key and value) columns for every row, writing them to the caches and attending, so the products, the cache
    /// writes and the attention of a head need no barrier between them. Each worker normalizes (and rounds, for bf16
    /// pairs) its own copy of a product's input. No value depends on the split. With `profile`, the time of each phase
    /// is added there.
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
        for r in 0..<m { rows[r].prepareAppend() }
        let memory = UnsafeMutablePointer<RowMemory>.allocate(capacity: m)
        defer { memory.deallocate() }
        for r in 0..<m {
            let cache = rows[r].cache, source = sources[rows[r].source]
            memory[r] = RowMemory(selfKeys: cache.keys, selfValues: cache.values, capacity: cache.capacity,
                                  positions: rows[r].length + 1, crossKeys: source.keys, crossValues: source.values, cross: source.layout)
        }
        // The causal bias by distance back from the query, per head: bucket once per distance, not per row and key.
        let maxPositions = (0..<m).map { memory[$0].positions }.max()!
        let selfBias = UnsafeMutablePointer<Float>.allocate(capacity: heads * maxPositions)
        defer { selfBias.deallocate() }
        decoderBias.storage.withUnsafeBufferPointer { pb in
            for distance in 0..<maxPositions {
                let bucket = c.bucket(-distance, bidirectional: false)
                for head in 0..<heads { selfBias[head * maxPositions + distance] = pb[bucket * heads + head] }
            }
        }
        // Rows grouped by source (the beams of a job, or one source in several rows), so cross-attention reads each key
        // and value vector of a source once for all its rows: group g is rows crossRows[crossStarts[g] ..< crossStarts[g + 1]].
        var members: [Int: [Int32]] = [:], order: [Int] = []
        for r in 0..<m {
            if members[rows[r].source] == nil { order.append(rows[r].source) }
            members[rows[r].source, default: []].append(Int32(r))
        }
        let groups = order.count
        let crossRows = UnsafeMutablePointer<Int32>.allocate(capacity: m)
        let crossStarts = UnsafeMutablePointer<Int>.allocate(capacity: groups + 1)
        defer {
            crossRows.deallocate()
            crossStarts.deallocate()
        }
        crossStarts[0] = 0
        for (g, source) in order.enumerated() {
            let group = members[source]!
            for (i, r) in group.enumerated() { crossRows[crossStarts[g] + i] = r }
            crossStarts[g + 1] = crossStarts[g] + group.count
        }
        let crossScoreCount = max(1, order.map { members[$0]!.count * sources[$0].length }.max()!)
        // Step buffers: the q/k/v product, the cross-attention queries, the attention context, a product before its
        // residual add, the stacked wi_0/wi_1 product and the gated FFN activations.
        let sizes = [m * 3 * inner, m * inner, m * inner, m * d, m * 2 * ff, m * ff]
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: sizes.reduce(0, +))
        defer { buffer.deallocate() }
        buffer.initialize(repeating: 0, count: sizes.reduce(0, +))
        let qkv = buffer, query = qkv + sizes[0], context = query + sizes[1], projected = context + sizes[2]
        let both = projected + sizes[3], gated = both + sizes[4]
        let widest = max(d, inner, ff)
        // Columns per chunk of a product phase: two or more panels per call, so a streaming tile carries its
        // prefetch into the next panel (bk_i8_gemm) instead of each chunk starting at memory latency.
        let width = 128
        let blocks = { (n: Int) in (n + width - 1) / width }
        func block(_ chunk: Int, of n: Int) -> Range<Int> { (chunk * width)..<min(n, chunk * width + width) }
        let phases = 6 * decoderBlocks.count + 1
        let clock = profile == nil ? nil : UnsafeMutablePointer<UInt64>.allocate(capacity: phases)
        defer { clock?.deallocate() }
        let teamStarted = DispatchTime.now().uptimeNanoseconds
        // Pointers taken once, outside the workers: concurrent `withUnsafe…` accesses to one array would conflict.
        logits.withUnsafeMutableBufferPointer { logitsBuffer in
            let out = logitsBuffer.baseAddress!
            NumericsThreading.team.run(phases: phases, clock: clock) { team in
                // This worker's copy of a product's input (normalized, or as given), its bf16 pairs, attention scores.
                let normed = UnsafeMutablePointer<Float>.allocate(capacity: m * d)
                let rounded = UnsafeMutablePointer<UInt32>.allocate(capacity: m * max((widest + 1) / 2, (widest + 3) / 4 + 1))
                let scores = UnsafeMutablePointer<Float>.allocate(capacity: maxPositions)
                // One source group's cross-attention scores, then probabilities, a row's run after another.
                let crossScores = UnsafeMutablePointer<Float>.allocate(capacity: crossScoreCount)
                defer {
                    normed.deallocate()
                    rounded.deallocate()
                    scores.deallocate()
                    crossScores.deallocate()
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
                    team.phase(heads, prepare: { normalize(layer.selfAttentionNorm, for: selfAttention.query) }) { head in
                        // The head's q, k and v: adjacent columns of the head-by-head weight.
                        let start = head * dh, first = 3 * start
                        product(selfAttention.query, normed, columns: first..<(first + 3 * dh), into: qkv, ldy: 3 * inner)
                        for r in 0..<m {
                            let row = memory[r], base = qkv + r * 3 * inner + first, offset = (l * heads + head) * row.capacity * dh
                            let keys = row.selfKeys + offset, values = row.selfValues + offset, at = (row.positions - 1) * dh
                            (keys + at).update(from: base + dh, count: dh)
                            (values + at).update(from: base + 2 * dh, count: dh)
                            Self.attend(base, keys: keys, values: values, positions: row.positions, headSize: dh,
                                        bias: selfBias + head * maxPositions, scores: scores, into: context + r * inner + start)
                        }
                    }
                    team.phase(blocks(d), prepare: { selfAttention.output.roundRows(context, rows: m, into: rounded) }) { chunk in
                        product(selfAttention.output, context, columns: block(chunk, of: d), into: projected, ldy: d, residual: true)
                    }
                    // Cross-attention over the row's job's encoder states.
                    team.phase(heads, prepare: { normalize(layer.crossAttentionNorm, for: crossAttention.query) }) { head in
                        let start = head * dh
                        // This head's keys and values of group g's job. Each is a separate region, so a kernel
                        // prefetches the one read after it: the values during the scores, the next job's keys during
                        // a context.
                        func region(_ g: Int) -> (keys: UnsafeRawBufferPointer, values: UnsafeRawBufferPointer) {
                            let row = memory[Int(crossRows[crossStarts[g]])]
                            return (row.cross.keyRegion(row.crossKeys, layer: l, head: head), row.cross.valueRegion(row.crossValues, layer: l, head: head))
                        }
                        // The first job's keys arrive while the head's queries are computed.
                        QueryAttention.prefetch(region(0).keys)
                        product(crossAttention.query, normed, columns: start..<(start + dh), into: query, ldy: inner)
                        for g in 0..<groups {
                            let group = crossRows + crossStarts[g], count = crossStarts[g + 1] - crossStarts[g]
                            let cross = memory[Int(group[0])].cross, n = cross.length, (keys, values) = region(g)
                            let next = g + 1 < groups ? region(g + 1) : nil
                            QueryAttention.scores(query + start, ldq: inner, rows: group, count: count, keys: keys.baseAddress!,
                                                  format: cross.format, scales: cross.keyScales(keys), length: n, headSize: dh,
                                                  into: crossScores, lds: n, ahead: values)
                            for i in 0..<count { SIMDMath.softmaxInPlace(crossScores + i * n, count: n) }
                            QueryAttention.context(crossScores, ldp: n, values: values.baseAddress!, format: cross.format,
                                                   scales: cross.valueScales(values), length: n, headSize: dh, rows: group, count: count,
                                                   into: context + start, ldo: inner, ahead: next?.keys)
                        }
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
        }
        for r in rows.indices { rows[r].length += 1 }
        let result = Tensor(shape: [m, vocabulary], storage: logits)
        if let profile, let clock { profile.add(started: started, teamStarted: teamStarted, phaseEnds: clock, phases: phases,
                                                finished: DispatchTime.now().uptimeNanoseconds) }
        return result
    }

    /// One head of one row's self-attention over its `positions` cached keys and values (the head's contiguous
    /// [positions, headSize] runs), into `out` (the head's `headSize` values). `bias` holds the causal relative bias by
    /// distance back from the query (the last position).
    @inline(__always)
    private static func attend(_ q: UnsafePointer<Float>, keys: UnsafePointer<Float>, values: UnsafePointer<Float>, positions: Int,
                               headSize dh: Int, bias: UnsafePointer<Float>, scores: UnsafeMutablePointer<Float>,
                               into out: UnsafeMutablePointer<Float>) {
        out.update(repeating: 0, count: dh)
        for j in 0..<positions { scores[j] = SIMDMath.dot(q, keys + j * dh, count: dh) + bias[positions - 1 - j] }
        SIMDMath.softmaxInPlace(scores, count: positions)
        for j in 0..<positions { SIMDMath.axpy(scores[j], values + j * dh, into: out, count: dh) }
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
