import BlendCore

/// One job's ranking question, as the worker hands it to a ranker.
public struct RankRequest: Sendable, Equatable {
    public var jobId: String
    public var instruction: String
    public var input: String
    public var candidates: [String]
    public var mode: RankMode
    /// Orders the bubble tournament; the worker passes `BlendJob.effectiveSeed`.
    public var seed: UInt64

    public init(jobId: String, instruction: String, input: String = "", candidates: [String],
                mode: RankMode = .maxLogits, seed: UInt64 = 0) {
        self.jobId = jobId
        self.instruction = instruction
        self.input = input
        self.candidates = candidates
        self.mode = mode
        self.seed = seed
    }

    public init(job: BlendJob) {
        self.init(jobId: job.jobId, instruction: job.instruction, input: job.input,
                  candidates: job.candidates.map(\.text), mode: job.rank.mode, seed: job.effectiveSeed)
    }
}

/// A ranker's answer for one job: scores (higher is better), 1-based competition ranks,
/// and the pairwise matrix when the mode computed one.
public struct RankOutcome: Sendable, Equatable {
    public var scores: [Float]
    public var ranks: [Int]
    /// ℓ(i, j) for every ordered pair computed; nil for modes that compute no full matrix.
    public var comparisons: ComparisonMatrix?
    /// Model forward passes spent on this job (0 for the weight-free ranker).
    public var forwardPasses: Int

    public init(scores: [Float], ranks: [Int], comparisons: ComparisonMatrix?, forwardPasses: Int) {
        self.scores = scores
        self.ranks = ranks
        self.comparisons = comparisons
        self.forwardPasses = forwardPasses
    }

    /// Scores and ranks from a full matrix, by the job's aggregation mode.
    public static func aggregating(_ matrix: ComparisonMatrix, mode: RankMode, forwardPasses: Int) -> RankOutcome {
        let scores = mode == .maxWins ? RankAggregation.maxWinsScores(matrix) : RankAggregation.maxLogitsScores(matrix)
        return RankOutcome(scores: scores, ranks: RankAggregation.competitionRanks(scores), comparisons: matrix,
                           forwardPasses: forwardPasses)
    }
}

/// Why one job could not be ranked; other jobs of the batch are not affected.
public struct RankingError: Error, Sendable, Equatable, CustomStringConvertible {
    public var jobId: String
    public var message: String

    public init(jobId: String, message: String) {
        self.jobId = jobId
        self.message = message
    }

    public var description: String { "ranking job \(jobId) failed: \(message)" }
}

/// Ranks the candidates of many jobs at once, so a model can share forward batches between them.
public protocol CandidateRanker: Sendable {
    /// Names the ranker and its checkpoint in results and events, e.g. `pairrm@<sha>` or `consensus-chrf`.
    var label: String { get }
    /// One result per request, in order.
    func rank(_ requests: [RankRequest]) async -> [Result<RankOutcome, RankingError>]
    /// Every task of a micro-batch, of every kind, in one call (one result per task, in order), so
    /// a model can put the pairs of all of them in the same forward batches.
    func run(_ tasks: [RankTask]) async -> [Result<TaskOutcome, RankingError>]
    /// For model rankers: the share of positions padding would have cost in the last call's forward
    /// batches (blendd packs sequences, so it computes none); nil for rankers without a model.
    var lastPaddingAvoided: Double? { get }
}

extension CandidateRanker {
    public var lastPaddingAvoided: Double? { nil }
}
