import BlendCore
import Foundation
import XCTest
@testable import Inference

/// The job kinds (compare, best/worst of n, reward) through each ranker's one-call scheduler: parity with the
/// reference package's values on the fixture models, and a task's answer independent of its batch mates.
final class JobKindsRankerTests: XCTestCase {
    static let layout = "pairrm-tiny-ranker-layout"
    static let ranker: PairRMRanker = try! PairRMDifferentialTests.ranker(layout)
    /// Short jobs of the differential fixture (the long ones are covered by the matrix tests).
    static let jobs: [PairRMDifferentialTests.Job] = PairRMDifferentialTests.jobs[layout]!
        .filter { ($0.input + $0.candidates.joined()).count < 2000 }

    func request(_ job: PairRMDifferentialTests.Job, id: String, seed: UInt64 = 11) -> RankRequest {
        RankRequest(jobId: id, instruction: job.instruction, input: job.input, candidates: job.candidates, mode: .maxLogits, seed: seed)
    }

    /// Every kind for every short job: the mixed batch the worker would send.
    func mixedTasks() -> [RankTask] {
        var tasks: [RankTask] = []
        for (i, job) in Self.jobs.enumerated() {
            let r = request(job, id: "j\(i)", seed: UInt64(i))
            var bubble = r
            bubble.mode = .bubble
            tasks.append(.rank(i % 2 == 0 ? r : bubble))
            let n = job.candidates.count
            let items = (0..<n).flatMap { a in (0..<n).filter { $0 != a }.map { b in
                BlendJob.CompareItem(source: job.instruction + job.input, a: job.candidates[a], b: job.candidates[b]) } }
            tasks.append(.compare(CompareRequest(jobId: "c\(i)", items: Array(items.prefix(5)), mode: CompareMode.allCases[i % 3])))
            tasks.append(.select(SelectRequest(request: r, goal: i % 2 == 0 ? .best : .worst, method: i % 3 == 0 ? .full : .bubble)))
            let reference: BlendJob.RewardReference = i % 4 == 3 ? .text("A reference answer \(i).") : .mode(ReferenceMode.allCases[i % 5])
            tasks.append(.reward(RewardRequest(request: r, reference: reference)))
        }
        return tasks
    }

    func testAMixedBatchOfEveryKindGivesBitIdenticalAnswersToEachTaskAlone() throws {
        let tasks = mixedTasks()
        XCTAssertGreaterThan(tasks.count, 40)
        let (together, report) = Self.ranker.runNow(tasks)
        XCTAssertGreaterThan(report.pairs, 0)
        var generator = SplitMix64(seed: 5)
        let shuffled = Array(tasks.indices).shuffled(using: &generator)
        let (reordered, _) = Self.ranker.runNow(shuffled.map { tasks[$0] })
        for (k, i) in shuffled.enumerated() {
            let alone = Self.ranker.runNow([tasks[i]]).results[0]
            XCTAssertEqual(try together[i].get(), try alone.get(), "task \(i) (\(tasks[i].jobId)) with every kind vs alone")
            XCTAssertEqual(try reordered[k].get(), try alone.get(), "task \(i) in a shuffled batch vs alone")
        }
    }

    /// All pairs that need no earlier result go through one schedule: with no bubble work, one `logits` call.
    func testEveryIndependentPairOfEveryKindIsInOneSchedule() throws {
        let job = Self.jobs[0]
        let n = job.candidates.count
        let r = request(job, id: "one")
        let tasks: [RankTask] = [
            .rank(r),
            .compare(CompareRequest(jobId: "c", items: [.init(source: job.instruction + job.input, a: job.candidates[0], b: job.candidates[1])])),
            .select(SelectRequest(request: r, goal: .worst, method: .full)),
            .reward(RewardRequest(request: r, reference: .text("Something else entirely."))),
        ]
        let planner = TokenBudgetPlanner(maxSequences: 1024, maxTokens: 1 << 20)
        let wide = PairRMRanker(model: Self.ranker.model, planner: planner)
        let (results, report) = wide.runNow(tasks)
        XCTAssertEqual(report.pairs, n * (n - 1) + 2 + n * (n - 1) + 2 * n)
        XCTAssertEqual(report.batches, 1, "one packed batch under a budget that holds them all")
        for result in results { _ = try result.get() }
        // Bubble rounds after the first: each round one more schedule, whatever the number of tournaments.
        let bubbles = (0..<3).map { RankTask.select(SelectRequest(request: request(job, id: "b\($0)", seed: UInt64($0)), goal: .best)) }
        let (_, bubbleReport) = wide.runNow(tasks + bubbles)
        XCTAssertEqual(bubbleReport.pairs, report.pairs + 3 * 2 * (n - 1))
        XCTAssertEqual(bubbleReport.batches, n - 1, "the first round joins the one schedule, then n − 2 lock-step rounds")
    }

    /// `Blender.compare(return_logits=True)` of the reference in every mode is our `reference_logit`; our logit
    /// is its documented reading; the probability is TRL's softmax of the two MaxLogits scores.
    func testCompareJudgementsMatchBlenderCompareInEveryMode() throws {
        var checked = 0
        for job in Self.jobs {
            for c in job.compare ?? [] {
                let mode = try XCTUnwrap(CompareMode(rawValue: c.mode))
                let item = BlendJob.CompareItem(source: job.instruction + job.input, a: job.candidates[c.a], b: job.candidates[c.b])
                guard case .compare(let outcome) = try Self.ranker.runNow([.compare(CompareRequest(jobId: "x", items: [item], mode: mode))]).results[0].get()
                else { return XCTFail("not a compare outcome") }
                let j = outcome.judgements[0]
                let tolerance = PairRMParityTests.tolerance
                XCTAssertEqual(j.referenceLogit, Float(c.logit), accuracy: tolerance, "\(c.mode) (\(c.a),\(c.b)) reference logit")
                let expected: Double = switch mode { case .forward: c.logit; case .reverse: -c.logit; case .both: c.logit / 2 }
                XCTAssertEqual(j.logit, Float(expected), accuracy: tolerance)
                // TRL: softmax over rank()'s MaxLogits scores [s_A, s_B] of the pair, s = (ℓ(A,B) − ℓ(B,A)) / 2 · (±1).
                let ab = job.matrix[c.a][c.b], ba = job.matrix[c.b][c.a]
                let margin: Double = switch mode { case .forward: ab; case .reverse: -ba; case .both: (ab - ba) / 2 - (ba - ab) / 2 }
                XCTAssertEqual(j.probability, 1 / (1 + exp(-margin)), accuracy: 1e-4)
                XCTAssertEqual(j.verdict, j.logit > 0 ? .a : j.logit < 0 ? .b : .tie)
                XCTAssertEqual(outcome.forwardPasses, mode == .both ? 2 : 1)
                checked += 1
            }
        }
        XCTAssertGreaterThanOrEqual(checked, 24 * 6)
    }

    func testIdenticalAAndBAreAnExactTieInEveryMode() throws {
        let text = Self.jobs[0].candidates[0]
        for mode in [CompareMode.both] {
            let item = BlendJob.CompareItem(source: "Say something.", a: text, b: text)
            guard case .compare(let o) = try Self.ranker.runNow([.compare(CompareRequest(jobId: "t", items: [item], mode: mode))]).results[0].get()
            else { return XCTFail("not a compare outcome") }
            XCTAssertEqual(o.judgements[0].logit, 0)
            XCTAssertEqual(o.judgements[0].verdict, .tie)
            XCTAssertEqual(o.judgements[0].probability, 0.5)
        }
    }

    /// `rank_with_ref`: r_j = −compare(ref, j) = ℓ(j, ref) − ℓ(ref, j) on the reference's own matrix, for every
    /// reference mode, the reference against itself scoring exactly 0.
    func testRewardsMatchRankWithRefOnTheReferenceMatrixForEveryMode() throws {
        for (i, job) in Self.jobs.enumerated() {
            for mode in ReferenceMode.allCases {
                guard case .reward(let o) = try Self.ranker.runNow([.reward(RewardRequest(request: request(job, id: "r\(i)"), reference: .mode(mode)))]).results[0].get()
                else { return XCTFail("not a reward outcome") }
                let ref = mode.referenceIndex(of: job.candidates)
                XCTAssertEqual(o.referenceIndex, ref)
                XCTAssertEqual(o.forwardPasses, 2 * job.candidates.count)
                for j in job.candidates.indices {
                    let expected = j == ref ? 0 : job.matrix[j][ref] - job.matrix[ref][j]
                    XCTAssertEqual(o.rewards[j], Float(expected), accuracy: 2 * PairRMParityTests.tolerance, "job \(i) \(mode) candidate \(j)")
                }
                XCTAssertEqual(o.rewards[ref], 0, "the reference against itself")
            }
        }
    }

    /// A given reference text scores as compare(text, j) of the same source.
    func testRewardsAgainstAGivenTextAreMinusCompareOfTheTextWithEachCandidate() throws {
        let job = Self.jobs[1]
        let text = "Perhaps; it depends on what you mean."
        guard case .reward(let o) = try Self.ranker.runNow([.reward(RewardRequest(request: request(job, id: "rt"), reference: .text(text)))]).results[0].get()
        else { return XCTFail("not a reward outcome") }
        XCTAssertNil(o.referenceIndex)
        let compared = Self.ranker.compare(job.candidates.map { .init(source: job.instruction + job.input, a: text, b: $0) }, mode: .both)
        for (reward, c) in zip(o.rewards, compared) { XCTAssertEqual(reward, -2 * (try c.get())) }
    }

    /// Full selection is the MaxLogits top-1 / bottom-1 of the reference's matrix; bubble replays the seeded
    /// tournament on it.
    func testSelectionsFollowTheReferenceMatrix() throws {
        for (i, job) in Self.jobs.enumerated() {
            let m = ComparisonMatrix(rows: job.matrix.map { $0.map(Float.init) })
            let scores = RankAggregation.maxLogitsScores(m)
            for goal in [BubbleTournament.Goal.best, .worst] {
                let full = try Self.ranker.runNow([.select(SelectRequest(request: request(job, id: "s\(i)"), goal: goal, method: .full))]).results[0].get()
                guard case .select(let f) = full else { return XCTFail("not a selection") }
                let expected = SelectionOutcome.extreme(of: scores, goal: goal)
                // Near-ties may flip within the parity tolerance; those are not counterexamples.
                if abs(scores[expected] - scores[f.index]) > 2 * PairRMParityTests.tolerance {
                    XCTFail("job \(i) \(goal): chose \(f.index), the reference's matrix says \(expected)")
                }
                XCTAssertEqual(f.forwardPasses, job.candidates.count * (job.candidates.count - 1))
                XCTAssertNil(f.eliminationOrder)

                let bubble = try Self.ranker.runNow([.select(SelectRequest(request: request(job, id: "s\(i)", seed: 3), goal: goal))]).results[0].get()
                guard case .select(let b) = bubble else { return XCTFail("not a selection") }
                var t = BubbleTournament(count: job.candidates.count, goal: goal, seed: 3)
                while let (c, n) = t.nextPair { t.record(difference: m[c, n] - m[n, c]) }
                XCTAssertEqual(b.eliminationOrder?.count, job.candidates.count)
                XCTAssertEqual(b.eliminationOrder?.first, b.index)
                XCTAssertEqual(b.forwardPasses, 2 * (job.candidates.count - 1))
                if b.index != t.winner {
                    let d = t.steps.map { abs($0.difference) }.min() ?? 0
                    XCTAssertLessThan(d, 4 * PairRMParityTests.tolerance, "job \(i) \(goal): bubble chose \(b.index), reference matrix \(t.winner!)")
                }
            }
        }
    }

    /// The library entry points are thin wrappers of the scheduler: the same values bit for bit.
    func testLibraryEntryPointsAgreeWithTheScheduler() throws {
        let requests = Self.jobs.prefix(6).enumerated().map { request($1, id: "w\($0)", seed: UInt64($0)) }
        for goal in [BubbleTournament.Goal.best, .worst] {
            let selected = Self.ranker.select(requests, goal: goal)
            for (r, s) in zip(requests, selected) {
                guard case .select(let o) = try Self.ranker.runNow([.select(SelectRequest(request: r, goal: goal))]).results[0].get() else { return XCTFail() }
                XCTAssertEqual(try s.get().winnerThenEliminated, o.eliminationOrder)
            }
        }
        let rewards = Self.ranker.rewards(requests, reference: .shortest)
        for (r, w) in zip(requests, rewards) {
            guard case .reward(let o) = try Self.ranker.runNow([.reward(RewardRequest(request: r, reference: .mode(.shortest)))]).results[0].get() else { return XCTFail() }
            XCTAssertEqual(try w.get(), o.rewards)
        }
    }

    // MARK: Pointwise and weight-free rankers

    static let rewardModel = RewardModelRanker(model: try! RewardModel(directory: ReferenceFixtures.path("oasst-rm-tiny")),
                                               planner: TokenBudgetPlanner(maxSequences: 3, maxTokens: 512))

    func testAPointwiseModelAnswersEveryKindFromItsScores() throws {
        for (i, job) in Self.jobs.prefix(8).enumerated() {
            let r = request(job, id: "p\(i)")
            let scores = try Self.rewardModel.rankNow([r]).results[0].get().scores
            let source = job.instruction + job.input
            let items = [BlendJob.CompareItem(source: source, a: job.candidates[0], b: job.candidates[1])]
            let tasks: [RankTask] = [
                .compare(CompareRequest(jobId: "c", items: items, mode: .reverse)),
                .select(SelectRequest(request: r, goal: .best)),
                .select(SelectRequest(request: r, goal: .worst, method: .full)),
                .reward(RewardRequest(request: r, reference: .mode(.first))),
            ]
            let results = Self.rewardModel.runNow(tasks).results.map { try? $0.get() }
            let tolerance: Float = 1e-5   // rows of a packed batch may differ in the last bits by position
            guard case .compare(let c)? = results[0], case .select(let best)? = results[1], case .select(let worst)? = results[2],
                  case .reward(let w)? = results[3] else { return XCTFail("job \(i): \(results)") }
            XCTAssertEqual(c.judgements[0].logit, scores[0] - scores[1], accuracy: tolerance)
            XCTAssertEqual(c.judgements[0].referenceLogit, c.judgements[0].logit, "pointwise compare has no orientation")
            XCTAssertEqual(best.index, SelectionOutcome.extreme(of: best.scores!, goal: .best))
            XCTAssertEqual(worst.index, SelectionOutcome.extreme(of: worst.scores!, goal: .worst))
            for (a, b) in zip(best.scores!, scores) { XCTAssertEqual(a, b, accuracy: tolerance) }
            for j in scores.indices { XCTAssertEqual(w.rewards[j], scores[j] - scores[0], accuracy: 2 * tolerance) }
            XCTAssertEqual(w.rewards[0], 0)
        }
    }

    func testTheConsensusRankerAnswersEveryKindAndAMixedBatchChangesNothing() async throws {
        let consensus = ConsensusRanker()
        let tasks = mixedTasks()
        let together = await consensus.run(tasks)
        for (i, task) in tasks.enumerated() {
            let alone = await consensus.run([task])
            XCTAssertEqual(try together[i].get(), try alone[0].get())
        }
        // Blend ranking through `run` is `rank`.
        let ranked = await consensus.rank([request(Self.jobs[0], id: "k")])
        let viaRun = await consensus.run([.rank(request(Self.jobs[0], id: "k"))])
        XCTAssertEqual(try viaRun[0].get(), .rank(try ranked[0].get()))
    }

    func testATaskThatCannotBeAnsweredFailsAloneWithItsJobId() async throws {
        let r = RankRequest(jobId: "empty", instruction: "q", candidates: [])
        let tasks: [RankTask] = [
            .compare(CompareRequest(jobId: "no-pairs", items: [])),
            .select(SelectRequest(request: r, goal: .best)),
            .reward(RewardRequest(request: r)),
            .rank(request(Self.jobs[0], id: "fine")),
        ]
        for results in [Self.ranker.runNow(tasks).results, Self.rewardModel.runNow(tasks).results, await ConsensusRanker().run(tasks)] {
            for (task, result) in zip(tasks.prefix(3), results) {
                guard case .failure(let error) = result else { XCTFail("\(task.jobId) answered"); continue }
                XCTAssertEqual(error.jobId, task.jobId)
            }
            XCTAssertNoThrow(try results[3].get())
        }
    }
}
