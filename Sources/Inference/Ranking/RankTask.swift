import BlendCore

/// One job's question of any kind, as the worker hands it to a ranker: rank (blend), judge pairs,
/// pick the best or worst candidate, or reward each candidate against a reference. A ranker answers
/// the tasks of a whole micro-batch in one call, so a model shares its forward batches among them.
public enum RankTask: Sendable, Equatable {
    case rank(RankRequest)
    case compare(CompareRequest)
    case select(SelectRequest)
    case reward(RewardRequest)

    public var jobId: String {
        switch self {
        case .rank(let r): r.jobId
        case .compare(let c): c.jobId
        case .select(let s): s.request.jobId
        case .reward(let r): r.request.jobId
        }
    }

    /// The task a validated job asks for.
    public init(job: BlendJob) {
        switch job.task {
        case .blend:
            self = .rank(RankRequest(job: job))
        case .compare:
            self = .compare(CompareRequest(jobId: job.jobId, items: job.compareItems, mode: job.compare?.mode ?? .both))
        case .bestOfN, .worstOfN:
            self = .select(SelectRequest(request: RankRequest(job: job), goal: job.task == .bestOfN ? .best : .worst,
                                         method: job.select?.method ?? .bubble))
        case .reward:
            self = .reward(RewardRequest(request: RankRequest(job: job), reference: job.reward?.reference ?? .mode(.longest)))
        }
    }
}

/// Pairs to judge, each with its own source (a conversation pair's is its flattened dialogue).
public struct CompareRequest: Sendable, Equatable {
    public var jobId: String
    public var items: [BlendJob.CompareItem]
    public var mode: CompareMode
    public init(jobId: String, items: [BlendJob.CompareItem], mode: CompareMode = .both) {
        self.jobId = jobId; self.items = items; self.mode = mode
    }
}

/// `get_best_of_n` / `get_worst_of_n`; the request's seed orders the bubble tournament.
public struct SelectRequest: Sendable, Equatable {
    public var request: RankRequest
    public var goal: BubbleTournament.Goal
    public var method: SelectMethod
    /// A bubble order to replay instead of the seeded one (e.g. the permutation the reference drew with `torch.randperm`).
    public var order: [Int]?
    public init(request: RankRequest, goal: BubbleTournament.Goal, method: SelectMethod = .bubble, order: [Int]? = nil) {
        self.request = request; self.goal = goal; self.method = method; self.order = order
    }
}

/// `rank_with_ref` against a candidate chosen by a rule or against a given text.
public struct RewardRequest: Sendable, Equatable {
    public var request: RankRequest
    public var reference: BlendJob.RewardReference
    public init(request: RankRequest, reference: BlendJob.RewardReference = .mode(.longest)) {
        self.request = request; self.reference = reference
    }
}

/// A ranker's answer to one task, of the task's kind.
public enum TaskOutcome: Sendable, Equatable {
    case rank(RankOutcome)
    case compare(CompareOutcome)
    case select(SelectionOutcome)
    case reward(RewardOutcome)
}

public struct CompareOutcome: Sendable, Equatable {
    /// One per pair, in the request's order.
    public var judgements: [PairJudgement]
    public var forwardPasses: Int
    public init(judgements: [PairJudgement], forwardPasses: Int) { self.judgements = judgements; self.forwardPasses = forwardPasses }
}

public struct SelectionOutcome: Sendable, Equatable {
    public var index: Int
    /// Bubble: [winner] + losers in elimination order.
    public var eliminationOrder: [Int]?
    /// Full (and pointwise or weight-free) selections: the scores the choice was made on.
    public var scores: [Float]?
    public var forwardPasses: Int
    /// The finished tournament of a bubble selection by a pairwise model.
    public var tournament: BubbleTournament?
    public init(index: Int, eliminationOrder: [Int]?, scores: [Float]?, forwardPasses: Int, tournament: BubbleTournament? = nil) {
        self.index = index; self.eliminationOrder = eliminationOrder; self.scores = scores
        self.forwardPasses = forwardPasses; self.tournament = tournament
    }

    /// The first best (or worst) of `scores`, as Python's argmax/argmin break ties.
    public static func extreme(of scores: [Float], goal: BubbleTournament.Goal) -> Int {
        var chosen = 0
        for i in scores.indices where goal == .best ? scores[i] > scores[chosen] : scores[i] < scores[chosen] { chosen = i }
        return chosen
    }
}

public struct RewardOutcome: Sendable, Equatable {
    /// One per candidate; positive when the candidate beats the reference.
    public var rewards: [Float]
    /// The candidate used as reference; nil when the job gave its own text.
    public var referenceIndex: Int?
    public var forwardPasses: Int
    public init(rewards: [Float], referenceIndex: Int?, forwardPasses: Int) {
        self.rewards = rewards; self.referenceIndex = referenceIndex; self.forwardPasses = forwardPasses
    }
}

// MARK: As events and results carry them

extension CompareOutcome {
    public func result(for job: BlendJob) -> EventData.CompareResult {
        EventData.CompareResult(mode: job.compare?.mode ?? .both, pairs: judgements.enumerated().map { .init(index: $0, $1) },
                                forwardPasses: forwardPasses)
    }
}

extension SelectionOutcome {
    public func result(for job: BlendJob) -> EventData.Selection {
        EventData.Selection(goal: job.task == .worstOfN ? .worst : .best, method: job.select?.method ?? .bubble, index: index,
                            model: job.candidates[index].model, eliminationOrder: eliminationOrder,
                            scores: scores?.map(Double.init), forwardPasses: forwardPasses)
    }
}

extension RewardOutcome {
    public func result(for job: BlendJob) -> EventData.RewardResult {
        let reference: EventData.RewardResult.Reference = switch job.reward?.reference ?? .mode(.longest) {
        case .mode(let mode): .init(mode: mode, index: referenceIndex)
        case .text(let text): .init(text: text)
        }
        return EventData.RewardResult(
            reference: reference,
            candidates: rewards.enumerated().map { .init(index: $0, model: job.candidates[$0].model, reward: Double($1)) },
            forwardPasses: forwardPasses)
    }
}
