import Foundation
import XCTest
@testable import Inference

/// The token choice's fast paths against the plain code they replaced, on generated logits weighted toward what
/// breaks a selection: runs of equal values, values equal in whole rows or across beams, ±0, ±∞, subnormals, the
/// barred EOS, a vocabulary of one token, more candidates wanted than there are. Every score, beam and token must
/// match bit for bit, and so must every sampling order.
final class TokenChoiceTests: XCTestCase {
    typealias Generator = BitExactnessTests.Generator

    /// Beam search's top continuations as the selection was first written: arrays, `max()`, a copy per row.
    static func plainTop(_ logits: [Float], vocabulary: Int, runningScores: [Float], keep: Int,
                         barred: Int?) -> [(score: Float, beam: Int, token: Int)] {
        var top: [(score: Float, beam: Int, token: Int)] = []
        for b in runningScores.indices {
            let row = Array(logits[(b * vocabulary)..<((b + 1) * vocabulary)])
            let maxValue = row.max() ?? 0
            var total: Float = 0
            for v in row { total += expf(v - maxValue) }
            let logTotal = logf(total) + maxValue
            for (t, v) in row.enumerated() {
                var lp = v - logTotal
                if t == barred { lp = -.infinity }
                let score = lp + runningScores[b]
                if top.count == keep && !(score > top[keep - 1].score) { continue }
                var at = top.count
                while at > 0 && score > top[at - 1].score { at -= 1 }
                top.insert((score, b, t), at: at)
                if top.count > keep { top.removeLast() }
            }
        }
        return top
    }

    /// A value drawn to collide: a few distinct levels, extremes and zeros of both signs.
    static func nastyValue(_ g: inout Generator, levels: [Float]) -> Float {
        switch g.int(0..<12) {
        case 0: -.infinity
        case 1: 0
        case 2: -0.0
        case 3: .leastNonzeroMagnitude * Float(g.int(-3..<4))
        case 4: Float(g.int(-40..<40)) * 1e3
        case 5...7: levels[g.int(0..<levels.count)]
        default: g.float() * 8
        }
    }

    static func logits(_ g: inout Generator, rows: Int, vocabulary: Int) -> [Float] {
        let levels = (0..<g.int(1..<5)).map { _ in g.float() * 4 }
        var v = (0..<(rows * vocabulary)).map { _ in nastyValue(&g, levels: levels) }
        // Whole rows equal (beams that just split), or one finite row so the row's softmax is defined.
        if rows > 1 && g.int(0..<3) == 0 {
            for t in 0..<vocabulary { v[vocabulary + t] = v[t] }
        }
        if g.int(0..<2) == 0 {
            for i in v.indices where !v[i].isFinite { v[i] = levels[0] }
        }
        return v
    }

    func testTopContinuationsMatchThePlainSelection() {
        var g = Generator(state: 1812)
        var cases = 0
        for round in 0..<3000 {
            let beams = g.int(1..<9)
            let vocabulary = round % 500 == 0 ? 32128 : [1, 2, 3, 7, 16, 33, 100, 257][g.int(0..<8)]
            // Sometimes more candidates than the rows hold (small vocabularies only: the plain insertion is quadratic).
            let keep = vocabulary < 300 && g.int(0..<3) == 0 ? g.int(1..<(2 * beams * vocabulary + 3)) : 2 * beams
            let values = Self.logits(&g, rows: beams, vocabulary: vocabulary)
            let running = (0..<beams).map { _ in g.int(0..<4) == 0 ? 0 : -Float(g.int(0..<50)) / 7 }
            let barred: Int? = g.int(0..<3) == 0 ? g.int(0..<vocabulary) : nil
            let fast = values.withUnsafeBufferPointer {
                DecodingJob.topContinuations($0, vocabulary: vocabulary, runningScores: running, keep: keep, barred: barred)
            }
            let plain = Self.plainTop(values, vocabulary: vocabulary, runningScores: running, keep: keep, barred: barred)
            XCTAssertEqual(fast.map(\.score.bitPattern), plain.map(\.score.bitPattern), "round \(round): scores")
            XCTAssertEqual(fast.map(\.beam), plain.map(\.beam), "round \(round): beams")
            XCTAssertEqual(fast.map(\.token), plain.map(\.token), "round \(round): tokens")
            cases += 1
        }
        XCTAssertEqual(cases, 3000)
    }

    func testSamplingOrderIsTheComparisonSortsOrder() {
        var g = Generator(state: 77)
        for round in 0..<1500 {
            let count = round % 300 == 0 ? 32128 : g.int(0..<400)
            let levels = (0..<g.int(1..<6)).map { _ in g.float() * 3 }
            var scores = (0..<count).map { _ in Self.nastyValue(&g, levels: levels) }
            if g.int(0..<4) == 0 { scores = scores.map { $0 == -.infinity ? .infinity : $0 } }
            let sorted = scores.indices.sorted { scores[$0] != scores[$1] ? scores[$0] > scores[$1] : $0 < $1 }
            XCTAssertEqual(DecodingJob.descendingOrder(scores), sorted, "round \(round), \(count) scores")
        }
    }

    func testNaNScoresSortLast() {
        let scores: [Float] = [.nan, 1, -.infinity, .nan, 2, -0.0, 0]
        XCTAssertEqual(DecodingJob.descendingOrder(scores), [4, 1, 5, 6, 2, 0, 3])
    }
}
