/// The records of a MixInstruct file that can be evaluated, with their oracle ranks. Like LLM-Blender's
/// notebook, records without ChatGPT comparisons are left out (the dataset's test split has 229 of them).
/// `cor_eval.py` correlates candidate *indexes* across examples, so every record must list the same models in
/// the same order (the reference asserts it); the first record that does not is reported.
public struct EvaluationSet: Sendable {
    public let records: [MixInstructRecord]
    public let oracleRanks: [[Int]]
    /// Records read but left out for having no `cmp_results`.
    public let withoutComparisons: Int

    public var models: [String] { records.first?.candidates.map(\.model) ?? [] }

    /// `limit` keeps the first `limit` evaluable records.
    public init(_ all: [MixInstructRecord], limit: Int? = nil) throws {
        var kept: [MixInstructRecord] = []
        var skipped = 0
        var seen = Set<String>()
        for record in all {
            guard seen.insert(record.id).inserted else {
                throw EvaluationError(recordId: record.id, message: "the id occurs twice; results are kept per id")
            }
            guard !record.comparisons.isEmpty else { skipped += 1; continue }
            if let limit, kept.count >= limit { continue }
            guard !record.candidates.isEmpty else {
                throw EvaluationError(recordId: record.id, message: "has no candidates")
            }
            if let first = kept.first, first.candidates.map(\.model) != record.candidates.map(\.model) {
                throw EvaluationError(recordId: record.id, message: "lists the candidates \(record.candidates.map(\.model)) but record \(first.id) lists \(first.candidates.map(\.model)); cor_eval.py compares candidates by index, so every record needs the same models in the same order")
            }
            kept.append(record)
        }
        records = kept
        oracleRanks = try kept.map(OracleRanking.ranks)
        withoutComparisons = skipped
    }

    /// Ranks by one auto metric of the candidates (the paper's BLEU/ROUGE/BERTScore rankers), higher is better.
    public func ranks(byScore metric: String) throws -> [[Int]] {
        try records.map { record in
            try RankCorrelation.competitionRanks(record.candidates.map { candidate in
                guard let value = candidate.scores[metric] else {
                    throw EvaluationError(recordId: record.id, message: "candidate \(candidate.model) has no score \"\(metric)\"")
                }
                return value
            })
        }
    }

    public func evaluate(ranker: String, ranks: [[Int]]) -> RankerEvaluation {
        RankerEvaluation.evaluate(ranker: ranker, ranks: ranks, oracle: oracleRanks,
                                  candidateScores: records.map { $0.candidates.map(\.scores) })
    }
}
