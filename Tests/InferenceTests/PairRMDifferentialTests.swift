import BlendCore
import Foundation
import XCTest
@testable import Inference

/// 32 generated ranking jobs per PairRM layout (long and truncated, Unicode, whitespace-heavy, runs, zero-width
/// endings, duplicate candidates), scored by the reference package itself: `DebertaV2PairRM` with its
/// `tokenize_pair` for the PairRM-hf layout, `Blender.rank` / `compare` (and its ranker's own collator for the
/// full matrix) for the RankerConfig layout (scripts/fixtures/differential.py). Every pair is scored in a batch
/// of its own, so these results do not depend on how batch-mates are arranged.
final class PairRMDifferentialTests: XCTestCase {
    struct Comparison: Decodable {
        var a: Int
        var b: Int
        var mode: String
        var logit: Double
    }

    struct Job: Decodable {
        var instruction: String
        var input: String
        var candidates: [String]
        var matrix: [[Double]]
        var scores: [Double]
        var ranks: [Int]
        var compare: [Comparison]?
    }

    static let jobs: [String: [Job]] = {
        let data = FileManager.default.contents(atPath: ReferenceFixtures.path("differential/pairrm-jobs.json"))!
        return try! JSONDecoder().decode([String: [Job]].self, from: data)
    }()

    static func ranker(_ layout: String) throws -> PairRMRanker {
        PairRMRanker(model: try PairRMModel(directory: ReferenceFixtures.path(layout)),
                     planner: TokenBudgetPlanner(maxSequences: 1, maxTokens: 4096))
    }

    func check(_ layout: String) throws {
        let jobs = try XCTUnwrap(Self.jobs[layout])
        XCTAssertGreaterThanOrEqual(jobs.count, 30)
        let ranker = try Self.ranker(layout)
        var maxDelta: Float = 0
        var rankAgreements = 0
        for (i, job) in jobs.enumerated() {
            let request = RankRequest(jobId: "\(layout)-\(i)", instruction: job.instruction, input: job.input,
                                      candidates: job.candidates, mode: .maxLogits, seed: 0)
            let outcome = try ranker.rankNow([request]).results[0].get()
            let matrix = try XCTUnwrap(outcome.comparisons)
            for a in job.candidates.indices {
                for b in job.candidates.indices where a != b {
                    let delta = abs(matrix[a, b] - Float(job.matrix[a][b]))
                    maxDelta = max(maxDelta, delta)
                    XCTAssertLessThanOrEqual(delta, PairRMParityTests.tolerance, "\(layout) job \(i) ℓ(\(a),\(b))")
                }
            }
            for (ours, theirs) in zip(outcome.scores, job.scores) {
                XCTAssertEqual(ours, Float(theirs), accuracy: PairRMParityTests.tolerance, "\(layout) job \(i) scores")
            }
            XCTAssertEqual(outcome.ranks, job.ranks, "\(layout) job \(i) ranks")
            if outcome.ranks == job.ranks { rankAgreements += 1 }
        }
        print("\(layout): \(jobs.count) jobs, max |Δ logit| \(maxDelta), rank orders identical \(rankAgreements)/\(jobs.count)")
    }

    func testPairRMHFLayoutMatchesDebertaV2PairRMWithTokenizePair() throws { try check("pairrm-tiny") }
    func testRankerLayoutMatchesBlenderRank() throws { try check("pairrm-tiny-ranker-layout") }

    /// The fixture really has what the issue found broken: truncated pairs and duplicate candidates.
    func testTheJobsCoverTruncationAndDuplicates() throws {
        for (layout, jobs) in Self.jobs {
            XCTAssertGreaterThan(jobs.filter { Set($0.candidates).count < $0.candidates.count }.count, 5, layout)
            let model = try PairRMModel(directory: ReferenceFixtures.path(layout))
            let long = try jobs.filter { job in
                try job.candidates.contains { try model.tokenizer.encode($0, addSpecialTokens: false).count > 412 }
            }
            XCTAssertGreaterThanOrEqual(long.count, 3, layout)
        }
    }

    /// `Blender.compare` in its three modes, with blendd's documented sign and scale: `[B,A]` is negated and
    /// `[A,B]+[B,A]` is the mean of the two orientations where the reference returns their sum.
    func testCompareMatchesBlenderCompareInEveryMode() throws {
        let ranker = try Self.ranker("pairrm-tiny-ranker-layout")
        var checked = 0
        // The long jobs' pairs are covered by the matrix tests; here the modes matter, not the lengths.
        for job in try XCTUnwrap(Self.jobs["pairrm-tiny-ranker-layout"]) where (job.input + job.candidates.joined()).count < 2000 {
            for c in job.compare ?? [] {
                let mode = try XCTUnwrap(CompareMode(rawValue: c.mode))
                let item = PairRMRanker.Comparison(source: job.instruction + job.input, a: job.candidates[c.a], b: job.candidates[c.b])
                let ours = try ranker.compare([item], mode: mode)[0].get()
                let expected: Double = switch mode {
                case .forward: c.logit
                case .reverse: -c.logit
                case .both: c.logit / 2
                }
                XCTAssertEqual(ours, Float(expected), accuracy: PairRMParityTests.tolerance, "\(c.mode) (\(c.a),\(c.b))")
                checked += 1
            }
        }
        XCTAssertGreaterThanOrEqual(checked, 24 * 6)
    }
}
