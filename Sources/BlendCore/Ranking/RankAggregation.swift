/// Scores, ranks and top-k from a comparison matrix, as the reference's `gpt_eval/utils.py`
/// computes them (spec §2.2), with its one inconsistency (MaxWins) fixed.
public enum RankAggregation {
    /// MaxLogits: s_i = (1/N) Σ_j (ℓ(i,j) − ℓ(j,i)). The diagonal counts in the divisor, as in
    /// the reference, so scores equal `Blender.rank(return_scores=True)`. Higher is better.
    public static func maxLogitsScores(_ m: ComparisonMatrix) -> [Float] {
        let n = m.count
        guard n > 0 else { return [] }
        return (0..<n).map { i in
            var sum: Float = 0
            for j in 0..<n where j != i { sum += m[i, j] - m[j, i] }
            return sum / Float(n)
        }
    }

    /// MaxWins with consistent counts: wins as the left candidate (ℓ(i,j) > 0) plus wins as the
    /// right candidate (ℓ(j,i) < 0). The reference's `get_scores_from_cmps` adds a count to a
    /// mean (spec §7); its `get_ranks_from_cmps` uses these counts, which is the documented intent.
    public static func maxWinsScores(_ m: ComparisonMatrix) -> [Float] {
        let n = m.count
        return (0..<n).map { i in
            var wins = 0
            for j in 0..<n where j != i {
                if m[i, j] > 0 { wins += 1 }
                if m[j, i] < 0 { wins += 1 }
            }
            return Float(wins)
        }
    }

    /// 1-based competition ranks ("1,2,2,4"): rank_i = 1 + number of strictly higher scores,
    /// which is the reference's "first occurrence in the descending sort". A NaN score
    /// (a numerical failure upstream) ranks below every number so it never wins.
    public static func competitionRanks(_ scores: [Float]) -> [Int] {
        func key(_ s: Float) -> Float { s.isNaN ? -.infinity : s }
        return scores.indices.map { i in
            let si = key(scores[i])
            var better = 0
            for s in scores where key(s) > si { better += 1 }
            return 1 + better
        }
    }

    /// The indexes of the `k` best candidates, best first; tied ranks keep their original
    /// order (the reference's argsort is stable for the sizes it sees).
    public static func topK(ranks: [Int], k: Int) -> [Int] {
        let order = ranks.indices.sorted { a, b in ranks[a] != ranks[b] ? ranks[a] < ranks[b] : a < b }
        return Array(order.prefix(max(0, k)))
    }
}
