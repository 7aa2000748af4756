import BlendCore
import XCTest
@testable import Inference

/// The merged sorted-gram chrF against the dictionary implementation it replaced (kept below as
/// the reference): every score, in both directions, and every consensus matrix must be
/// bit-identical on generated texts weighted toward what breaks n-gram code.
final class CharacterNGramSimilarityTests: XCTestCase {
    func testScoresAreBitIdenticalToTheDictionaryReferenceOnGeneratedTexts() {
        var rng = SplitMix64(seed: 0xC4_0F_2026)
        var texts = 0, pairs = 0
        for round in 0..<700 {
            var similarity = CharacterNGramSimilarity()
            var reference = ReferenceCharacterNGramSimilarity()
            // Mostly the defaults the ranker uses; sometimes other orders and weights.
            if round % 5 == 4 {
                similarity.maxOrder = Int.random(in: 1...6, using: &rng)
                similarity.beta = [0.5, 1, 3, 0.1].randomElement(using: &rng)!
                reference.maxOrder = similarity.maxOrder
                reference.beta = similarity.beta
            }
            let group = Self.textGroup(using: &rng)
            texts += group.count
            let profiles = group.map(similarity.profile), refProfiles = group.map(reference.profile)
            for i in group.indices {
                for k in group.indices {
                    let want = reference.chrF(hypothesis: refProfiles[i], reference: refProfiles[k])
                    let got = similarity.chrF(hypothesis: profiles[i], reference: profiles[k])
                    let both = similarity.chrFBothWays(profiles[i], profiles[k])
                    let back = reference.chrF(hypothesis: refProfiles[k], reference: refProfiles[i])
                    pairs += 1
                    guard got.bitPattern == want.bitPattern, both.forward.bitPattern == want.bitPattern,
                          both.backward.bitPattern == back.bitPattern else {
                        return XCTFail("round \(round), order \(similarity.maxOrder), β \(similarity.beta): chrF(\(Self.show(group[i])) | \(Self.show(group[k]))) = \(got) / \(both), reference \(want) / \(back)")
                    }
                }
            }
            if similarity.maxOrder == 6 && similarity.beta == 2 {
                let got = ConsensusRanker(similarity: similarity).matrix(group)
                let want = Self.referenceMatrix(group, reference)
                XCTAssertEqual(got.values.map(\.bitPattern), want.values.map(\.bitPattern), "round \(round): consensus matrix of \(group.map(Self.show))")
            }
        }
        XCTAssertGreaterThan(texts, 2000)
        XCTAssertGreaterThan(pairs, 10000)
    }

    func testEdgeTextsAgreeWithTheReference() {
        let similarity = CharacterNGramSimilarity(), reference = ReferenceCharacterNGramSimilarity()
        let edges = ["", " ", "\t\n \u{3000}\u{A0}", "a", "aa", "aaaaaa", "aaaaaaa", String(repeating: "a", count: 5000), "ab", "abababab",
                     "\u{10FFFF}", "\u{10FFFF}\u{10FFFF}\u{10FFFF}\u{10FFFF}\u{10FFFF}\u{10FFFF}\u{10FFFF}", "\u{0}", "\u{0}\u{0}\u{0}",
                     "\u{1C}\u{1D}\u{1E}\u{1F}", "\u{85}x\u{85}", "e\u{301}", "\u{301}\u{301}\u{301}", "👨‍👩‍👧‍👦", "🇫🇷🇩🇪", "日本語のテキスト"]
        for a in edges {
            for b in edges {
                let want = reference.chrF(hypothesis: reference.profile(a), reference: reference.profile(b))
                let got = similarity.chrF(hypothesis: similarity.profile(a), reference: similarity.profile(b))
                XCTAssertEqual(got.bitPattern, want.bitPattern, "chrF(\(Self.show(a)) | \(Self.show(b))): \(got), reference \(want)")
            }
        }
    }

    // MARK: - Generated texts

    /// Pieces that stress scalar packing, whitespace rules and repeated grams.
    static let pieces = [
        "", " ", "  ", "\t", "\n", "\r\n", "\u{A0}", "\u{2003}", "\u{3000}", "\u{85}", "\u{2028}", "\u{1C}", "\u{1F}", "\u{0}", "\u{1}",
        "\u{7F}", "a", "aa", "aaa", "ab", "ba", "abc", "the", "cat", "sat", "0", "42", "3.14", "1e400", ",", ".", "!?", "...", "--",
        "\"", "\\", "{", "}", "e\u{301}", "\u{301}", "\u{308}\u{301}", "é", "ñ", "ß", "😀", "😁", "👍🏽", "👨‍👩‍👧", "🇫🇷", "\u{200D}",
        "\u{FE0F}", "日本", "語", "の", "テキスト", "中文", "한국어", "𝄞", "\u{10FFFF}", "\u{FFFF}", "\u{E000}", "ﬁ", "Ω", "Ω",
    ]

    /// A group of 1…8 texts like a job's candidates: built from one small alphabet of pieces, so
    /// they share many grams, sometimes as edits of one another, sometimes long.
    static func textGroup(using rng: inout SplitMix64) -> [String] {
        let alphabet = (0..<Int.random(in: 1...8, using: &rng)).map { _ in pieces.randomElement(using: &rng)! }
        func text() -> String {
            let length: Int
            switch Int.random(in: 0..<20, using: &rng) {
            case 0: length = 0
            case 1: length = 1
            case 2: length = Int.random(in: 300...3000, using: &rng)
            default: length = Int.random(in: 2...40, using: &rng)
            }
            var s = ""
            for _ in 0..<length {
                s += Int.random(in: 0..<10, using: &rng) == 0 ? pieces.randomElement(using: &rng)! : alphabet.randomElement(using: &rng)!
            }
            return s
        }
        let base = text()
        return (0..<Int.random(in: 1...8, using: &rng)).map { _ in
            switch Int.random(in: 0..<4, using: &rng) {
            case 0: return base
            case 1:
                // An edit of the shared text: a few scalars replaced, dropped or inserted.
                var scalars = Array(base.unicodeScalars)
                for _ in 0..<Int.random(in: 1...4, using: &rng) {
                    let piece = Array(pieces.randomElement(using: &rng)!.unicodeScalars)
                    let at = Int.random(in: 0...scalars.count, using: &rng)
                    if Bool.random(using: &rng) || scalars.isEmpty { scalars.insert(contentsOf: piece, at: at) } else { scalars.remove(at: min(at, scalars.count - 1)) }
                }
                var s = String.UnicodeScalarView()
                s.append(contentsOf: scalars)
                return String(s)
            default: return text()
            }
        }
    }

    static func show(_ s: String) -> String {
        let escaped = s.unicodeScalars.prefix(60).map { $0.isASCII && $0.value >= 0x20 ? String($0) : "\\u{\(String($0.value, radix: 16))}" }.joined()
        return "\"" + escaped + (s.unicodeScalars.count > 60 ? "…(\(s.unicodeScalars.count) scalars)" : "") + "\""
    }

    /// The consensus matrix as ConsensusRanker computed it with the reference: chrF per ordered pair.
    static func referenceMatrix(_ texts: [String], _ similarity: ReferenceCharacterNGramSimilarity) -> ComparisonMatrix {
        let profiles = texts.map(similarity.profile)
        let n = profiles.count
        var utility = [Float](repeating: 0, count: n)
        if n > 1 {
            for i in 0..<n {
                var sum: Double = 0
                for k in 0..<n where k != i { sum += similarity.chrF(hypothesis: profiles[i], reference: profiles[k]) }
                utility[i] = Float(sum / Double(n - 1))
            }
        }
        var matrix = ComparisonMatrix(count: n)
        for i in 0..<n { for j in 0..<n where i != j { matrix[i, j] = utility[i] - utility[j] } }
        return matrix
    }
}

/// chrF as blendd computed it before the merged sorted-gram profiles: per order a dictionary of
/// packed n-grams, matches looked up from the smaller side. The reference of the tests above.
struct ReferenceCharacterNGramSimilarity {
    var maxOrder = 6
    var beta = 2.0

    struct Profile {
        let counts: [[NGram: Int]]
        let totals: [Int]
    }

    struct NGram: Hashable {
        var high: UInt64 = 0
        var low: UInt64 = 0
    }

    func profile(_ text: String) -> Profile {
        let scalars = text.unicodeScalars.filter { !$0.properties.isWhitespace }.map { UInt64($0.value) }
        var counts: [[NGram: Int]] = []
        var totals: [Int] = []
        for n in 1...maxOrder {
            var c: [NGram: Int] = [:]
            var total = 0
            if scalars.count >= n {
                for start in 0...(scalars.count - n) {
                    var gram = NGram()
                    for k in 0..<n {
                        let v = scalars[start + k]
                        if k < 3 { gram.low |= v << (21 * UInt64(k)) } else { gram.high |= v << (21 * UInt64(k - 3)) }
                    }
                    c[gram, default: 0] += 1
                    total += 1
                }
            }
            counts.append(c)
            totals.append(total)
        }
        return Profile(counts: counts, totals: totals)
    }

    func chrF(hypothesis h: Profile, reference r: Profile) -> Double {
        var precision = 0.0, recall = 0.0, orders = 0
        for n in 0..<maxOrder where h.totals[n] > 0 && r.totals[n] > 0 {
            let (small, large) = h.counts[n].count <= r.counts[n].count ? (h.counts[n], r.counts[n]) : (r.counts[n], h.counts[n])
            var matches = 0
            for (gram, count) in small { if let other = large[gram] { matches += min(count, other) } }
            precision += Double(matches) / Double(h.totals[n])
            recall += Double(matches) / Double(r.totals[n])
            orders += 1
        }
        guard orders > 0 else { return 0 }
        precision /= Double(orders)
        recall /= Double(orders)
        guard precision + recall > 0 else { return 0 }
        let b2 = beta * beta
        return (1 + b2) * precision * recall / (b2 * precision + recall)
    }
}
