/// How well one ranker's choices agree with ChatGPT's on a set of MixInstruct records: the four measures of
/// `cor_eval.py`, and for the candidate it selects (its best rank, the lowest index among ties): the mean
/// oracle rank (GPT-Rank, lower is better), how often that candidate is the oracle's best (top-1) or among its
/// best three (top-3), and the mean of each auto metric (`scores`) of the selected candidates.
public struct RankerEvaluation: Sendable, Equatable {
    public var ranker: String
    public var examples: Int
    public var pearson: Double
    public var spearman: Double
    public var spearmanFootrule: Double
    public var setBased: Double
    public var gptRank: Double
    public var top1: Double
    public var top3: Double
    /// Metric name → mean over examples, for the metrics every selected candidate carries.
    public var scores: [String: Double]

    /// `ranks` and `oracle` are n × c; `candidateScores[e][i]` holds candidate i's auto metrics in example e.
    public static func evaluate(ranker: String, ranks: [[Int]], oracle: [[Int]], candidateScores: [[[String: Double]]]) -> RankerEvaluation {
        let selected = ranks.map { RankAggregation.topK(ranks: $0, k: 1).first ?? 0 }
        let chosen = zip(selected, oracle).map { s, o in o[s] }
        let picks = zip(selected, candidateScores).map { s, c in c[s] }
        var common = Set(picks.first?.keys.map { $0 } ?? [])
        for p in picks { common.formIntersection(p.keys) }
        var means: [String: Double] = [:]
        for metric in common { means[metric] = RankCorrelation.mean(picks.map { $0[metric]! }) }
        return RankerEvaluation(
            ranker: ranker, examples: ranks.count,
            pearson: RankCorrelation.pearson(ranks, oracle), spearman: RankCorrelation.spearman(ranks, oracle),
            spearmanFootrule: RankCorrelation.spearmanFootrule(ranks, oracle), setBased: RankCorrelation.setBased(ranks, oracle),
            gptRank: RankCorrelation.mean(chosen.map(Double.init)),
            top1: RankCorrelation.mean(chosen.map { $0 == 1 ? 1 : 0 }),
            top3: RankCorrelation.mean(chosen.map { $0 <= 3 ? 1 : 0 }),
            scores: means)
    }
}
