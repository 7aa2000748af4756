import Foundation

/// The rank-agreement measures of LLM-Blender's `gpt_eval/cor_eval.py` (`COR_MAPS`), for a ranker's ranks
/// (`hypothesis`) against reference ranks, both n examples × c candidates, 1 = best. Pearson and Spearman are
/// computed per candidate index across the examples and averaged over the c indexes; a constant column (or
/// fewer than two examples) makes its coefficient NaN and with it the mean, as NumPy and SciPy do.
public enum RankCorrelation {
    /// `cor_pearson`: mean over candidate indexes of `np.corrcoef` across examples.
    public static func pearson(_ hypothesis: [[Int]], _ reference: [[Int]]) -> Double {
        perColumnMean(hypothesis, reference) { x, y in correlation(x, y) }
    }

    /// `cor_spearman`: mean over candidate indexes of `scipy.stats.spearmanr` across examples (Pearson of the
    /// average ranks, ties sharing the mean of the places they cover).
    public static func spearman(_ hypothesis: [[Int]], _ reference: [[Int]]) -> Double {
        perColumnMean(hypothesis, reference) { x, y in correlation(averageRanks(x), averageRanks(y)) }
    }

    /// `cor_spearman_footrule`: mean over examples of Σ_i |hypothesis_i − reference_i| (lower is better).
    public static func spearmanFootrule(_ hypothesis: [[Int]], _ reference: [[Int]]) -> Double {
        mean(zip(hypothesis, reference).map { h, r in Double(zip(h, r).reduce(0) { $0 + abs($1.0 - $1.1) }) })
    }

    /// `cor_set_based`: per example, the mean over k = 1…c of the Jaccard similarity of the two top-k sets,
    /// averaged over examples. Candidates are ordered by rank with ties in index order (a stable sort; NumPy's
    /// default argsort is not stable for ties on every machine, so the reference's value can vary there).
    public static func setBased(_ hypothesis: [[Int]], _ reference: [[Int]]) -> Double {
        mean(zip(hypothesis, reference).map { h, r in
            let c = h.count
            guard c > 0 else { return .nan }
            let ho = stableOrder(h), ro = stableOrder(r)
            var sum = 0.0
            var hs = Set<Int>(), rs = Set<Int>()
            for size in 1...c {
                hs.insert(ho[size - 1])
                rs.insert(ro[size - 1])
                sum += Double(hs.intersection(rs).count) / Double(hs.union(rs).count)
            }
            return sum / Double(c)
        })
    }

    /// `get_ranks_from_scores`: rank_i = 1 + the number of strictly higher scores (ties share the best rank).
    public static func competitionRanks(_ scores: [Double]) -> [Int] {
        scores.map { s in 1 + scores.reduce(0) { $0 + ($1 > s ? 1 : 0) } }
    }

    /// SciPy's `rankdata(method="average")`: 1-based places, tied values sharing their mean place.
    static func averageRanks(_ values: [Double]) -> [Double] {
        let order = values.indices.sorted { values[$0] != values[$1] ? values[$0] < values[$1] : $0 < $1 }
        var ranks = [Double](repeating: 0, count: values.count)
        var start = 0
        while start < order.count {
            var end = start
            while end + 1 < order.count && values[order[end + 1]] == values[order[start]] { end += 1 }
            let place = Double(start + end) / 2 + 1
            for k in start...end { ranks[order[k]] = place }
            start = end + 1
        }
        return ranks
    }

    /// Pearson's r as `np.corrcoef` computes it: the sample covariance (n − 1) divided by both standard
    /// deviations, clipped to [−1, 1]. 0/0 (a constant input, or one example) gives NaN.
    static func correlation(_ x: [Double], _ y: [Double]) -> Double {
        let n = Double(x.count)
        let mx = x.reduce(0, +) / n, my = y.reduce(0, +) / n
        var sxy = 0.0, sxx = 0.0, syy = 0.0
        for (a, b) in zip(x, y) {
            sxy += (a - mx) * (b - my)
            sxx += (a - mx) * (a - mx)
            syy += (b - my) * (b - my)
        }
        let r = (sxy / (n - 1)) / (sxx / (n - 1)).squareRoot() / (syy / (n - 1)).squareRoot()
        if r > 1 { return 1 }
        if r < -1 { return -1 }
        return r
    }

    static func perColumnMean(_ hypothesis: [[Int]], _ reference: [[Int]], _ f: ([Double], [Double]) -> Double) -> Double {
        let c = hypothesis.first?.count ?? 0
        guard c > 0 else { return .nan }
        var sum = 0.0
        for i in 0..<c {
            sum += f(hypothesis.map { Double($0[i]) }, reference.map { Double($0[i]) })
        }
        return sum / Double(c)
    }

    static func mean(_ values: [Double]) -> Double {
        values.isEmpty ? .nan : values.reduce(0, +) / Double(values.count)
    }

    static func stableOrder(_ ranks: [Int]) -> [Int] {
        ranks.indices.sorted { ranks[$0] != ranks[$1] ? ranks[$0] < ranks[$1] : $0 < $1 }
    }
}
