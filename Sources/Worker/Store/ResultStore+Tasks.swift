import BlendCore
import Foundation
import Postgres

extension ResultStore {
    /// The inserts of what the job kinds add to the rows of `store` (migration 0003), for every outcome of a
    /// batch at once: one `INSERT … SELECT … FROM unnest(…)` per table that has rows, each a part of the
    /// batch's statement (`BatchWrite`) that keeps only the rows of jobs it writes, so a kind's rows commit
    /// with the job row and its outbox event or not at all. (The kind itself is a column of the job row.)
    static func taskRows(_ outcomes: [JobOutcome]) throws -> [PostgresQuery] {
        var parts: [PostgresQuery] = []
        var judged: (ids: [String?], idx: [Int], mode: [String?], source: [String?], a: [String?], b: [String?],
                     conversation: [String?], logit: [String?], referenceLogit: [String?], probability: [String?], verdict: [String?])
            = ([], [], [], [], [], [], [], [], [], [], [])
        let encoder = Self.json
        for o in outcomes {
            guard let job = o.job, let compare = o.compare else { continue }
            let items = job.compareItems
            for pair in compare.pairs {
                judged.ids.append(o.jobId)
                judged.idx.append(pair.index)
                judged.mode.append(compare.mode.rawValue)
                judged.source.append(items[pair.index].source)
                judged.a.append(items[pair.index].a)
                judged.b.append(items[pair.index].b)
                judged.conversation.append(try job.conversations.map { String(decoding: try encoder.encode($0[pair.index]), as: UTF8.self) })
                judged.logit.append(pair.logit.postgresText)
                judged.referenceLogit.append(pair.referenceLogit.postgresText)
                judged.probability.append(pair.probability.postgresText)
                judged.verdict.append(pair.verdict.rawValue)
            }
        }
        if !judged.ids.isEmpty {
            parts.append("""
                INSERT INTO pair_judgements (job_id, idx, mode, source, a, b, conversation, logit, reference_logit, probability, verdict)
                SELECT p.job_id, p.idx, p.mode, p.source, p.a, p.b, p.conversation, p.logit, p.reference_logit, p.probability, p.verdict
                  FROM unnest(\(PostgresTextArray(judged.ids))::text[], \(judged.idx)::int[], \(PostgresTextArray(judged.mode))::text[],
                              \(PostgresTextArray(judged.source))::text[], \(PostgresTextArray(judged.a))::text[],
                              \(PostgresTextArray(judged.b))::text[], \(PostgresTextArray(judged.conversation))::jsonb[],
                              \(PostgresTextArray(judged.logit))::real[], \(PostgresTextArray(judged.referenceLogit))::real[],
                              \(PostgresTextArray(judged.probability))::float8[], \(PostgresTextArray(judged.verdict))::text[])
                       AS p(job_id, idx, mode, source, a, b, conversation, logit, reference_logit, probability, verdict)
                """ + BatchWrite.onlyNew("p"))
        }

        let selected = outcomes.compactMap { o in o.selection.map { (o.jobId, $0) } }
        if !selected.isEmpty {
            // Arrays per row travel as array literals in a text[] (unnest flattens a two-dimensional array).
            parts.append("""
                INSERT INTO selections (job_id, goal, method, idx, elimination_order, scores, forward_passes)
                SELECT s.job_id, s.goal, s.method, s.idx, s.elimination_order::int[], s.scores::float8[], s.forward_passes
                  FROM unnest(\(PostgresTextArray(selected.map(\.0)))::text[], \(PostgresTextArray(selected.map(\.1.goal.rawValue)))::text[],
                              \(PostgresTextArray(selected.map(\.1.method.rawValue)))::text[], \(selected.map(\.1.index))::int[],
                              \(PostgresTextArray(selected.map { $0.1.eliminationOrder?.postgresText }))::text[],
                              \(PostgresTextArray(selected.map { $0.1.scores?.float8Literal }))::text[],
                              \(selected.map(\.1.forwardPasses))::int[])
                       AS s(job_id, goal, method, idx, elimination_order, scores, forward_passes)
                """ + BatchWrite.onlyNew("s"))
        }

        let rewarded = outcomes.compactMap { o in o.reward.map { (o.jobId, $0) } }
        if !rewarded.isEmpty {
            parts.append("""
                INSERT INTO reward_references (job_id, mode, idx, text, forward_passes)
                SELECT r.job_id, r.mode, r.idx, r.text, r.forward_passes
                  FROM unnest(\(PostgresTextArray(rewarded.map(\.0)))::text[],
                              \(PostgresTextArray(rewarded.map { $0.1.reference.mode?.rawValue }))::text[],
                              \(PostgresTextArray(rewarded.map { $0.1.reference.index.map(String.init) }))::int[],
                              \(PostgresTextArray(rewarded.map(\.1.reference.text)))::text[],
                              \(rewarded.map(\.1.forwardPasses))::int[])
                       AS r(job_id, mode, idx, text, forward_passes)
                """ + BatchWrite.onlyNew("r"))
            let rows = rewarded.flatMap { id, r in r.candidates.map { (id, $0.index, $0.reward) } }
            parts.append("""
                INSERT INTO rewards (job_id, idx, reward)
                SELECT w.job_id, w.idx, w.reward
                  FROM unnest(\(PostgresTextArray(rows.map(\.0)))::text[], \(rows.map(\.1))::int[],
                              \(PostgresTextArray(rows.map { $0.2.postgresText }))::float8[]) AS w(job_id, idx, reward)
                """ + BatchWrite.onlyNew("w"))
        }
        return parts
    }

    /// Conversation turns as stored: compact, keys in a fixed order.
    private static var json: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }
}

extension Array where Element == Double {
    /// A float8[] literal that keeps every value exact (NaN and infinities spelled as PostgreSQL reads them).
    fileprivate var float8Literal: String { "{" + map { $0.postgresText ?? "NULL" }.joined(separator: ",") + "}" }
}
