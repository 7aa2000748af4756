import BlendCore
import Dispatch
import Synchronization

/// A pointwise reward model behind the `CandidateRanker` API: one forward pass per distinct candidate, scoring
/// (instruction + input, candidate) as the question and answer, instead of PairRM's N(N−1) ordered pairs.
/// Candidates of a job that tokenize identically share one pass, so they tie exactly; a job's scores are the same
/// bits whichever other jobs share its batches (the packed encoder and the per-row head are batch-composition invariant).
/// The candidates of every job of a call are sorted by length and packed into forward batches under the
/// planner's budget. Scores are the logits; ranks are BlendCore's competition ranks of them. A rank mode
/// does not apply to a pointwise model: every mode ranks by score, and no comparison matrix is produced.
/// A job that cannot be tokenized fails alone.
public final class RewardModelRanker: CandidateRanker {
    public let model: RewardModel
    public let planner: TokenBudgetPlanner
    public var label: String { model.label }
    /// Model work runs here, off Swift's cooperative pool, so a long forward pass never starves other tasks.
    private let queue = DispatchQueue(label: "blendd.reward-model")
    private let lastReport = Mutex(PairScheduleReport())

    public var lastPaddingAvoided: Double? { lastReport.withLock { $0.paddingAvoided } }

    public init(model: RewardModel, planner: TokenBudgetPlanner = TokenBudgetPlanner(maxSequences: 64, maxTokens: 8192)) {
        self.model = model
        self.planner = planner
    }

    public convenience init(directory: String) throws {
        self.init(model: try RewardModel(directory: directory))
    }

    /// Scores of many sequences in as few forward batches as the budget allows, in the order given.
    public func scores(_ sequences: [[Int]]) -> (scores: [Float], report: PairScheduleReport) {
        let plan = planner.plan(lengths: sequences.map(\.count))
        var scores = [Float](repeating: .nan, count: sequences.count)
        for batch in plan.batches {
            let values = model.scores(batch.members.map { sequences[$0] })
            for (member, value) in zip(batch.members, values) { scores[member] = value }
        }
        return (scores, PairScheduleReport(pairs: sequences.count, batches: plan.batches.count, tokens: plan.realTokens,
                                           paddedTokens: plan.paddedTokens))
    }

    public func rank(_ requests: [RankRequest]) async -> [Result<RankOutcome, RankingError>] {
        await withCheckedContinuation { continuation in
            queue.async {
                let (results, report) = self.rankNow(requests)
                self.lastReport.withLock { $0 = report }
                continuation.resume(returning: results)
            }
        }
    }

    /// `rank` without leaving the calling thread, with the scheduling report.
    public func rankNow(_ requests: [RankRequest]) -> (results: [Result<RankOutcome, RankingError>], report: PairScheduleReport) {
        var results = [Result<RankOutcome, RankingError>?](repeating: nil, count: requests.count)
        var sequences: [[Int]] = []
        var owners: [(request: Int, slots: [Int], passes: Int)] = []
        for (i, request) in requests.enumerated() {
            guard !request.candidates.isEmpty else {
                results[i] = .failure(RankingError(jobId: request.jobId, message: "no candidates to rank"))
                continue
            }
            do {
                let question = request.instruction + request.input
                var distinct: [[Int]: Int] = [:]
                var unique: [[Int]] = []
                var slots: [Int] = []
                for candidate in request.candidates {
                    let ids = try model.encoder.encode(question: question, answer: candidate).ids
                    if distinct[ids] == nil {
                        distinct[ids] = sequences.count + unique.count
                        unique.append(ids)
                    }
                    slots.append(distinct[ids]!)
                }
                sequences += unique
                owners.append((i, slots, unique.count))
            } catch {
                results[i] = .failure(RankingError(jobId: request.jobId, message: "cannot tokenize: \(error)"))
            }
        }
        let (scores, report) = self.scores(sequences)
        for owner in owners {
            let mine = owner.slots.map { scores[$0] }
            results[owner.request] = .success(RankOutcome(scores: mine, ranks: RankAggregation.competitionRanks(mine),
                                                          comparisons: nil, forwardPasses: owner.passes))
        }
        return (results.map { $0! }, report)
    }
}
