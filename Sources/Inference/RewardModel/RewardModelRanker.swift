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
        let (results, report) = runNow(requests.map(RankTask.rank))
        return (results.map { result in
            result.map { outcome in
                guard case .rank(let ranked) = outcome else { preconditionFailure("a rank task answered with \(outcome)") }
                return ranked
            }
        }, report)
    }

    public func run(_ tasks: [RankTask]) async -> [Result<TaskOutcome, RankingError>] {
        await withCheckedContinuation { continuation in
            queue.async {
                let (results, report) = self.runNow(tasks)
                self.lastReport.withLock { $0 = report }
                continuation.resume(returning: results)
            }
        }
    }

    /// `run` without leaving the calling thread. A pointwise model answers every kind from one score per
    /// (question, answer), all of them in one schedule (spec §4, "Other-RM paths"):
    /// - compare: score_A − score_B in every mode (a pointwise score has no orientation), probability
    ///   σ(score_A − score_B);
    /// - best_of_n / worst_of_n: the first highest (lowest) score, whatever the method (there is no tournament
    ///   to run: N passes already give every score);
    /// - reward: score_j − score_ref.
    public func runNow(_ tasks: [RankTask]) -> (results: [Result<TaskOutcome, RankingError>], report: PairScheduleReport) {
        var results = [Result<TaskOutcome, RankingError>?](repeating: nil, count: tasks.count)
        var sequences: [[Int]] = []
        var finishes: [(task: Int, finish: ([Float]) -> TaskOutcome)] = []

        /// Slots of the (question, answer) sequences, identical ones of a task sharing one pass; nil when
        /// tokenizing fails (the task fails alone).
        func slots(_ i: Int, jobId: String, _ texts: [(question: String, answer: String)]) -> (slots: [Int], passes: Int)? {
            var distinct: [[Int]: Int] = [:]
            var result: [Int] = []
            var added = 0
            do {
                for text in texts {
                    let ids = try model.encoder.encode(question: text.question, answer: text.answer).ids
                    if let slot = distinct[ids] { result.append(slot); continue }
                    distinct[ids] = sequences.count
                    result.append(sequences.count)
                    sequences.append(ids)
                    added += 1
                }
            } catch {
                sequences.removeLast(added)
                results[i] = .failure(RankingError(jobId: jobId, message: "cannot tokenize: \(error)"))
                return nil
            }
            return (result, added)
        }

        for (i, task) in tasks.enumerated() {
            switch task {
            case .rank(let request):
                guard !request.candidates.isEmpty else {
                    results[i] = .failure(RankingError(jobId: request.jobId, message: "no candidates to rank")); continue
                }
                let question = request.instruction + request.input
                guard let (mine, passes) = slots(i, jobId: request.jobId, request.candidates.map { (question, $0) }) else { continue }
                finishes.append((i, { scores in
                    let s = mine.map { scores[$0] }
                    return .rank(RankOutcome(scores: s, ranks: RankAggregation.competitionRanks(s), comparisons: nil, forwardPasses: passes))
                }))
            case .compare(let request):
                guard !request.items.isEmpty else {
                    results[i] = .failure(RankingError(jobId: request.jobId, message: "no pairs to judge")); continue
                }
                let texts = request.items.flatMap { [($0.source, $0.a), ($0.source, $0.b)] }
                guard let (mine, passes) = slots(i, jobId: request.jobId, texts) else { continue }
                finishes.append((i, { scores in
                    let judgements = request.items.indices.map { k in
                        PairJudgement.pointwise(scoreA: scores[mine[2 * k]], scoreB: scores[mine[2 * k + 1]])
                    }
                    return .compare(CompareOutcome(judgements: judgements, forwardPasses: passes))
                }))
            case .select(let select):
                let request = select.request
                guard !request.candidates.isEmpty else {
                    results[i] = .failure(RankingError(jobId: request.jobId, message: "no candidates to select from")); continue
                }
                let question = request.instruction + request.input
                guard let (mine, passes) = slots(i, jobId: request.jobId, request.candidates.map { (question, $0) }) else { continue }
                finishes.append((i, { scores in
                    let s = mine.map { scores[$0] }
                    return .select(SelectionOutcome(index: SelectionOutcome.extreme(of: s, goal: select.goal), eliminationOrder: nil,
                                                    scores: s, forwardPasses: passes))
                }))
            case .reward(let reward):
                let request = reward.request
                guard !request.candidates.isEmpty else {
                    results[i] = .failure(RankingError(jobId: request.jobId, message: "no candidates to reward")); continue
                }
                let question = request.instruction + request.input
                var answers = request.candidates
                let referenceIndex: Int?
                switch reward.reference {
                case .mode(let mode): referenceIndex = mode.referenceIndex(of: request.candidates)
                case .text(let text): referenceIndex = nil; answers.append(text)
                }
                guard let (mine, passes) = slots(i, jobId: request.jobId, answers.map { (question, $0) }) else { continue }
                let n = request.candidates.count
                let ref = referenceIndex ?? n
                finishes.append((i, { scores in
                    .reward(RewardOutcome(rewards: (0..<n).map { scores[mine[$0]] - scores[mine[ref]] }, referenceIndex: referenceIndex,
                                          forwardPasses: passes))
                }))
            }
        }
        let (scores, report) = self.scores(sequences)
        for (task, finish) in finishes { results[task] = .success(finish(scores)) }
        return (results.map { $0! }, report)
    }
}
