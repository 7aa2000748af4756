import Foundation
import XCTest
@testable import Inference

/// The cross-attention kernel (`QueryAttention`, query_attention.c) against a plain reference loop: every score and
/// context value is the same fused multiply-add chain in the same order, so the comparison is bit for bit, on every
/// path the CPU runs, for float32, bf16-held and int8-held (with their scales) keys and values, lengths 1–600 (multiples
/// of 16 and not), head sizes 64 and odd ones, several rows sharing one source in any order of row indices, and each row
/// alone.
final class QueryAttentionTests: XCTestCase {
    typealias Generator = BitExactnessTests.Generator

    override func tearDown() {
        QueryAttention.usePath(nil)
        super.tearDown()
    }

    /// One head's keys ([d][length], dim-major) and values ([length][d]) as the floats of their held elements (int8:
    /// the integers, some at ±127), with int8 a scale per position for each (zero, tiny and huge ones among them).
    struct Head {
        let length: Int
        let d: Int
        let format: QueryAttention.Format
        let keys: [Float]
        let values: [Float]
        let keyScales: [Float]?
        let valueScales: [Float]?

        init(_ g: inout Generator, length: Int, d: Int, format: QueryAttention.Format) {
            (self.length, self.d, self.format) = (length, d, format)
            func draw(_ count: Int) -> [Float] {
                g.floats(count).map {
                    switch format {
                    case .fp32: 2 * $0
                    case .bf16: Float(bitPattern: UInt32(WeightMatrix.roundToBF16(2 * $0)) << 16)
                    case .int8: max(-127, min(127, (140 * $0).rounded()))
                    }
                }
            }
            func scales(_ g: inout Generator) -> [Float]? {
                guard format == .int8 else { return nil }
                return (0..<length).map { j in
                    let u = g.floats(1)[0]
                    return j % 29 == 7 ? 0 : (j % 31 == 3 ? 1e-30 : (j % 37 == 5 ? 3e25 : abs(u) / 40 + 1e-3))
                }
            }
            keys = draw(d * length)
            values = draw(length * d)
            keyScales = scales(&g)
            valueScales = scales(&g)
        }

        /// The keys in the kernel's blocks of 16 positions (dimension i of position j at ((j / 16)·d + i)·16 + j % 16),
        /// the last block's spare lanes holding a NaN that must not reach any result.
        var blockedKeys: [Float] {
            var out = [Float](repeating: .nan, count: (length + 15) / 16 * 16 * d)
            for j in 0..<length {
                for i in 0..<d { out[((j / 16) * d + i) * 16 + j % 16] = keys[i * length + j] }
            }
            return out
        }

        /// The bytes the kernel reads: float32, the bf16 bits (exact, since the values are bf16) or the int8 integers;
        /// int8's padding lanes hold −128, which no result may show.
        func held(_ v: [Float]) -> [UInt8] {
            switch format {
            case .fp32: return v.flatMap { f -> [UInt8] in (0..<4).map { UInt8((f.bitPattern >> (8 * $0)) & 0xFF) } }
            case .bf16: return v.flatMap { f -> [UInt8] in let b = UInt16(f.bitPattern >> 16); return [UInt8(b & 0xFF), UInt8(b >> 8)] }
            case .int8: return v.map { $0.isNaN ? 0x80 : UInt8(bitPattern: Int8($0)) }
            }
        }

        /// Position j's key and value scale (int8), else nil.
        func keyScale(_ j: Int) -> Float? { keyScales?[j] }
        func valueScale(_ j: Int) -> Float? { valueScales?[j] }
    }

    /// The reference: one fused multiply-add chain per output, in index order from zero.
    /// With int8: the score is the chain over the integers times the key scale, and the context chain's weights are
    /// p[j] · (the value scale).
    static func referenceScores(_ q: [Float], _ h: Head) -> [Float] {
        (0..<h.length).map { j in
            var acc: Float = 0
            for i in 0..<h.d { acc = acc.addingProduct(q[i], h.keys[i * h.length + j]) }
            return h.keyScale(j).map { acc * $0 } ?? acc
        }
    }

    static func referenceContext(_ p: [Float], _ h: Head) -> [Float] {
        (0..<h.d).map { i in
            var acc: Float = 0
            for j in 0..<h.length { acc = acc.addingProduct(h.valueScale(j).map { p[j] * $0 } ?? p[j], h.values[j * h.d + i]) }
            return acc
        }
    }

    /// Scores of the rows `rows` (indices into `queries`, [rows, ldq]) and the context of `probabilities` ([count,
    /// length]) written into a [rows, ldo] buffer first filled with a sentinel. Each call prefetches what the decoder
    /// step's would (the values during the scores, keys during the context), so the prefetching runs on every shape.
    static func run(_ h: Head, queries: [Float], ldq: Int, rows: [Int32], probabilities: [Float], ldo: Int, rowCount: Int)
        -> (scores: [Float], context: [Float]) {
        let keys = h.held(h.blockedKeys), values = h.held(h.values)
        // The scales as the kernels see them: the keys' padded to whole blocks with NaN, which no score may show.
        let keyScales = h.keyScales.map { $0 + [Float](repeating: .nan, count: (h.length + 15) / 16 * 16 - h.length) } ?? []
        let valueScales = h.valueScales ?? []
        var scores = [Float](repeating: .nan, count: max(1, rows.count * h.length))
        var context = [Float](repeating: -7, count: rowCount * ldo)
        keys.withUnsafeBytes { pk in
            values.withUnsafeBytes { pv in
                queries.withUnsafeBufferPointer { pq in
                    rows.withUnsafeBufferPointer { pr in
                        scores.withUnsafeMutableBufferPointer { ps in
                            keyScales.withUnsafeBufferPointer { pks in
                                QueryAttention.scores(pq.baseAddress!, ldq: ldq, rows: pr.baseAddress!, count: rows.count, keys: pk.baseAddress!,
                                                      format: h.format, scales: h.format == .int8 ? pks.baseAddress! : nil, length: h.length,
                                                      headSize: h.d, into: ps.baseAddress!, lds: h.length, ahead: UnsafeRawBufferPointer(pv))
                            }
                        }
                        probabilities.withUnsafeBufferPointer { pp in
                            context.withUnsafeMutableBufferPointer { pc in
                                valueScales.withUnsafeBufferPointer { pvs in
                                    QueryAttention.context(pp.baseAddress!, ldp: h.length, values: pv.baseAddress!, format: h.format,
                                                           scales: h.format == .int8 ? pvs.baseAddress! : nil, length: h.length, headSize: h.d,
                                                           rows: pr.baseAddress!, count: rows.count, into: pc.baseAddress!, ldo: ldo,
                                                           ahead: UnsafeRawBufferPointer(pk))
                                }
                            }
                        }
                    }
                }
            }
        }
        return (Array(scores.prefix(rows.count * h.length)), context)
    }

    func testScoresAndContextAreTheReferenceChainsOnEveryPathFormatShapeAndGroup() {
        var g = Generator(state: 1_234)
        let paths = QueryAttention.Path.allCases.filter { $0.rawValue <= QueryAttention.bestPath.rawValue }
        let lengths = [1, 2, 5, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 127, 128, 129, 200, 255, 256, 343, 511, 600]
        let headSizes = [64, 1, 3, 8, 12, 17, 33, 80, 128]
        var trial = 0
        for length in lengths {
            for format in QueryAttention.Format.allCases {
                let d = headSizes[trial % headSizes.count], count = 1 + trial % 9
                trial += 1
                let h = Head(&g, length: length, d: d, format: format)
                // Queries of 12 rows at a stride wider than d; the group takes `count` of them in a shuffled order.
                let rowCount = 12, ldq = d + 5, ldo = d + 3
                let queries = g.floats(rowCount * ldq)
                let rows = Array(g.shuffle(Array(0..<Int32(rowCount))).prefix(count))
                let probabilities = (0..<count).flatMap { _ in g.floats(length).map { ($0 + 1) / Float(length) } }
                let label = "length \(length) d \(d) \(format) rows \(rows)"
                var expectedScores: [Float] = [], expectedContext = [Float](repeating: -7, count: rowCount * ldo)
                for (i, r) in rows.enumerated() {
                    expectedScores += Self.referenceScores(Array(queries[(Int(r) * ldq)..<(Int(r) * ldq + d)]), h)
                    let context = Self.referenceContext(Array(probabilities[(i * length)..<((i + 1) * length)]), h)
                    for c in 0..<d { expectedContext[Int(r) * ldo + c] = context[c] }
                }
                for path in paths {
                    XCTAssertEqual(QueryAttention.usePath(path), path)
                    let (scores, context) = Self.run(h, queries: queries, ldq: ldq, rows: rows, probabilities: probabilities, ldo: ldo,
                                                     rowCount: rowCount)
                    XCTAssertEqual(scores.map(\.bitPattern), expectedScores.map(\.bitPattern), "\(label) \(path) scores")
                    // Columns past d and rows outside the group keep the sentinel.
                    XCTAssertEqual(context.map(\.bitPattern), expectedContext.map(\.bitPattern), "\(label) \(path) context")
                    // Each row alone gives the bits it gave beside the others.
                    for (i, r) in rows.enumerated() {
                        let alone = Self.run(h, queries: queries, ldq: ldq, rows: [r], probabilities: Array(probabilities[(i * length)..<((i + 1) * length)]),
                                             ldo: ldo, rowCount: rowCount)
                        XCTAssertEqual(alone.scores.map(\.bitPattern), scores[(i * length)..<((i + 1) * length)].map(\.bitPattern),
                                       "\(label) \(path) row \(r) alone: scores")
                        XCTAssertEqual(alone.context[(Int(r) * ldo)..<(Int(r) * ldo + d)].map(\.bitPattern),
                                       context[(Int(r) * ldo)..<(Int(r) * ldo + d)].map(\.bitPattern), "\(label) \(path) row \(r) alone: context")
                    }
                }
            }
        }
    }

    /// Random lengths 1–600 on top of the fixed ones, with the decoder's head size, groups of 1–9 rows.
    func testRandomLengthsGiveTheReferenceBits() {
        var g = Generator(state: 99)
        let paths = QueryAttention.Path.allCases.filter { $0.rawValue <= QueryAttention.bestPath.rawValue }
        for trial in 0..<24 {
            let length = g.int(1..<601), d = trial % 4 == 3 ? g.int(1..<130) : 64, count = g.int(1..<10)
            let format = QueryAttention.Format.allCases[trial % 3]
            let h = Head(&g, length: length, d: d, format: format)
            let queries = g.floats(count * d)
            let rows = (0..<Int32(count)).map { $0 }
            let probabilities = g.floats(count * length)
            let expectedScores = rows.flatMap { r in Self.referenceScores(Array(queries[(Int(r) * d)..<(Int(r) * d + d)]), h) }
            let expectedContext = rows.flatMap { r in Self.referenceContext(Array(probabilities[(Int(r) * length)..<(Int(r) * length + length)]), h) }
            for path in paths {
                QueryAttention.usePath(path)
                let (scores, context) = Self.run(h, queries: queries, ldq: d, rows: rows, probabilities: probabilities, ldo: d, rowCount: count)
                let label = "length \(length) d \(d) \(format) rows \(count) \(path)"
                XCTAssertEqual(scores.map(\.bitPattern), expectedScores.map(\.bitPattern), label)
                XCTAssertEqual(context.map(\.bitPattern), expectedContext.map(\.bitPattern), label)
            }
        }
    }
}
