import BlendCore
import XCTest
@testable import Inference

/// The ranker's modes and scheduling on the fixture PairRM, against the reference's full matrices.
final class PairRMRankerTests: XCTestCase {
    static let ranker = PairRMRanker(model: PairRMParityTests.model, planner: TokenBudgetPlanner(maxSequences: 4, maxTokens: 256))
    var jobs: [ReferenceFixtures.Job] { ReferenceFixtures.reference.pairrm_jobs }

    func request(_ job: ReferenceFixtures.Job, id: String, mode: RankMode, seed: UInt64 = 7) -> RankRequest {
        RankRequest(jobId: id, instruction: job.source, candidates: job.candidates, mode: mode, seed: seed)
    }

    func referenceMatrix(_ job: ReferenceFixtures.Job) -> ComparisonMatrix {
        ComparisonMatrix(rows: job.matrix.map { $0.map(Float.init) })
    }

    func testFullMatricesScoresAndRanksMatchTheReference() throws {
        let requests = jobs.enumerated().map { request($1, id: "job-\($0)", mode: .maxLogits) }
        let (results, report) = Self.ranker.rankNow(requests)
        XCTAssertEqual(report.pairs, 3 * 2 + 4 * 3)
        XCTAssertGreaterThan(report.batches, 1, "the small budget splits the pairs over several batches")
        for (job, result) in zip(jobs, results) {
            let outcome = try result.get()
            let matrix = try XCTUnwrap(outcome.comparisons)
            let expected = referenceMatrix(job)
            for (a, b) in zip(matrix.values, expected.values) { XCTAssertEqual(a, b, accuracy: PairRMParityTests.tolerance) }
            XCTAssertEqual(outcome.ranks, RankAggregation.competitionRanks(RankAggregation.maxLogitsScores(expected)))
            XCTAssertEqual(outcome.forwardPasses, job.candidates.count * (job.candidates.count - 1))
        }
        let wins = Self.ranker.rankNow(jobs.enumerated().map { request($1, id: "w\($0)", mode: .maxWins) }).results
        for (job, result) in zip(jobs, wins) {
            XCTAssertEqual(try result.get().scores, RankAggregation.maxWinsScores(referenceMatrix(job)))
        }
    }

    func testAJobsResultDoesNotDependOnItsBatchMates() throws {
        let together = Self.ranker.rankNow(jobs.enumerated().map { request($1, id: "t\($0)", mode: .maxLogits) }).results
        for (i, job) in jobs.enumerated() {
            let alone = try Self.ranker.rankNow([request(job, id: "a\(i)", mode: .maxLogits)]).results[0].get()
            let inBatch = try together[i].get()
            for (a, b) in zip(alone.scores, inBatch.scores) { XCTAssertEqual(a, b, accuracy: 1e-6) }
            XCTAssertEqual(alone.ranks, inBatch.ranks)
        }
    }

    func testBubbleBestAndWorstOfNFollowTheReferenceMatrixInTheSeededOrder() throws {
        for seed: UInt64 in [1, 2, 3, 99] {
            let requests = jobs.enumerated().map { request($1, id: "b\($0)", mode: .bubble, seed: seed) }
            for goal in [BubbleTournament.Goal.best, .worst] {
                let selected = Self.ranker.select(requests, goal: goal)
                for (job, result) in zip(jobs, selected) {
                    let ours = try result.get()
                    let m = referenceMatrix(job)
                    var expected = BubbleTournament(count: job.candidates.count, goal: goal, seed: seed)
                    while let (c, n) = expected.nextPair { expected.record(difference: m[c, n] - m[n, c]) }
                    XCTAssertEqual(ours.winner, expected.winner, "seed \(seed) \(goal)")
                    XCTAssertEqual(ours.winnerThenEliminated, expected.winnerThenEliminated)
                }
            }
            // As a rank mode, the placement of the best-of-n tournament.
            let ranked = Self.ranker.rankNow(requests).results
            for (job, result) in zip(jobs, ranked) {
                let outcome = try result.get()
                XCTAssertEqual(outcome.forwardPasses, 2 * (job.candidates.count - 1))
                XCTAssertNil(outcome.comparisons)
                XCTAssertEqual(Set(outcome.ranks), Set(1...job.candidates.count))
            }
        }
    }

    func testCompareModesUseThePositiveMeansABetterConvention() throws {
        let job = jobs[1]
        let m = referenceMatrix(job)
        let items = [(0, 1), (2, 3), (3, 0)].map { PairRMRanker.Comparison(source: job.source, a: job.candidates[$0.0], b: job.candidates[$0.1]) }
        let pairs = [(0, 1), (2, 3), (3, 0)]
        let forward = Self.ranker.compare(items, mode: .forward)
        let reverse = Self.ranker.compare(items, mode: .reverse)
        let both = Self.ranker.compare(items, mode: .both)
        let t = PairRMParityTests.tolerance
        for (k, (a, b)) in pairs.enumerated() {
            XCTAssertEqual(try forward[k].get(), m[a, b], accuracy: t)
            XCTAssertEqual(try reverse[k].get(), -m[b, a], accuracy: t)
            XCTAssertEqual(try both[k].get(), (m[a, b] - m[b, a]) / 2, accuracy: t)
        }
    }

    func testRewardsAgainstTheLongestCandidate() throws {
        let job = jobs[1]
        let m = referenceMatrix(job)
        let rewards = try Self.ranker.rewards([request(job, id: "r", mode: .maxLogits)], reference: .longest)[0].get()
        let ref = ReferenceMode.longest.referenceIndex(of: job.candidates)
        for j in job.candidates.indices {
            let expected: Float = j == ref ? 0 : m[j, ref] - m[ref, j]
            // The reference against itself is a real forward pair (ℓ(r,r) − ℓ(r,r) = 0 up to rounding).
            XCTAssertEqual(rewards[j], expected, accuracy: 2 * PairRMParityTests.tolerance, "candidate \(j)")
        }
    }

    func testABadJobFailsAloneAndSingleCandidatesNeedNoModel() async throws {
        let good = request(jobs[0], id: "good", mode: .maxLogits)
        let empty = RankRequest(jobId: "empty", instruction: "x", candidates: [])
        let single = RankRequest(jobId: "single", instruction: "x", candidates: ["only one"])
        let results = await Self.ranker.rank([empty, good, single])
        XCTAssertThrowsError(try results[0].get()) { XCTAssertEqual(($0 as? RankingError)?.jobId, "empty") }
        XCTAssertEqual(try results[1].get().ranks.count, 3)
        XCTAssertEqual(try results[2].get(), RankOutcome(scores: [0], ranks: [1], comparisons: nil, forwardPasses: 0))
    }
}
