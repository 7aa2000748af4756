import BlendCore
import XCTest
@testable import Inference

final class ConsensusRankerTests: XCTestCase {
    let chrF = CharacterNGramSimilarity()

    func testChrFOfIdenticalDisjointAndPartialTexts() {
        XCTAssertEqual(chrF.chrF(hypothesis: chrF.profile("the cat sat"), reference: chrF.profile("thecat  sat")), 1, accuracy: 1e-12,
                       "whitespace is ignored")
        XCTAssertEqual(chrF.chrF(hypothesis: chrF.profile("abc"), reference: chrF.profile("xyz")), 0)
        // orders 1..3 occur: P = R = (2/3 + 1/2 + 0) / 3 = 7/18, so F = 7/18.
        XCTAssertEqual(chrF.chrF(hypothesis: chrF.profile("abc"), reference: chrF.profile("abd")), 7.0 / 18.0, accuracy: 1e-12)
        XCTAssertEqual(chrF.chrF(hypothesis: chrF.profile(""), reference: chrF.profile("abc")), 0)
    }

    func testNGramsOfNonASCIIScalarsAreDistinct() {
        // Scalars above U+FFFF need all 21 bits; "😀" and "😁" differ only in low bits.
        XCTAssertEqual(chrF.chrF(hypothesis: chrF.profile("😀😀😀"), reference: chrF.profile("😁😁😁")), 0)
        XCTAssertEqual(chrF.chrF(hypothesis: chrF.profile("日本語のテキスト"), reference: chrF.profile("日本語のテキスト")), 1, accuracy: 1e-12)
    }

    func testTheAnswerMostOthersAgreeWithRanksFirst() async throws {
        let request = RankRequest(jobId: "j1", instruction: "What is the capital of France?", candidates: [
            "I like turtles.",
            "The capital of France is Paris.",
            "Paris is the capital of France.",
            "The capital of France is Paris, a city on the Seine.",
        ])
        let outcome = try await ConsensusRanker().rank([request])[0].get()
        XCTAssertEqual(outcome.ranks[0], 4, "the outlier ranks last")
        XCTAssertEqual(outcome.ranks.sorted(), [1, 2, 3, 4])
        XCTAssertEqual(outcome.forwardPasses, 0)
        let m = try XCTUnwrap(outcome.comparisons)
        XCTAssertEqual(m[1, 0], -m[0, 1], accuracy: 1e-6, "utility differences are antisymmetric")
        XCTAssertEqual(outcome.scores, RankAggregation.maxLogitsScores(m))
    }

    func testModesAgreeOnTheWinnerAndBubbleReproduces() async throws {
        let texts = ["alpha beta gamma", "alpha beta delta", "alpha beta gamma delta", "zeta"]
        var winners: [Int] = []
        for mode in RankMode.allCases {
            let request = RankRequest(jobId: "j", instruction: "x", candidates: texts, mode: mode, seed: 9)
            let a = try await ConsensusRanker().rank([request])[0].get()
            let b = try await ConsensusRanker().rank([request])[0].get()
            XCTAssertEqual(a, b, "\(mode) is deterministic")
            winners.append(a.ranks.firstIndex(of: 1)!)
        }
        XCTAssertEqual(Set(winners).count, 1, "every mode picks the same best candidate: \(winners)")
    }

    func testIdenticalCandidatesTieAtRankOne() async throws {
        let request = RankRequest(jobId: "j", instruction: "x", candidates: ["same answer", "same answer", "different thing"])
        let outcome = try await ConsensusRanker().rank([request])[0].get()
        XCTAssertEqual(outcome.ranks, [1, 1, 3])
    }
}
