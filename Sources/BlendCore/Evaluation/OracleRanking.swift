/// The ground-truth ranking of a record from ChatGPT's verdicts, as LLM-Blender's
/// `gpt_eval/utils.py:get_ranks_from_chatgpt_cmps` derives it: for a key "A,B", "A is better" adds +1 to
/// M[A][B] and −1 to M[B][A] ("B is better" the opposite), "Same good" adds +0.5 to both, "Same bad" −0.5
/// to both; then `get_ranks_from_cmps` with MaxLogits: s_i = Σ_j (M[i][j] − M[j][i]), competition ranks of s.
/// A model is found by its first candidate (Python's `list.index`); pairs without a verdict add nothing.
public enum OracleRanking {
    public static let verdicts = ["A is better", "B is better", "Same good", "Same bad"]

    public static func matrix(_ record: MixInstructRecord) throws -> [[Double]] {
        let models = record.candidates.map(\.model)
        let n = models.count
        var m = [[Double]](repeating: [Double](repeating: 0, count: n), count: n)
        // Sorted keys: the sums are exact (halves), so the order only fixes which error is reported first.
        for key in record.comparisons.keys.sorted() {
            let verdict = record.comparisons[key]!
            let names = key.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            guard names.count == 2 else {
                throw EvaluationError(recordId: record.id, message: "cmp_results key \"\(key)\" is not \"modelA,modelB\"")
            }
            guard let a = models.firstIndex(of: names[0]), let b = models.firstIndex(of: names[1]) else {
                let missing = models.contains(names[0]) ? names[1] : names[0]
                throw EvaluationError(recordId: record.id, message: "cmp_results key \"\(key)\" names \(missing), which is not among the candidates")
            }
            switch verdict {
            case "A is better": m[a][b] += 1; m[b][a] -= 1
            case "B is better": m[a][b] -= 1; m[b][a] += 1
            case "Same good": m[a][b] += 0.5; m[b][a] += 0.5
            case "Same bad": m[a][b] -= 0.5; m[b][a] -= 0.5
            default:
                throw EvaluationError(recordId: record.id, message: "cmp_results[\"\(key)\"] is \"\(verdict)\", not one of \(verdicts.map { "\"\($0)\"" }.joined(separator: ", "))")
            }
        }
        return m
    }

    /// 1-based ranks, 1 best, ties sharing the best rank.
    public static func ranks(_ record: MixInstructRecord) throws -> [Int] {
        ranks(matrix: try matrix(record))
    }

    public static func ranks(matrix m: [[Double]]) -> [Int] {
        let scores = m.indices.map { i in m.indices.reduce(0.0) { $0 + m[i][$1] - m[$1][i] } }
        return RankCorrelation.competitionRanks(scores)
    }
}
