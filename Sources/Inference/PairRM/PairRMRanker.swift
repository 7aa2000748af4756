import BlendCore
import Dispatch
import Synchronization

/// What one scheduling run did: how many pairs went through how many forward batches, and how many
/// positions padding to each batch's longest pair would have cost (the packed encoder computes none).
public struct PairScheduleReport: Sendable, Equatable {
    public var pairs = 0
    /// Pairs actually run: identical inputs (duplicate candidates) are scored once and share the logit.
    public var distinctPairs = 0
    public var batches = 0
    public var tokens = 0
    /// Positions a padded runner would compute for the same batches (`batches × longest`).
    public var paddedTokens = 0
    /// Share of a padded runner's work that would be padding; blendd's packed encoder skips it.
    public var paddingAvoided: Double { paddedTokens == 0 ? 0 : Double(paddedTokens - tokens) / Double(paddedTokens) }

    mutating func add(_ other: PairScheduleReport) {
        pairs += other.pairs; distinctPairs += other.distinctPairs; batches += other.batches; tokens += other.tokens; paddedTokens += other.paddedTokens
    }
}

/// PairRM behind the `CandidateRanker` API, with the reference's comparison modes (spec §2) and
/// batched pair scheduling: every ordered pair the jobs of a call need is built, sorted by length,
/// packed into forward batches under the planner's budget, and its logit mapped back to its job.
/// Each job is tokenized once; a job that cannot be encoded fails alone.
public final class PairRMRanker: CandidateRanker {
    public let model: PairRMModel
    public let planner: TokenBudgetPlanner
    public var label: String { model.label }
    /// Model work runs here, off Swift's cooperative pool, so a long forward pass never starves other tasks.
    private let queue = DispatchQueue(label: "blendd.pairrm")
    private let lastReport = Mutex(PairScheduleReport())

    public var lastPaddingAvoided: Double? { lastReport.withLock { $0.paddingAvoided } }

    /// The default budget keeps a batch's activations of PairRM-large near 0.5 GB.
    public init(model: PairRMModel, planner: TokenBudgetPlanner = TokenBudgetPlanner(maxSequences: 64, maxTokens: 8192)) {
        self.model = model
        self.planner = planner
    }

    public convenience init(directory: String, precision: ModelPrecision = .fp32) throws {
        self.init(model: try PairRMModel(directory: directory, precision: precision))
    }

    // MARK: Scheduling

    /// Logits of many pairs in as few forward batches as the budget allows, in the order given. Identical inputs
    /// (candidates with the same token ids) run once and share one value, so they tie exactly, as in the reference.
    public func logits(_ pairs: [PairInput]) -> (logits: [Float], report: PairScheduleReport) {
        var slotOf: [PairInput: Int] = [:]
        var distinct: [PairInput] = []
        let slots = pairs.map { pair in
            if let slot = slotOf[pair] { return slot }
            slotOf[pair] = distinct.count
            distinct.append(pair)
            return distinct.count - 1
        }
        let plan = planner.plan(lengths: distinct.map(\.ids.count))
        var values = [Float](repeating: .nan, count: distinct.count)
        for batch in plan.batches {
            for (member, value) in zip(batch.members, model.logits(batch.members.map { distinct[$0] })) { values[member] = value }
        }
        return (slots.map { values[$0] }, PairScheduleReport(pairs: pairs.count, distinctPairs: distinct.count, batches: plan.batches.count,
                                                             tokens: plan.realTokens, paddedTokens: plan.paddedTokens))
    }

    private func offQueue<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            queue.async { continuation.resume(returning: work()) }
        }
    }

    /// Encodes each job on its own so one bad job never fails the others.
    private func encodeEach(_ jobs: [(jobId: String, source: String, candidates: [String])]) -> [Result<PairInputBuilder.EncodedJob, RankingError>] {
        jobs.map { job in
            do { return .success(try model.inputBuilder.encode([(job.source, job.candidates)])[0]) } catch {
                return .failure(RankingError(jobId: job.jobId, message: "cannot tokenize: \(error)"))
            }
        }
    }

    // MARK: CandidateRanker

    public func rank(_ requests: [RankRequest]) async -> [Result<RankOutcome, RankingError>] {
        await offQueue {
            let (results, report) = self.rankNow(requests)
            self.lastReport.withLock { $0 = report }
            return results
        }
    }

    public func run(_ tasks: [RankTask]) async -> [Result<TaskOutcome, RankingError>] {
        await offQueue {
            let (results, report) = self.runNow(tasks)
            self.lastReport.withLock { $0 = report }
            return results
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

    /// A task's plan: how its answer is made from the first schedule's logits and the finished tournaments.
    private typealias Finish = (_ values: [Float], _ tournaments: [BubbleTournament]) -> TaskOutcome

    /// `run` without leaving the calling thread, with the scheduling report. Every pair that does not
    /// depend on another pair's result — full matrices, compare pairs, reward pairs, and the first round of
    /// every bubble tournament — goes into ONE packed schedule; later bubble rounds (each needs the previous
    /// winner) advance in lock step, every unfinished tournament of the call together. The packed encoder is
    /// batch-composition invariant, so a task's answer does not depend on its batch mates.
    public func runNow(_ tasks: [RankTask]) -> (results: [Result<TaskOutcome, RankingError>], report: PairScheduleReport) {
        var results = [Result<TaskOutcome, RankingError>?](repeating: nil, count: tasks.count)
        var pairs: [PairInput] = []
        var finishes: [(task: Int, finish: Finish)] = []
        var tournaments: [BubbleTournament] = []
        var tournamentJobs: [PairInputBuilder.EncodedJob] = []
        let builder = model.inputBuilder

        /// Appends every ordered pair of a job; the finisher gets the filled matrix.
        func matrix(_ job: PairInputBuilder.EncodedJob, task: Int, _ make: @escaping (ComparisonMatrix) -> TaskOutcome) {
            let n = job.candidates.count
            let start = pairs.count
            let order = ComparisonMatrix.orderedPairs(count: n)
            for (l, r) in order { pairs.append(builder.pair(job, left: l, right: r)) }
            finishes.append((task, { values, _ in
                var m = ComparisonMatrix(count: n)
                for (k, (l, r)) in order.enumerated() { m[l, r] = values[start + k] }
                return make(m)
            }))
        }

        /// Starts a tournament; the finisher gets it once finished.
        func tournament(_ job: PairInputBuilder.EncodedJob, _ start: BubbleTournament, task: Int,
                        _ make: @escaping (BubbleTournament) -> TaskOutcome) {
            let slot = tournaments.count
            tournaments.append(start)
            tournamentJobs.append(job)
            finishes.append((task, { _, finished in make(finished[slot]) }))
        }

        /// Tokenizes one job; a failure fails task `i` alone.
        func encode(_ i: Int, _ jobId: String, _ source: String, _ candidates: [String]) -> PairInputBuilder.EncodedJob? {
            switch encodeEach([(jobId, source, candidates)])[0] {
            case .success(let job): return job
            case .failure(let error): results[i] = .failure(error); return nil
            }
        }

        for (i, task) in tasks.enumerated() {
            switch task {
            case .rank(let request):
                guard !request.candidates.isEmpty else {
                    results[i] = .failure(RankingError(jobId: request.jobId, message: "no candidates to rank")); continue
                }
                guard let job = encode(i, request.jobId, request.instruction + request.input, request.candidates) else { continue }
                let n = request.candidates.count
                if n == 1 {
                    results[i] = .success(.rank(RankOutcome(scores: [0], ranks: [1], comparisons: nil, forwardPasses: 0)))
                } else if request.mode == .bubble {
                    tournament(job, BubbleTournament(count: n, goal: .best, seed: request.seed), task: i) { t in
                        let placement = t.placement!
                        return .rank(RankOutcome(scores: placement.scores, ranks: placement.ranks, comparisons: nil, forwardPasses: 2 * (n - 1)))
                    }
                } else {
                    matrix(job, task: i) { .rank(.aggregating($0, mode: request.mode, forwardPasses: n * (n - 1))) }
                }

            case .compare(let request):
                guard !request.items.isEmpty else {
                    results[i] = .failure(RankingError(jobId: request.jobId, message: "no pairs to judge")); continue
                }
                var jobs: [PairInputBuilder.EncodedJob] = []
                for item in request.items {
                    guard let job = encode(i, request.jobId, item.source, [item.a, item.b]) else { break }
                    jobs.append(job)
                }
                guard jobs.count == request.items.count else { continue }
                let start = pairs.count
                let orientations = request.mode.orientations
                for job in jobs { for (l, r) in orientations { pairs.append(builder.pair(job, left: l, right: r)) } }
                let mode = request.mode
                finishes.append((i, { values, _ in
                    let judgements = jobs.indices.map { k -> PairJudgement in
                        var ab: Float?, ba: Float?
                        for (o, (l, _)) in orientations.enumerated() {
                            let v = values[start + k * orientations.count + o]
                            if l == 0 { ab = v } else { ba = v }
                        }
                        return .pairwise(ab: ab, ba: ba, mode: mode)
                    }
                    return .compare(CompareOutcome(judgements: judgements, forwardPasses: jobs.count * orientations.count))
                }))

            case .select(let select):
                let request = select.request
                guard !request.candidates.isEmpty else {
                    results[i] = .failure(RankingError(jobId: request.jobId, message: "no candidates to select from")); continue
                }
                guard let job = encode(i, request.jobId, request.instruction + request.input, request.candidates) else { continue }
                let n = request.candidates.count
                if let order = select.order, order.sorted() != Array(0..<n) {
                    results[i] = .failure(RankingError(jobId: request.jobId, message: "bubble order \(order) does not fit \(n) candidates"))
                } else if select.method == .bubble || n == 1 {
                    let start = select.order.map { BubbleTournament(order: $0, goal: select.goal) }
                        ?? BubbleTournament(count: n, goal: select.goal, seed: request.seed)
                    tournament(job, start, task: i) { t in
                        .select(SelectionOutcome(index: t.winner!, eliminationOrder: t.winnerThenEliminated, scores: nil,
                                                 forwardPasses: 2 * (n - 1), tournament: t))
                    }
                } else {
                    matrix(job, task: i) { m in
                        let scores = RankAggregation.maxLogitsScores(m)
                        return .select(SelectionOutcome(index: SelectionOutcome.extreme(of: scores, goal: select.goal), eliminationOrder: nil,
                                                        scores: scores, forwardPasses: n * (n - 1)))
                    }
                }

            case .reward(let reward):
                let request = reward.request
                guard !request.candidates.isEmpty else {
                    results[i] = .failure(RankingError(jobId: request.jobId, message: "no candidates to reward")); continue
                }
                let n = request.candidates.count
                var texts = request.candidates
                let referenceIndex: Int?
                switch reward.reference {
                case .mode(let mode): referenceIndex = mode.referenceIndex(of: request.candidates)
                case .text(let text): referenceIndex = nil; texts.append(text)
                }
                guard let job = encode(i, request.jobId, request.instruction + request.input, texts) else { continue }
                let ref = referenceIndex ?? n
                // r_j = ℓ(j, ref) − ℓ(ref, j): the reference's −compare(ref, j) in its default (summing) mode.
                // 2N passes, the reference against itself included (identical inputs share one logit: r = 0).
                let start = pairs.count
                for j in 0..<n {
                    pairs.append(builder.pair(job, left: ref, right: j))
                    pairs.append(builder.pair(job, left: j, right: ref))
                }
                finishes.append((i, { values, _ in
                    let rewards = (0..<n).map { j in values[start + 2 * j + 1] - values[start + 2 * j] }
                    return .reward(RewardOutcome(rewards: rewards, referenceIndex: referenceIndex, forwardPasses: 2 * n))
                }))
            }
        }

        // The first bubble round joins the one schedule; the rest advance in lock step.
        let firstRound = roundPairs(tournaments, jobs: tournamentJobs)
        let split = pairs.count
        let (values, firstReport) = logits(pairs + firstRound.pairs)
        var report = firstReport
        record(&tournaments, slots: firstRound.slots, values: values[split...])
        report.add(runTournaments(&tournaments, jobs: tournamentJobs))
        let matrixValues = Array(values[..<split])
        for (task, finish) in finishes { results[task] = .success(finish(matrixValues, tournaments)) }
        return (results.map { $0! }, report)
    }

    /// Both orders of the next pair of every unfinished tournament.
    private func roundPairs(_ tournaments: [BubbleTournament], jobs: [PairInputBuilder.EncodedJob]) -> (pairs: [PairInput], slots: [Int]) {
        var pairs: [PairInput] = []
        var slots: [Int] = []
        for (slot, t) in tournaments.enumerated() {
            guard let (current, next) = t.nextPair else { continue }
            pairs.append(model.inputBuilder.pair(jobs[slot], left: current, right: next))
            pairs.append(model.inputBuilder.pair(jobs[slot], left: next, right: current))
            slots.append(slot)
        }
        return (pairs, slots)
    }

    private func record(_ tournaments: inout [BubbleTournament], slots: [Int], values: ArraySlice<Float>) {
        let base = values.startIndex
        for (k, slot) in slots.enumerated() { tournaments[slot].record(difference: values[base + 2 * k] - values[base + 2 * k + 1]) }
    }

    private func runTournaments(_ tournaments: inout [BubbleTournament], jobs: [PairInputBuilder.EncodedJob]) -> PairScheduleReport {
        var report = PairScheduleReport()
        while true {
            let round = roundPairs(tournaments, jobs: jobs)
            if round.slots.isEmpty { return report }
            let (values, roundReport) = logits(round.pairs)
            report.add(roundReport)
            record(&tournaments, slots: round.slots, values: values[...])
        }
    }

    // MARK: The reference's other entry points (spec §2.3–2.5), as tasks of the shared scheduler

    public struct Comparison: Sendable {
        public var jobId: String
        public var source: String
        public var a: String
        public var b: String
        public init(jobId: String = "", source: String, a: String, b: String) {
            self.jobId = jobId; self.source = source; self.a = a; self.b = b
        }
    }

    /// `compare(A, B)`: positive when A is better in every mode (see `CompareMode` for the documented
    /// intent we follow where the reference's signs differ).
    public func compare(_ items: [Comparison], mode: CompareMode = .both) -> [Result<Float, RankingError>] {
        let tasks = items.map { RankTask.compare(CompareRequest(jobId: $0.jobId, items: [.init(source: $0.source, a: $0.a, b: $0.b)], mode: mode)) }
        return answers(tasks) { if case .compare(let compared) = $0 { compared.judgements[0].logit } else { nil } }
    }

    /// `get_best_of_n` / `get_worst_of_n`: single-pass bubble selection in each job's seeded order,
    /// 2(N−1) forward passes per job; the finished tournaments hold the winner and the elimination order.
    public func select(_ requests: [RankRequest], goal: BubbleTournament.Goal) -> [Result<BubbleTournament, RankingError>] {
        answers(requests.map { .select(SelectRequest(request: $0, goal: goal, method: .bubble)) }) { Self.tournament(of: $0) }
    }

    /// `rank_with_ref`: each candidate's reward against a reference candidate chosen by `reference`,
    /// r_j = ℓ(j, ref) − ℓ(ref, j), the reference's values (its compare sums both orientations). 2N forward
    /// passes, the reference against itself included, as the reference computes it. Positive means
    /// candidate j beats the reference.
    public func rewards(_ requests: [RankRequest], reference: ReferenceMode) -> [Result<[Float], RankingError>] {
        answers(requests.map { .reward(RewardRequest(request: $0, reference: .mode(reference))) }) { Self.rewards(of: $0) }
    }

    /// Runs `tasks` in one schedule and takes each answer apart; an answer of another kind is a bug of the scheduler.
    private func answers<T>(_ tasks: [RankTask], _ extract: (TaskOutcome) -> T?) -> [Result<T, RankingError>] {
        runNow(tasks).results.map { result in
            result.map { outcome in
                guard let value = extract(outcome) else { preconditionFailure("task answered with another kind: \(outcome)") }
                return value
            }
        }
    }

    private static func tournament(of outcome: TaskOutcome) -> BubbleTournament? {
        if case .select(let selected) = outcome { selected.tournament } else { nil }
    }

    private static func rewards(of outcome: TaskOutcome) -> [Float]? {
        if case .reward(let rewarded) = outcome { rewarded.rewards } else { nil }
    }
}

// MARK: Given bubble orders and given reference texts

extension PairRMRanker {
    /// `select` with each job's bubble order given (the job's seed is ignored), e.g. the permutation the
    /// reference drew with `torch.randperm`, so its run can be replayed.
    public func select(_ requests: [RankRequest], goal: BubbleTournament.Goal, orders: [[Int]]) -> [Result<BubbleTournament, RankingError>] {
        precondition(orders.count == requests.count, "\(orders.count) bubble orders for \(requests.count) requests")
        return answers(zip(requests, orders).map { .select(SelectRequest(request: $0, goal: goal, method: .bubble, order: $1)) }) {
            Self.tournament(of: $0)
        }
    }

    /// `rank_with_ref(ref_candidates=…)`: rewards against a given reference text per request (it need not
    /// be one of the candidates), with the values and sign of `rewards(_:reference:)`.
    public func rewards(_ requests: [RankRequest], referenceTexts: [String]) -> [Result<[Float], RankingError>] {
        precondition(referenceTexts.count == requests.count, "\(referenceTexts.count) reference texts for \(requests.count) requests")
        return answers(zip(requests, referenceTexts).map { .reward(RewardRequest(request: $0, reference: .text($1))) }) { Self.rewards(of: $0) }
    }
}
