import XCTest
@testable import BlendCore

final class RankAggregationTests: XCTestCase {
    // ℓ(i,j) for three candidates; the values are arbitrary and deliberately not antisymmetric,
    // as PairRM's are not.
    private let m = ComparisonMatrix(rows: [
        [0, 1.5, -0.5],
        [-1.0, 0, 2.0],
        [0.25, -3.0, 0],
    ])

    func testMaxLogitsDividesByCandidateCountIncludingTheDiagonal() {
        let s = RankAggregation.maxLogitsScores(m)
        // s0 = ((1.5 - -1.0) + (-0.5 - 0.25)) / 3
        XCTAssertEqual(s[0], (2.5 - 0.75) / 3, accuracy: 1e-6)
        XCTAssertEqual(s[1], ((-1.0 - 1.5) + (2.0 - -3.0)) / 3, accuracy: 1e-6)
        XCTAssertEqual(s[2], ((0.25 - -0.5) + (-3.0 - 2.0)) / 3, accuracy: 1e-6)
        XCTAssertEqual(s.reduce(0, +), 0, accuracy: 1e-6, "MaxLogits scores of a full matrix sum to zero")
    }

    func testMaxWinsCountsWinsInBothSlots() {
        // 0: wins left vs 1 (1.5>0); as right: ℓ(1,0)=-1<0 win, ℓ(2,0)=0.25 no → 2
        // 1: left wins vs 2 (2.0); right: ℓ(0,1)=1.5 no, ℓ(2,1)=-3 win → 2
        // 2: left wins vs 0 (0.25); right: ℓ(0,2)=-0.5 win, ℓ(1,2)=2 no → 2
        XCTAssertEqual(RankAggregation.maxWinsScores(m), [2, 2, 2])
        let dominant = ComparisonMatrix(rows: [[0, 1, 1], [-1, 0, 1], [-1, -1, 0]])
        XCTAssertEqual(RankAggregation.maxWinsScores(dominant), [4, 2, 0])
    }

    func testCompetitionRanksShareTheBestRankOnTies() {
        XCTAssertEqual(RankAggregation.competitionRanks([0.9, 0.5, 0.5, 0.1]), [1, 2, 2, 4])
        XCTAssertEqual(RankAggregation.competitionRanks([2, 2, 2]), [1, 1, 1])
        XCTAssertEqual(RankAggregation.competitionRanks([-1, 3, 0]), [3, 1, 2])
        XCTAssertEqual(RankAggregation.competitionRanks([.nan, 1, -5]), [3, 1, 2])
    }

    func testTopKKeepsOriginalOrderAmongTies() {
        XCTAssertEqual(RankAggregation.topK(ranks: [2, 1, 2, 4, 1], k: 3), [1, 4, 0])
        XCTAssertEqual(RankAggregation.topK(ranks: [3, 1, 2], k: 10), [1, 2, 0])
        XCTAssertEqual(RankAggregation.topK(ranks: [3, 1, 2], k: 0), [])
    }

    func testOrderedPairsVisitIOuterJInner() {
        let pairs = ComparisonMatrix.orderedPairs(count: 3).map { [$0.left, $0.right] }
        XCTAssertEqual(pairs, [[0, 1], [0, 2], [1, 0], [1, 2], [2, 0], [2, 1]])
    }

    func testBubbleFindsTheBestAndWorstOfATransitiveComparatorForAnySeed() {
        let quality: [Float] = [0.3, 2.0, -1.0, 0.7, 1.1]
        for seed in UInt64(0)..<50 {
            for goal in [BubbleTournament.Goal.best, .worst] {
                var t = BubbleTournament(count: quality.count, goal: goal, seed: seed)
                var comparisons = 0
                while let (cur, nxt) = t.nextPair {
                    t.record(difference: quality[cur] - quality[nxt])
                    comparisons += 1
                }
                XCTAssertEqual(comparisons, quality.count - 1)
                XCTAssertEqual(t.winner, goal == .best ? 1 : 2, "seed \(seed) goal \(goal)")
                XCTAssertEqual(Set(t.winnerThenEliminated!), Set(0..<5))
            }
        }
    }

    func testBubbleTiesCarryTheLaterElementInBothGoals() {
        for goal in [BubbleTournament.Goal.best, .worst] {
            var t = BubbleTournament(count: 4, goal: goal, seed: 7)
            while t.nextPair != nil { t.record(difference: 0) }
            XCTAssertEqual(t.winner, t.order.last)
            XCTAssertEqual(t.steps.map(\.eliminated), Array(t.order.dropLast()))
        }
    }

    func testBubbleOrderIsReproducibleForASeedAndVariesAcrossSeeds() {
        let a = BubbleTournament(count: 8, seed: 42).order
        XCTAssertEqual(a, BubbleTournament(count: 8, seed: 42).order)
        XCTAssertEqual(a.sorted(), Array(0..<8))
        let distinct = Set((0..<20).map { BubbleTournament(count: 8, seed: UInt64($0)).order })
        XCTAssertGreaterThan(distinct.count, 15)
    }

    func testBubblePlacementRanksWinnerFirstAndLaterEliminatedHigher() {
        let quality: [Float] = [0, 3, 1, 2]
        var t = BubbleTournament(count: 4, seed: 3)
        while let (cur, nxt) = t.nextPair { t.record(difference: quality[cur] - quality[nxt]) }
        let placement = t.placement!
        XCTAssertEqual(placement.ranks[1], 1)
        XCTAssertEqual(placement.ranks.sorted(), [1, 2, 3, 4])
        XCTAssertEqual(placement.scores.reduce(0, +), 3, "one win per step")
        let eliminated = t.steps.map(\.eliminated)
        XCTAssertEqual(placement.ranks[eliminated.last!], 2)
        XCTAssertEqual(placement.ranks[eliminated.first!], 4)
    }

    func testSingleCandidateBubbleIsFinishedAtOnce() {
        let t = BubbleTournament(count: 1, seed: 0)
        XCTAssertNil(t.nextPair)
        XCTAssertEqual(t.winner, 0)
    }

    func testCompareModesArePositiveWhenABetter() {
        // A is better: ℓ(A,B) = 1.9 > 0 and ℓ(B,A) = −1.2 < 0.
        XCTAssertEqual(CompareMode.forward.combine(ab: 1.9, ba: nil), 1.9)
        XCTAssertEqual(CompareMode.reverse.combine(ab: nil, ba: -1.2), 1.2)
        XCTAssertEqual(CompareMode.both.combine(ab: 1.9, ba: -1.2), 1.55, accuracy: 1e-6)
        XCTAssertEqual(CompareMode.both.orientations.map { [$0.left, $0.right] }, [[0, 1], [1, 0]])
        XCTAssertEqual(CompareMode(rawValue: "[A,B]+[B,A]"), .both)
    }

    func testReferenceModesPickAsPythonWould() {
        let texts = ["aaa", "b", "cccc", "dd", "eeee", "e\u{301}\u{301}"]  // the last is 3 scalars, 1 character
        XCTAssertEqual(ReferenceMode.longest.referenceIndex(of: texts), 2, "first of equal maxima")
        XCTAssertEqual(ReferenceMode.shortest.referenceIndex(of: texts), 1)
        // sorted by length (stable): b(1) dd(3) aaa(0) é́(5) cccc(2) eeee(4); index 6/2 = 3 → 5
        XCTAssertEqual(ReferenceMode.medianLength.referenceIndex(of: texts), 5)
        XCTAssertEqual(ReferenceMode.first.referenceIndex(of: texts), 0)
        XCTAssertEqual(ReferenceMode.last.referenceIndex(of: texts), 5)
        XCTAssertEqual(ReferenceMode.rewards(referenceVersus: [0.5, -2]), [-0.5, 2])
    }
}
