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

    /// `rank` without leaving the calling thread, with the scheduling report.
    public func rankNow(_ requests: [RankRequest]) -> (results: [Result<RankOutcome, RankingError>], report: PairScheduleReport) {
        var results = [Result<RankOutcome, RankingError>?](repeating: nil, count: requests.count)
        let encoded = encodeEach(requests.map { ($0.jobId, $0.instruction + $0.input, $0.candidates) })
        var full: [(index: Int, job: PairInputBuilder.EncodedJob)] = []
        var bubble: [(index: Int, job: PairInputBuilder.EncodedJob)] = []
        for (i, request) in requests.enumerated() {
            switch encoded[i] {
            case .failure(let error): results[i] = .failure(error)
            case .success(let job):
                if request.candidates.isEmpty {
                    results[i] = .failure(RankingError(jobId: request.jobId, message: "no candidates to rank"))
                } else if request.candidates.count == 1 {
                    results[i] = .success(RankOutcome(scores: [0], ranks: [1], comparisons: nil, forwardPasses: 0))
                } else if request.mode == .bubble {
                    bubble.append((i, job))
                } else {
                    full.append((i, job))
                }
            }
        }
        var report = PairScheduleReport()

        // Full matrices: every ordered pair of every job in one schedule.
        var pairs: [PairInput] = []
        var owners: [(job: Int, left: Int, right: Int)] = []
        for (slot, entry) in full.enumerated() {
            for (l, r) in ComparisonMatrix.orderedPairs(count: entry.job.candidates.count) {
                pairs.append(model.inputBuilder.pair(entry.job, left: l, right: r))
                owners.append((slot, l, r))
            }
        }
        let (values, fullReport) = logits(pairs)
        report.add(fullReport)
        var matrices = full.map { ComparisonMatrix(count: $0.job.candidates.count) }
        for (owner, value) in zip(owners, values) { matrices[owner.job][owner.left, owner.right] = value }
        for (slot, entry) in full.enumerated() {
            let n = entry.job.candidates.count
            results[entry.index] = .success(.aggregating(matrices[slot], mode: requests[entry.index].mode, forwardPasses: n * (n - 1)))
        }

        // Bubble tournaments advance in lock step: round k scores step k of every unfinished job together.
        var tournaments = bubble.map { BubbleTournament(count: $0.job.candidates.count, goal: .best, seed: requests[$0.index].seed) }
        report.add(runTournaments(&tournaments, jobs: bubble.map(\.job)))
        for (slot, entry) in bubble.enumerated() {
            let placement = tournaments[slot].placement!
            results[entry.index] = .success(RankOutcome(scores: placement.scores, ranks: placement.ranks, comparisons: nil,
                                                        forwardPasses: 2 * (entry.job.candidates.count - 1)))
        }
        return (results.map { $0! }, report)
    }

    private func runTournaments(_ tournaments: inout [BubbleTournament], jobs: [PairInputBuilder.EncodedJob]) -> PairScheduleReport {
        var report = PairScheduleReport()
        while true {
            var pairs: [PairInput] = []
            var slots: [Int] = []
            for (slot, t) in tournaments.enumerated() {
                guard let (current, next) = t.nextPair else { continue }
                pairs.append(model.inputBuilder.pair(jobs[slot], left: current, right: next))
                pairs.append(model.inputBuilder.pair(jobs[slot], left: next, right: current))
                slots.append(slot)
            }
            if slots.isEmpty { return report }
            let (values, roundReport) = logits(pairs)
            report.add(roundReport)
            for (k, slot) in slots.enumerated() { tournaments[slot].record(difference: values[2 * k] - values[2 * k + 1]) }
        }
    }

    // MARK: The reference's other entry points (spec §2.3–2.5)

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
        let encoded = encodeEach(items.map { ($0.jobId, $0.source, [$0.a, $0.b]) })
        var pairs: [PairInput] = []
        for case .success(let job) in encoded {
            for (l, r) in mode.orientations { pairs.append(model.inputBuilder.pair(job, left: l, right: r)) }
        }
        var values = logits(pairs).logits[...]
        return encoded.map { result in
            result.map { _ in
                var ab: Float?, ba: Float?
                for (l, _) in mode.orientations {
                    let v = values.removeFirst()
                    if l == 0 { ab = v } else { ba = v }
                }
                return mode.combine(ab: ab, ba: ba)
            }
        }
    }

    /// `get_best_of_n` / `get_worst_of_n`: single-pass bubble selection in each job's seeded order,
    /// 2(N−1) forward passes per job; the finished tournaments hold the winner and the elimination order.
    public func select(_ requests: [RankRequest], goal: BubbleTournament.Goal) -> [Result<BubbleTournament, RankingError>] {
        let encoded = encodeEach(requests.map { ($0.jobId, $0.instruction + $0.input, $0.candidates) })
        var slots: [Int] = []
        var jobs: [PairInputBuilder.EncodedJob] = []
        var tournaments: [BubbleTournament] = []
        var results = [Result<BubbleTournament, RankingError>?](repeating: nil, count: requests.count)
        for (i, result) in encoded.enumerated() {
            switch result {
            case .failure(let error): results[i] = .failure(error)
            case .success(let job):
                guard !job.candidates.isEmpty else {
                    results[i] = .failure(RankingError(jobId: requests[i].jobId, message: "no candidates to select from"))
                    continue
                }
                slots.append(i); jobs.append(job)
                tournaments.append(BubbleTournament(count: job.candidates.count, goal: goal, seed: requests[i].seed))
            }
        }
        _ = runTournaments(&tournaments, jobs: jobs)
        for (slot, i) in slots.enumerated() { results[i] = .success(tournaments[slot]) }
        return results.map { $0! }
    }

    /// `rank_with_ref`: each candidate's reward against a reference candidate chosen by `reference`,
    /// r_j = ℓ(j, ref) − ℓ(ref, j), the reference's values (its compare sums both orientations; ours
    /// averages them, hence the factor 2). 2N forward passes, the reference against itself included, as
    /// the reference computes it. Positive means candidate j beats the reference.
    public func rewards(_ requests: [RankRequest], reference: ReferenceMode) -> [Result<[Float], RankingError>] {
        var items: [Comparison] = []
        var counts: [Int] = []
        for request in requests {
            guard !request.candidates.isEmpty else { counts.append(0); continue }
            let ref = request.candidates[reference.referenceIndex(of: request.candidates)]
            for candidate in request.candidates {
                items.append(Comparison(jobId: request.jobId, source: request.instruction + request.input, a: ref, b: candidate))
            }
            counts.append(request.candidates.count)
        }
        var compared = compare(items, mode: .both)[...]
        return zip(requests, counts).map { request, n in
            guard n > 0 else { return .failure(RankingError(jobId: request.jobId, message: "no candidates to rank")) }
            let mine = compared.prefix(n)
            compared = compared.dropFirst(n)
            var versus: [Float] = []
            for result in mine {
                switch result {
                case .success(let v): versus.append(v)
                case .failure(let error): return .failure(error)
                }
            }
            return .success(ReferenceMode.rewards(referenceVersus: versus.map { 2 * $0 }))
        }
    }
}

// MARK: Given bubble orders and given reference texts

extension PairRMRanker {
    /// `select` with each job's bubble order given (the job's seed is ignored), e.g. the permutation the
    /// reference drew with `torch.randperm`, so its run can be replayed.
    public func select(_ requests: [RankRequest], goal: BubbleTournament.Goal, orders: [[Int]]) -> [Result<BubbleTournament, RankingError>] {
        precondition(orders.count == requests.count, "\(orders.count) bubble orders for \(requests.count) requests")
        let encoded = encodeEach(requests.map { ($0.jobId, $0.instruction + $0.input, $0.candidates) })
        var results = [Result<BubbleTournament, RankingError>?](repeating: nil, count: requests.count)
        var slots: [Int] = []
        var jobs: [PairInputBuilder.EncodedJob] = []
        var tournaments: [BubbleTournament] = []
        for (i, result) in encoded.enumerated() {
            switch result {
            case .failure(let error): results[i] = .failure(error)
            case .success(let job) where job.candidates.count != orders[i].count || job.candidates.isEmpty:
                results[i] = .failure(RankingError(jobId: requests[i].jobId,
                                                   message: "bubble order \(orders[i]) does not fit \(job.candidates.count) candidates"))
            case .success(let job):
                slots.append(i); jobs.append(job)
                tournaments.append(BubbleTournament(order: orders[i], goal: goal))
            }
        }
        _ = runTournaments(&tournaments, jobs: jobs)
        for (slot, i) in slots.enumerated() { results[i] = .success(tournaments[slot]) }
        return results.map { $0! }
    }

    /// `rank_with_ref(ref_candidates=…)`: rewards against a given reference text per request (it need not
    /// be one of the candidates), with the values and sign of `rewards(_:reference:)`.
    public func rewards(_ requests: [RankRequest], referenceTexts: [String]) -> [Result<[Float], RankingError>] {
        precondition(referenceTexts.count == requests.count, "\(referenceTexts.count) reference texts for \(requests.count) requests")
        var items: [Comparison] = []
        for (request, ref) in zip(requests, referenceTexts) {
            for candidate in request.candidates {
                items.append(Comparison(jobId: request.jobId, source: request.instruction + request.input, a: ref, b: candidate))
            }
        }
        var compared = compare(items, mode: .both)[...]
        return requests.map { request in
            guard !request.candidates.isEmpty else { return .failure(RankingError(jobId: request.jobId, message: "no candidates to rank")) }
            let mine = compared.prefix(request.candidates.count)
            compared = compared.dropFirst(request.candidates.count)
            var versus: [Float] = []
            for result in mine {
                switch result {
                case .success(let v): versus.append(2 * v)
                case .failure(let error): return .failure(error)
                }
            }
            return .success(ReferenceMode.rewards(referenceVersus: versus))
        }
    }
}
