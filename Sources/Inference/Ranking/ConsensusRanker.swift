import BlendCore

/// The weight-free ranker used when no PairRM checkpoint is configured: minimum Bayes risk
/// over candidate agreement. A candidate's utility is its mean chrF against every other
/// candidate (the answer most others agree with wins), and ℓ(i, j) = u_i − u_j, so every
/// rank mode aggregates it like PairRM's logits. It knows nothing of the instruction: it
/// serves to run the system end to end and as a baseline, not as a judge of quality.
public struct ConsensusRanker: CandidateRanker {
    public let label = "consensus-chrf"
    public let similarity: CharacterNGramSimilarity

    public init(similarity: CharacterNGramSimilarity = CharacterNGramSimilarity()) {
        self.similarity = similarity
    }

    public func rank(_ requests: [RankRequest]) async -> [Result<RankOutcome, RankingError>] {
        requests.map { request in
            guard request.candidates.count >= 1 else {
                return .failure(RankingError(jobId: request.jobId, message: "no candidates to rank"))
            }
            return .success(rank(request))
        }
    }

    /// Every kind from the same weight-free matrix ℓ(i, j) = u_i − u_j over the texts a task puts side by side:
    /// - compare: the pair alone (u_A = chrF(A | B), u_B = chrF(B | A); chrF with β = 2 is not symmetric),
    ///   judged as PairRM's logits in the job's mode;
    /// - best_of_n / worst_of_n: the candidates' matrix, through the seeded bubble tournament or the full
    ///   MaxLogits scores, as PairRM;
    /// - reward: the matrix of the candidates (and the given reference text, if any), r_j = ℓ(j, ref) − ℓ(ref, j).
    public func run(_ tasks: [RankTask]) async -> [Result<TaskOutcome, RankingError>] {
        tasks.map { task in
            switch task {
            case .rank(let request):
                guard !request.candidates.isEmpty else { return .failure(RankingError(jobId: request.jobId, message: "no candidates to rank")) }
                return .success(.rank(rank(request)))
            case .compare(let request):
                guard !request.items.isEmpty else { return .failure(RankingError(jobId: request.jobId, message: "no pairs to judge")) }
                let judgements = request.items.map { item in
                    let m = matrix([item.a, item.b])
                    return PairJudgement.pairwise(ab: m[0, 1], ba: m[1, 0], mode: request.mode)
                }
                return .success(.compare(CompareOutcome(judgements: judgements, forwardPasses: 0)))
            case .select(let select):
                let request = select.request
                guard !request.candidates.isEmpty else { return .failure(RankingError(jobId: request.jobId, message: "no candidates to select from")) }
                let m = matrix(request.candidates)
                if select.method == .full {
                    let scores = RankAggregation.maxLogitsScores(m)
                    return .success(.select(SelectionOutcome(index: SelectionOutcome.extreme(of: scores, goal: select.goal),
                                                             eliminationOrder: nil, scores: scores, forwardPasses: 0)))
                }
                var t = BubbleTournament(count: m.count, goal: select.goal, seed: request.seed)
                while let (cur, nxt) = t.nextPair { t.record(difference: m[cur, nxt] - m[nxt, cur]) }
                return .success(.select(SelectionOutcome(index: t.winner!, eliminationOrder: t.winnerThenEliminated, scores: nil,
                                                         forwardPasses: 0, tournament: t)))
            case .reward(let reward):
                let request = reward.request
                guard !request.candidates.isEmpty else { return .failure(RankingError(jobId: request.jobId, message: "no candidates to reward")) }
                var texts = request.candidates
                let referenceIndex: Int?
                switch reward.reference {
                case .mode(let mode): referenceIndex = mode.referenceIndex(of: request.candidates)
                case .text(let text): referenceIndex = nil; texts.append(text)
                }
                let m = matrix(texts)
                let ref = referenceIndex ?? request.candidates.count
                let rewards = request.candidates.indices.map { j in j == ref ? 0 : m[j, ref] - m[ref, j] }
                return .success(.reward(RewardOutcome(rewards: rewards, referenceIndex: referenceIndex, forwardPasses: 0)))
            }
        }
    }

    /// ℓ(i, j) = u_i − u_j, u = mean chrF against every other text.
    func matrix(_ texts: [String]) -> ComparisonMatrix {
        let profiles = texts.map(similarity.profile)
        let n = profiles.count
        // chrF(i | k) of every ordered pair, both directions of a pair from one merge of its profiles.
        var chrF = [Double](repeating: 0, count: n * n)
        for i in 0..<n {
            for k in (i + 1)..<n {
                let (forward, backward) = similarity.chrFBothWays(profiles[i], profiles[k])
                chrF[i * n + k] = forward
                chrF[k * n + i] = backward
            }
        }
        var utility = [Float](repeating: 0, count: n)
        if n > 1 {
            for i in 0..<n {
                var sum: Double = 0
                for k in 0..<n where k != i { sum += chrF[i * n + k] }
                utility[i] = Float(sum / Double(n - 1))
            }
        }
        var matrix = ComparisonMatrix(count: n)
        for i in 0..<n { for j in 0..<n where i != j { matrix[i, j] = utility[i] - utility[j] } }
        return matrix
    }

    func rank(_ request: RankRequest) -> RankOutcome {
        let matrix = matrix(request.candidates)
        let n = matrix.count
        switch request.mode {
        case .maxLogits, .maxWins:
            return .aggregating(matrix, mode: request.mode, forwardPasses: 0)
        case .bubble:
            var tournament = BubbleTournament(count: n, seed: request.seed)
            while let (cur, nxt) = tournament.nextPair { tournament.record(difference: matrix[cur, nxt] - matrix[nxt, cur]) }
            let placement = tournament.placement!
            return RankOutcome(scores: placement.scores, ranks: placement.ranks, comparisons: nil, forwardPasses: 0)
        }
    }
}
