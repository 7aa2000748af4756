import BlendCore
import CKernels
import Foundation
import XCTest
@testable import Inference

/// The bf16 attention kernel (`bk_bf16_attention_head`) against a reference loop with the same rounding and the same
/// order of float32 operations, its exponential against libm, and a bf16 encoder's batch independence.
final class BF16AttentionTests: XCTestCase {
    typealias Generator = BitExactnessTests.Generator

    override func setUpWithError() throws {
        guard WeightMatrix.vectorBF16 else { throw XCTSkip("no AVX512-BF16 here: bf16 attention runs in float32") }
    }

    /// A float rounded to bf16 as the kernel's conversion does it (subnormals become zero, as the dot-product
    /// instruction would read them anyway).
    func bf16(_ v: Float) -> Float {
        abs(v) < Float.leastNormalMagnitude ? 0 : Float(bitPattern: UInt32(WeightMatrix.roundToBF16(v)) << 16)
    }

    /// vdpbf16ps's sum over k pairs: per pair the odd product, then the even one, added in float32 (each product of
    /// two bf16 values is exact in float32).
    func pairDot(_ a: [Float], _ b: [Float]) -> Float {
        var acc: Float = 0
        for p in stride(from: 0, to: a.count, by: 2) {
            acc += p + 1 < a.count ? a[p + 1] * b[p + 1] : 0
            acc += a[p] * b[p]
        }
        return acc
    }

    func exp(_ x: [Float]) -> [Float] {
        var y = [Float](repeating: 0, count: x.count)
        x.withUnsafeBufferPointer { px in y.withUnsafeMutableBufferPointer { bk_bf16_exp(px.baseAddress!, $0.baseAddress!, Int32(x.count)) } }
        return y
    }

    func testBF16ExpIsWithinThreeUlpOfLibmAndZeroBelowItsRange() {
        var g = Generator(state: 51)
        let x = (0..<4000).map { _ in -90 * Float(g.next() >> 40) / Float(1 << 24) } + [0, -0.0, -1e-30, -87.29, -87.31, -200]
        for (v, e) in zip(x, exp(x)) {
            if v < -87.3 {
                XCTAssertEqual(e, 0, "exp(\(v))")
                continue
            }
            let exact = Foundation.exp(Double(v))
            XCTAssertEqual(Double(e), exact, accuracy: 3 * Double(Float(exact).ulp), "exp(\(v))")
        }
    }

    struct Head {
        var length: Int, d: Int, span2: Int, ld: Int
        var rows: [Float]  // [length, ld]: q at column 0, k at d + 1, v at 2d + 3
        var positionKeys: [Float], positionQueries: [Float]  // [span2, d]
        var deltas: [Int32]  // δ by expanded column t: relative position t − 32 − (length − 1)
        var scale: Float
        var q: Int { 0 }
        var k: Int { d + 1 }
        var v: Int { 2 * d + 3 }
        func delta(_ i: Int, _ j: Int) -> Int { Int(deltas[i - j + length - 1 + 32]) }
    }

    func randomHead(_ g: inout Generator, length: Int, d: Int) -> Head {
        let span2 = 2 * g.int(1..<300), ld = 3 * d + 3 + g.int(0..<5)
        let columns = Int(bk_bf16_attention_columns(Int32(length)))
        // A clamped, coarsened ramp like DeBERTa's buckets, or arbitrary rows: the kernel reads whatever δ says.
        let deltas: [Int32]
        if g.int(0..<2) == 0 {
            let shift = g.int(0..<3)
            deltas = (0..<columns).map { Int32(min(max((($0 - 32 - (length - 1)) >> shift) + span2 / 2, 0), span2 - 1)) }
        } else {
            deltas = (0..<columns).map { _ in Int32(g.int(0..<span2)) }
        }
        return Head(length: length, d: d, span2: span2, ld: ld, rows: g.floats(length * ld).map { $0 * 2 },
                    positionKeys: g.floats(span2 * d), positionQueries: g.floats(span2 * d), deltas: deltas,
                    scale: 1 / Float(3 * d).squareRoot())
    }

    /// The kernel's output rows [length, d], written at stride `ldctx` into a buffer that is checked for stray writes.
    func kernel(_ t: Head) -> [Float] {
        let pk = DebertaEncoder.headRows(Tensor(shape: [t.span2, t.d], storage: t.positionKeys), heads: 1)
        let pq = DebertaEncoder.headRows(Tensor(shape: [t.span2, t.d], storage: t.positionQueries), heads: 1)
        let ldctx = t.d + 3
        var ctx = [Float](repeating: .nan, count: t.length * ldctx)
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: bk_bf16_attention_scratch(Int32(t.length), Int32(t.d)), alignment: 16)
        defer { scratch.deallocate() }
        t.rows.withUnsafeBufferPointer { pr in
            ctx.withUnsafeMutableBufferPointer { pc in
                bk_bf16_attention_head(pr.baseAddress! + t.q, pr.baseAddress! + t.k, pr.baseAddress! + t.v, Int32(t.ld), Int32(t.length),
                                       Int32(t.d), pk, pq, t.deltas, t.scale, pc.baseAddress!, Int32(ldctx), scratch)
            }
        }
        for i in 0..<t.length {
            for c in t.d..<ldctx { XCTAssertTrue(ctx[i * ldctx + c].isNaN, "stray write at row \(i) column \(c)") }
        }
        return (0..<t.length).flatMap { ctx[($0 * ldctx)..<($0 * ldctx + t.d)] }
    }

    /// The same attention spelled out: bf16 operands, pair-ordered float32 sums, ((QK + c2p) + p2c) · scale, the
    /// maximum subtracted, exponentials summed in the kernel's documented order (16 lane sums over j ≡ l mod 16, added
    /// pairwise), probabilities e · (1 / sum) rounded to bf16.
    func reference(_ t: Head) -> [Float] {
        let (n, d) = (t.length, t.d)
        func row(_ i: Int, _ column: Int) -> [Float] { (0..<d).map { bf16(t.rows[i * t.ld + column + $0]) } }
        let q = (0..<n).map { row($0, t.q) }, k = (0..<n).map { row($0, t.k) }, v = (0..<n).map { row($0, t.v) }
        let pk = (0..<t.span2).map { r in (0..<d).map { bf16(t.positionKeys[r * d + $0]) } }
        let pq = (0..<t.span2).map { r in (0..<d).map { bf16(t.positionQueries[r * d + $0]) } }
        var out: [Float] = []
        for i in 0..<n {
            var s = (0..<n).map { j -> Float in
                let delta = t.delta(i, j)
                return ((pairDot(q[i], k[j]) + pairDot(q[i], pk[delta])) + pairDot(k[j], pq[delta])) * t.scale
            }
            let top = s.max()!
            s = exp(s.map { $0 - top })
            var lanes = [Float](repeating: 0, count: 16)
            for (j, e) in s.enumerated() { lanes[j % 16] += e }
            for width in [8, 4, 2, 1] { for l in 0..<width { lanes[l] = lanes[l] + lanes[l + width] } }
            let inverse = 1 / lanes[0]
            let p = s.map { bf16($0 * inverse) }
            for c in 0..<d { out.append(pairDot(p, (0..<n).map { v[$0][c] })) }
        }
        return out
    }

    func testBF16AttentionHeadMatchesTheReferenceLoopOnGeneratedShapes() {
        var g = Generator(state: 52)
        // One row, odd and even lengths around the 32-row blocks, odd head widths and DeBERTa's 64.
        var shapes = [(1, 64), (2, 1), (31, 8), (32, 64), (33, 7), (65, 16), (70, 33), (130, 64)]
        for _ in 0..<6 { shapes.append((g.int(1..<200), g.int(1..<80))) }
        for (length, d) in shapes {
            let head = randomHead(&g, length: length, d: d)
            XCTAssertEqual(kernel(head).map(\.bitPattern), reference(head).map(\.bitPattern), "length \(length), d \(d)")
        }
    }

    // MARK: A bf16 encoder

    /// A small DeBERTa-v3 shape with DeBERTa-large's head width (64) and log-bucketed positions past 16 tokens.
    func encoderNetwork(precision: ModelPrecision) throws -> PairRMNetwork {
        var c = PairRMParityTests.model.configuration
        (c.hiddenSize, c.heads, c.intermediateSize, c.layers) = (128, 2, 256, 2)
        (c.positionBuckets, c.maxRelativePositions, c.vocabularySize) = (32, 128, 300)
        let h = c.hiddenSize, p = PairRMNetwork.backbonePrefix
        var shapes: [String: [Int]] = [p + "embeddings.word_embeddings.weight": [c.vocabularySize, h],
                                       p + "encoder.rel_embeddings.weight": [2 * c.attentionSpan, h],
                                       "head_layer.1.weight": [h, 2 * h], "head_layer.1.bias": [h],
                                       "head_layer.4.weight": [c.tasks, h], "head_layer.4.bias": [c.tasks]]
        for norm in ["embeddings.LayerNorm", "encoder.LayerNorm"] { shapes[p + norm + ".weight"] = [h]; shapes[p + norm + ".bias"] = [h] }
        for l in 0..<c.layers {
            let q = p + "encoder.layer.\(l)."
            let linears = [("attention.self.query_proj", h, h), ("attention.self.key_proj", h, h), ("attention.self.value_proj", h, h),
                           ("attention.output.dense", h, h), ("intermediate.dense", c.intermediateSize, h), ("output.dense", h, c.intermediateSize)]
            for (name, out, input) in linears { shapes[q + name + ".weight"] = [out, input]; shapes[q + name + ".bias"] = [out] }
            for norm in ["attention.output.LayerNorm", "output.LayerNorm"] { shapes[q + norm + ".weight"] = [h]; shapes[q + norm + ".bias"] = [h] }
        }
        let store = WeightStore.synthetic(shapes: shapes) { name, shape in
            // Seeded by the name (FNV-1a), so every build of this network has the same weights.
            var g = Generator(state: name.utf8.reduce(0xCBF2_9CE4_8422_2325) { ($0 ^ UInt64($1)) &* 0x100_0000_01B3 })
            let count = shape.reduce(1, *)
            if name.hasSuffix("LayerNorm.weight") { return Tensor(shape: shape, storage: [Float](repeating: 1, count: count)) }
            return Tensor(shape: shape, storage: g.floats(count).map { $0 * 0.1 })
        }
        return try PairRMNetwork(configuration: c, store: store, precision: precision)
    }

    func randomPair(_ g: inout Generator, vocabulary: Int) -> PairInput {
        let length = g.int(1..<150)
        return PairInput(ids: (0..<length).map { _ in g.int(0..<vocabulary) }, sourcePosition: 0,
                         candidate1Position: g.int(0..<length), candidate2Position: g.int(0..<length))
    }

    func testBF16PairLogitsAreIdenticalAloneMixedAndOnOneThread() throws {
        let network = try encoderNetwork(precision: .bf16)
        XCTAssertTrue(network.encoder.bf16Attention)
        let vocabulary = network.configuration.vocabularySize, h = network.configuration.hiddenSize
        var g = Generator(state: 53)
        let pairs = (0..<8).map { _ in randomPair(&g, vocabulary: vocabulary) }
        let alone = pairs.map { network.logits([$0])[0].bitPattern }
        let aloneStates = pairs.map { p in network.encoder.forward([p.ids]).hidden.storage[0..<(p.ids.count * h)].map(\.bitPattern) }
        defer { NumericsThreading.configure(threads: 0) }
        for round in 0..<4 {
            NumericsThreading.configure(threads: round % 2 == 0 ? 1 : 0)
            let others = (0..<g.int(1..<5)).map { _ in randomPair(&g, vocabulary: vocabulary) }
            let mixed = g.shuffle(pairs.indices.map { ($0, pairs[$0]) } + others.map { (-1, $0) })
            let logits = network.logits(mixed.map(\.1))
            let (hidden, offsets) = network.encoder.forward(mixed.map(\.1.ids))
            for (slot, (index, pair)) in mixed.enumerated() where index >= 0 {
                XCTAssertEqual(logits[slot].bitPattern, alone[index], "round \(round): pair \(index) at slot \(slot)")
                let start = offsets[slot] * h
                XCTAssertEqual(hidden.storage[start..<(start + pair.ids.count * h)].map(\.bitPattern), aloneStates[index],
                               "round \(round): states of pair \(index) at slot \(slot)")
            }
        }
        // The same network in fp32: bf16 keeps the logits close (they are O(0.1) here).
        let exact = try encoderNetwork(precision: .fp32)
        let delta = zip(exact.logits(pairs), network.logits(pairs)).map { abs($0 - $1) }.max()!
        print("bf16 encoder (hidden 128, d 64) vs fp32: max |Δ logit| \(delta)")
        XCTAssertLessThan(delta, 0.05)
    }
}
