import BlendCore
import Foundation
import XCTest
@testable import Inference

/// The non-blend job kinds against llm-blender 0.0.2 itself (scripts/fixtures/kinds.py): `Blender.compare`,
/// `compare_conversations`, `get_best_of_n` / `get_worst_of_n` (bubble with the recorded `torch.randperm`, and
/// full), `rank_with_ref` for every ref_mode and a given reference, and trl 0.12.2's `PairRMJudge` probabilities,
/// all on the pairrm-tiny-ranker-layout checkpoint.
///
/// The reference's values map to ours as `CompareMode` documents: `[A,B]` equal, `[B,A]` negated, `[A,B]+[B,A]`
/// ours = reference / 2. A verdict or an order may differ only where the deciding reference value is within
/// `nearZero` of 0 (or two scores within it of each other) without being exactly 0: such records are counted and
/// printed. An exact 0 (identical inputs, e.g. duplicate candidates, score bit-identically in both) is no excuse:
/// there the tie rule decides and must match. Every other disagreement fails.
final class KindsDifferentialTests: XCTestCase {
    static let tolerance = PairRMParityTests.tolerance
    static let nearZero: Float = 1e-4

    struct TextPair: Decodable { var instruction: Int; var input: Int; var a: Int; var b: Int }

    struct CompareRecord: Decodable {
        var instruction: Int
        var input: Int
        var a: Int
        var b: Int
        var logits: [String: Double]
    }

    /// A turn stored as `[role, text index]`.
    struct Turn: Decodable {
        var role: String
        var content: Int
        init(from decoder: Decoder) throws {
            var c = try decoder.unkeyedContainer()
            role = try c.decode(String.self)
            content = try c.decode(Int.self)
        }
    }

    struct ConversationRecord: Decodable {
        var a: [Turn]
        var b: [Turn]
        var corruption: String?
        var flattened: TextPair?
        var logits: [String: Double]?
        var error: String?
    }

    struct Selection: Decodable {
        var bubble_all: [Int]
        var bubble: Int
        var full_all: [Int]
    }

    struct SelectRecord: Decodable {
        var instruction: Int
        var input: Int
        var candidates: [Int]
        var order: [Int]
        var best: Selection
        var worst: Selection
        var full_scores: [Double]?
    }

    struct RewardRecord: Decodable {
        var instruction: Int
        var input: Int
        var candidates: [Int]
        var reference_text: Int
        var scores: [String: [Double]]
        var unknown_mode_error: String?
    }

    struct JudgeRecord: Decodable {
        var prompt: Int
        var a: Int
        var b: Int
        var probability: Double
        var probability_unshuffled: Double
    }

    struct Fixture: Decodable {
        var versions: [String: String]
        var checkpoint: String
        var texts: [String]
        var compare: [CompareRecord]
        var conversations: [ConversationRecord]
        var select: [SelectRecord]
        var rewards: [RewardRecord]
        var judge: [JudgeRecord]
    }

    static let fixture: Fixture = {
        let data = FileManager.default.contents(atPath: ReferenceFixtures.path("differential/pairrm-kinds.json"))!
        return try! JSONDecoder().decode(Fixture.self, from: data)
    }()

    static let ranker: PairRMRanker = try! PairRMDifferentialTests.ranker(fixture.checkpoint)

    var texts: [String] { Self.fixture.texts }

    /// Largest |ours − reference| (in our convention) seen by `checkCompare`, for the printed summary.
    private var maxCompareDelta: Float = 0

    /// The reference's compare value in our convention (positive = A better, both = average).
    static func ours(fromReference value: Double, mode: CompareMode) -> Float {
        switch mode {
        case .forward: Float(value)
        case .reverse: Float(-value)
        case .both: Float(value / 2)
        }
    }

    /// Checks one compare value; returns whether its verdict was near zero (and so allowed to differ).
    private func checkCompare(_ ours: Float, reference: Double, mode: CompareMode, _ what: String) -> (nearZero: Bool, agrees: Bool) {
        let expected = Self.ours(fromReference: reference, mode: mode)
        maxCompareDelta = max(maxCompareDelta, abs(ours - expected))
        XCTAssertEqual(ours, expected, accuracy: Self.tolerance, "\(what) \(mode.rawValue)")
        let near = expected != 0 && abs(expected) <= Self.nearZero
        let agrees = (ours > 0) == (expected > 0)
        if !near { XCTAssertTrue(agrees, "\(what) \(mode.rawValue): verdict \(ours) vs reference \(expected)") }
        return (near, agrees && abs(ours - expected) <= Self.tolerance)
    }

    func testFixtureCoversTheWeightedCases() {
        let f = Self.fixture
        XCTAssertEqual(f.versions["llm_blender"], "0.0.2")
        XCTAssertEqual(f.versions["transformers"], "4.46.3")
        XCTAssertGreaterThanOrEqual(f.compare.count, 200)
        XCTAssertGreaterThan(f.compare.filter { $0.a == $0.b }.count, 20, "A identical to B")
        XCTAssertGreaterThan(f.select.filter { Set($0.candidates).count < $0.candidates.count }.count, 20, "duplicates")
        for n in [1, 2, 3, 8] { XCTAssertTrue(f.select.contains { $0.candidates.count == n }, "N = \(n)") }
        XCTAssertTrue(f.texts.contains { $0.unicodeScalars.count > 2000 }, "texts past the truncation budgets")
        XCTAssertTrue(f.texts.contains { $0.unicodeScalars.contains { $0.value == 0x200B } }, "zero-width")
        for kind in ["Each even turn must be USER", "Each odd turn must be ASSISTANT", "Each conversation must have even number of turns",
                     "Number of turns in each conversation must be the same", "USER turns must be the same"] {
            XCTAssertTrue(f.conversations.contains { $0.error == kind }, kind)
        }
    }

    func testCompareMatchesBlenderCompareInEveryMode() throws {
        let records = Self.fixture.compare
        var agree = 0, near = 0, nearFlips = 0, total = 0
        for mode in CompareMode.allCases {
            let items = records.enumerated().map { i, r in
                PairRMRanker.Comparison(jobId: "compare-\(i)", source: texts[r.instruction] + texts[r.input], a: texts[r.a], b: texts[r.b])
            }
            for (i, (result, r)) in zip(Self.ranker.compare(items, mode: mode), records).enumerated() {
                let reference = try XCTUnwrap(r.logits[mode.rawValue])
                let check = checkCompare(try result.get(), reference: reference, mode: mode, "compare \(i)")
                total += 1
                if check.agrees { agree += 1 } else if check.nearZero { nearFlips += 1 }
                if check.nearZero { near += 1 }
            }
        }
        print("compare: \(agree)/\(total) values and verdicts agree; reference within \(Self.nearZero) of 0: \(near) (verdict differs: \(nearFlips)); max |Δ| \(maxCompareDelta)")
        XCTAssertEqual(agree + nearFlips, total, "every compare value within \(Self.tolerance) with the same verdict")
    }

    /// Our reasons for the reference's assertion messages.
    static let referenceProblem: [String: ConversationProblem.Kind] = [
        "Each conversation must have even number of turns": .notAlternating,
        "Each even turn must be USER": .notAlternating,
        "Each odd turn must be ASSISTANT": .notAlternating,
        "Number of turns in each conversation must be the same": .turnCountsDiffer,
        "USER turns must be the same": .userTurnsDiffer,
    ]

    func testConversationsFlattenAndCompareAsTheReference() throws {
        var identical = 0, rejectedAlike = 0, stricter = 0, near = 0, compared = 0
        let records = Self.fixture.conversations
        for (i, r) in records.enumerated() {
            let a = r.a.map { ConversationTurn(role: $0.role, content: texts[$0.content]) }
            let b = r.b.map { ConversationTurn(role: $0.role, content: texts[$0.content]) }
            let ours = ConversationFlattening.flatten(a: a, b: b)
            if let error = r.error {
                let kind = try XCTUnwrap(Self.referenceProblem[error], "unknown reference error \(error)")
                guard case .failure(let problem) = ours else { XCTFail("conversation \(i): the reference rejects it (\(error)), we accept"); continue }
                XCTAssertEqual(problem.kind, kind, "conversation \(i): reference says \(error); we say \(problem)")
                if problem.kind == kind { rejectedAlike += 1 }
                continue
            }
            let flat = try XCTUnwrap(r.flattened)
            switch ours {
            case .failure(let problem):
                // Stricter than the reference only where it scores an empty source or candidate.
                XCTAssertTrue([.empty, .emptyTurn].contains(problem.kind), "conversation \(i): we reject (\(problem)), the reference accepts")
                XCTAssertTrue(a.isEmpty || (a + b).contains { $0.content.isEmpty }, "conversation \(i)")
                stricter += 1
            case .success(let pair):
                let same = pair.instruction == texts[flat.instruction] && pair.input == texts[flat.input] && pair.a == texts[flat.a] && pair.b == texts[flat.b]
                XCTAssertTrue(same, "conversation \(i): flattened strings differ from the reference's")
                if same { identical += 1 }
                for mode in CompareMode.allCases {
                    let item = PairRMRanker.Comparison(jobId: "conversation-\(i)", source: pair.instruction + pair.input, a: pair.a, b: pair.b)
                    let value = try Self.ranker.compare([item], mode: mode)[0].get()
                    let check = checkCompare(value, reference: try XCTUnwrap(r.logits?[mode.rawValue]), mode: mode, "conversation \(i)")
                    compared += 1
                    if check.nearZero { near += 1 }
                }
            }
        }
        print("conversations: \(records.count) records; flattened identical \(identical), rejected with the reference's reason \(rejectedAlike), "
              + "rejected by our stricter empty rules \(stricter), compare values \(compared) (reference near 0: \(near), max |Δ| \(maxCompareDelta))")
        XCTAssertEqual(identical + rejectedAlike + stricter, records.count)
        XCTAssertGreaterThan(identical, 100)
    }

    func testBubbleSelectionReplaysTheReferencesOrder() throws {
        var agree = 0, nearTies = 0, total = 0
        for (i, r) in Self.fixture.select.enumerated() {
            let request = RankRequest(jobId: "select-\(i)", instruction: texts[r.instruction], input: texts[r.input],
                                      candidates: r.candidates.map { texts[$0] }, mode: .bubble, seed: 0)
            for (goal, expected) in [(BubbleTournament.Goal.best, r.best), (.worst, r.worst)] {
                let tournament = try Self.ranker.select([request], goal: goal, orders: [r.order])[0].get()
                XCTAssertEqual(tournament.order, r.order)
                let all = try XCTUnwrap(tournament.winnerThenEliminated).map { r.candidates[$0] }
                let winner = r.candidates[try XCTUnwrap(tournament.winner)]
                total += 1
                if all == expected.bubble_all && winner == expected.bubble {
                    agree += 1
                } else if tournament.steps.contains(where: { $0.difference != 0 && abs($0.difference) <= Self.nearZero }) {
                    nearTies += 1
                } else {
                    XCTFail("select \(i) \(goal): ours \(all), reference \(expected.bubble_all) (winner \(expected.bubble))")
                }
            }
        }
        print("bubble select: \(agree)/\(total) identical (winner and return_all order), differing at a near tie: \(nearTies)")
        XCTAssertEqual(agree + nearTies, total)
    }

    func testFullSelectionMatchesTheReferencesRanks() throws {
        var agree = 0, nearTies = 0, equalRanks = 0, total = 0
        for (i, r) in Self.fixture.select.enumerated() {
            let request = RankRequest(jobId: "full-\(i)", instruction: texts[r.instruction], input: texts[r.input],
                                      candidates: r.candidates.map { texts[$0] }, mode: .maxLogits, seed: 0)
            let outcome = try Self.ranker.rankNow([request]).results[0].get()
            if let scores = r.full_scores {
                for (ours, theirs) in zip(outcome.scores, scores) { XCTAssertEqual(ours, Float(theirs), accuracy: Self.tolerance, "full \(i)") }
            }
            // get_topk_candidates_from_ranks: numpy argsort of the ranks (stable at these sizes), negated for worst.
            let best = r.candidates.indices.sorted { (outcome.ranks[$0], $0) < (outcome.ranks[$1], $1) }
            let worst = r.candidates.indices.sorted { (-outcome.ranks[$0], $0) < (-outcome.ranks[$1], $1) }
            let scores = (r.full_scores ?? []).map(Float.init)
            let nearTie = scores.indices.contains { j in scores.indices.contains { k in j != k && scores[j] != scores[k] && abs(scores[j] - scores[k]) <= Self.nearZero } }
            for (order, theirs, goal) in [(best, r.best.full_all, "best"), (worst, r.worst.full_all, "worst")] {
                total += 1
                let ours = order.map { r.candidates[$0] }
                if ours == theirs { agree += 1 } else if nearTie { nearTies += 1 } else if sameUpToEqualRanks(order, theirs, r, ranks: outcome.ranks) {
                    equalRanks += 1
                } else {
                    XCTFail("full \(goal) \(i): ours \(ours), reference \(theirs)")
                }
            }
        }
        print("full select: \(agree)/\(total) identical orders, differing at a near tie: \(nearTies), "
              + "differing only within equal ranks: \(equalRanks)")
        XCTAssertEqual(agree + nearTies + equalRanks, total)
    }

    /// `get_topk_candidates_from_ranks` orders by `np.argsort(ranks)`, which is not stable on this CPU (numpy's
    /// AVX-512 sort): candidates of equal rank come in an arbitrary order. Orders agree when every run of equal
    /// ranks holds the same texts, and the reference's scores tie there too (a tie of ours alone is a mismatch).
    private func sameUpToEqualRanks(_ order: [Int], _ theirs: [Int], _ r: SelectRecord, ranks: [Int]) -> Bool {
        guard let scores = r.full_scores, order.count == theirs.count else { return false }
        var start = 0
        while start < order.count {
            var end = start + 1
            while end < order.count && ranks[order[end]] == ranks[order[start]] { end += 1 }
            let group = order[start..<end]
            guard Set(group.map { scores[$0] }).count == 1,
                  group.map({ r.candidates[$0] }).sorted() == theirs[start..<end].sorted() else { return false }
            start = end
        }
        return true
    }

    func testRewardsMatchRankWithRefForEveryModeAndAGivenText() throws {
        var values = 0, signsNearZero = 0
        var maxDelta: Float = 0
        let records = Self.fixture.rewards
        for r in records {
            XCTAssertEqual(Set(r.scores.keys), Set(ReferenceMode.allCases.map(\.rawValue) + ["given"]), "the reference's ref_modes are ours")
            // The reference has no max_length mode: it raises for it, and so do we (no such case).
            XCTAssertEqual(r.unknown_mode_error, "Unknown ref_mode: max_length")
            XCTAssertNil(ReferenceMode(rawValue: "max_length"))
        }
        let requests = records.enumerated().map { i, r in
            RankRequest(jobId: "reward-\(i)", instruction: texts[r.instruction], input: texts[r.input],
                        candidates: r.candidates.map { texts[$0] }, mode: .maxLogits, seed: 0)
        }
        var cases: [(String, [Result<[Float], RankingError>])] = ReferenceMode.allCases.map { ($0.rawValue, Self.ranker.rewards(requests, reference: $0)) }
        cases.append(("given", Self.ranker.rewards(requests, referenceTexts: records.map { texts[$0.reference_text] })))
        for (name, results) in cases {
            for (i, (result, r)) in zip(results, records).enumerated() {
                let ours = try result.get()
                let theirs = try XCTUnwrap(r.scores[name])
                XCTAssertEqual(ours.count, theirs.count)
                for (o, t) in zip(ours, theirs) {
                    // Rewards are sums of two logits: twice the compare tolerance.
                    XCTAssertEqual(o, Float(t), accuracy: 2 * Self.tolerance, "reward \(i) \(name)")
                    maxDelta = max(maxDelta, abs(o - Float(t)))
                    if t != 0 && abs(t) <= Double(Self.nearZero) { signsNearZero += 1 } else { XCTAssertEqual(o > 0, t > 0, "reward \(i) \(name) sign") }
                    values += 1
                }
            }
        }
        print("rewards: \(values) values over \(records.count) inputs × \(cases.count) reference choices; reference within \(Self.nearZero) of 0: \(signsNearZero); max |Δ| \(maxDelta)")
    }

    /// `PairRMJudge.judge(return_scores=True)` is softmax of Blender.rank's two scores = σ(ℓ(A,B) − ℓ(B,A)),
    /// i.e. σ(2 × our both-mode compare).
    func testProbabilitiesMatchTRLsPairRMJudge() throws {
        let records = Self.fixture.judge
        let items = records.enumerated().map { i, r in PairRMRanker.Comparison(jobId: "judge-\(i)", source: texts[r.prompt], a: texts[r.a], b: texts[r.b]) }
        var maxDelta = 0.0
        for (i, (result, r)) in zip(Self.ranker.compare(items, mode: .both), records).enumerated() {
            let p = 1 / (1 + exp(-2 * Double(try result.get())))
            for reference in [r.probability, r.probability_unshuffled] {
                XCTAssertEqual(p, reference, accuracy: Double(Self.tolerance), "judge \(i)")
                maxDelta = max(maxDelta, abs(p - reference))
            }
        }
        print("PairRMJudge: \(records.count) pairs, max |Δ probability| \(maxDelta)")
    }
}
