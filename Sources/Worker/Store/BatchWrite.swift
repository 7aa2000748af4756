import BlendCore
import Foundation
import Postgres

extension ResultStore {
    /// A whole batch as one statement: the job rows, which carry the candidates, comparison matrix and
    /// fusion, are inserted in a data-modifying `WITH` (`ON CONFLICT (job_id) DO NOTHING RETURNING job_id`),
    /// and every dependant table's insert (the outbox, the job kinds' tables) keeps only the rows of the
    /// jobs that returned, so a job stored before is skipped with everything that hangs off it. One
    /// statement is one round trip and its own transaction; the foreign keys are checked at its end,
    /// when the new job rows exist.
    ///
    /// Each table's rows travel as parallel arrays (one bound parameter per column) that `unnest`
    /// turns back into rows. A table no outcome has rows for is left out of the statement.
    struct BatchWrite {
        /// Selects the ids of the jobs it wrote (`job_id`).
        let query: PostgresQuery

        /// Encodes everything (JSON included) before anything is sent, so an outcome that cannot
        /// be encoded fails the batch before the database sees it.
        init(_ outcomes: [JobOutcome], workerId: String, eventsTopic: String, dlqTopic: String) throws {
            let jobs = try Self.jobs(outcomes, workerId: workerId)
            let outbox = try Self.outbox(outcomes, eventsTopic: eventsTopic, dlqTopic: dlqTopic)
            var parts = [jobs]
            if let outbox { parts.append(outbox) }
            parts += try ResultStore.taskRows(outcomes)
            var query: PostgresQuery = "WITH new_jobs AS (\(parts[0]))"
            for (i, part) in parts.enumerated().dropFirst() {
                query += PostgresQuery(unsafeSQL: ",\nwrite_\(i) AS (") + part + ")"
            }
            query += "\nSELECT job_id FROM new_jobs"
            self.query = query
        }

        /// Keeps the rows of `alias` whose job was written by this statement.
        static func onlyNew(_ alias: String) -> PostgresQuery {
            PostgresQuery(unsafeSQL: " WHERE \(alias).job_id IN (SELECT job_id FROM new_jobs)")
        }

        private static func a(_ column: [String?]) -> PostgresTextArray { PostgresTextArray(column) }

        /// The job rows in batch order, their kind included (the column defaults to blend; the other
        /// kinds have no rank mode), each with its candidates, comparison matrix and fusion (migration 0005).
        ///
        /// The candidates of all jobs travel as flat arrays, one element per candidate, and each job row
        /// takes its slice `[cand_first:cand_last]` of them (a slice starts at 1, as the columns require; NULL bounds,
        /// a job without candidates, give NULL). Matrices and source lists differ in length per job: each
        /// travels as the text of its own array.
        private static func jobs(_ outcomes: [JobOutcome], workerId: String) throws -> PostgresQuery {
            var jobId: [String?] = [], status: [String?] = [], error: [String?] = [], violations: [String?] = []
            var instruction: [String?] = [], input: [String?] = [], rankMode: [String?] = [], fuseOptions: [String?] = []
            var metadata: [String?] = [], topic: [String?] = [], partition: [String?] = [], offset: [String?] = []
            var ranker: [String?] = [], fuser: [String?] = [], timings: [String?] = [], receivedAt: [String?] = [], task: [String?] = []
            var first: [String?] = [], last: [String?] = [], ranked: [String?] = []
            var model: [String?] = [], text: [String?] = [], rank: [String?] = [], score: [String?] = []
            var matrixSize: [String?] = [], logits: [String?] = []
            var fusionText: [String?] = [], fusionFuser: [String?] = [], topK: [String?] = [], sources: [String?] = [], tokens: [String?] = []
            for o in outcomes {
                let job = o.job, c = o.message.coordinates
                jobId.append(o.jobId)
                status.append(o.status!.rawValue)
                error.append(o.error ?? o.rejection.map(\.description))
                violations.append(try o.rejection.map { try PostgresJSON(encoding: $0.violations).text })
                instruction.append(job?.instruction)
                input.append(job?.input)
                rankMode.append(job.flatMap { $0.task == .blend ? $0.rank.mode.rawValue : nil })
                fuseOptions.append(try job?.fuse.map { try PostgresJSON(encoding: $0).text })
                // Sent as text and cast to json, which keeps the text exactly as the job wrote it.
                metadata.append(job?.metadata.map { $0.serialized() })
                topic.append(c.topic)
                partition.append(String(c.partition))
                offset.append(String(c.offset))
                // A rejected job was never ranked or fused: no model labels.
                ranker.append(o.status == .rejected ? nil : o.models["ranker"])
                fuser.append(o.status == .rejected ? nil : o.models["fuser"])
                timings.append(o.timingsMs.isEmpty ? nil : try PostgresJSON(encoding: o.timingsMs).text)
                receivedAt.append(o.message.timestamp?.postgresText)
                task.append((job?.task ?? .blend).rawValue)

                let candidates = job?.candidates ?? []
                first.append(candidates.isEmpty ? nil : String(model.count + 1))
                last.append(candidates.isEmpty ? nil : String(model.count + candidates.count))
                ranked.append(o.rank == nil ? "false" : "true")
                for (i, candidate) in candidates.enumerated() {
                    model.append(candidate.model)
                    text.append(candidate.text)
                    rank.append(o.rank.map { String($0.ranks[i]) })
                    score.append(o.rank.map { Double($0.scores[i]).postgresText! })
                }
                // A matrix of two or more candidates (a single candidate has no pair).
                if let matrix = o.rank?.comparisons, matrix.count >= 2 {
                    matrixSize.append(String(matrix.count))
                    logits.append(Self.realArrayLiteral(matrix))
                } else {
                    matrixSize.append(nil)
                    logits.append(nil)
                }
                fusionText.append(o.fusion?.text)
                fusionFuser.append(o.fusion?.fuser)
                topK.append(o.fusion.map { String($0.topK) })
                sources.append(o.fusion?.sourceIndexes.postgresText)
                tokens.append(o.fusion.map { String($0.generatedTokens) })
            }
            return """
                INSERT INTO jobs (job_id, status, error, violations, instruction, input, rank_mode, fuse_options, metadata,
                                  kafka_topic, kafka_partition, kafka_offset, worker_id, ranker, fuser, timings_ms, received_at, task,
                                  candidate_models, candidate_texts, candidate_ranks, candidate_scores, comparison_size, comparison_logits,
                                  fusion_text, fusion_fuser, fusion_top_k, fusion_source_indexes, fusion_generated_tokens)
                SELECT j.job_id, j.status, j.error, j.violations::jsonb, j.instruction, j.input, j.rank_mode, j.fuse_options::jsonb,
                       j.metadata::json, j.kafka_topic, j.kafka_partition, j.kafka_offset, \(workerId), j.ranker, j.fuser,
                       j.timings_ms::jsonb, j.received_at, j.task,
                       (\(a(model))::text[])[j.cand_first:j.cand_last], (\(a(text))::text[])[j.cand_first:j.cand_last],
                       CASE WHEN j.ranked THEN (\(a(rank))::int[])[j.cand_first:j.cand_last] END,
                       CASE WHEN j.ranked THEN (\(a(score))::float8[])[j.cand_first:j.cand_last] END,
                       j.comparison_size, j.comparison_logits::real[],
                       j.fusion_text, j.fusion_fuser, j.fusion_top_k, j.fusion_source_indexes::int[], j.fusion_generated_tokens
                  FROM unnest(\(a(jobId))::text[], \(a(status))::text[], \(a(error))::text[], \(a(violations))::text[],
                              \(a(instruction))::text[], \(a(input))::text[], \(a(rankMode))::text[], \(a(fuseOptions))::text[],
                              \(a(metadata))::text[], \(a(topic))::text[], \(a(partition))::int[], \(a(offset))::bigint[],
                              \(a(ranker))::text[], \(a(fuser))::text[], \(a(timings))::text[], \(a(receivedAt))::timestamptz[],
                              \(a(task))::text[], \(a(first))::int[], \(a(last))::int[], \(a(ranked))::bool[],
                              \(a(matrixSize))::int[], \(a(logits))::text[], \(a(fusionText))::text[], \(a(fusionFuser))::text[],
                              \(a(topK))::int[], \(a(sources))::text[], \(a(tokens))::int[])
                       WITH ORDINALITY AS j(job_id, status, error, violations, instruction, input, rank_mode, fuse_options, metadata,
                                            kafka_topic, kafka_partition, kafka_offset, ranker, fuser, timings_ms, received_at, task,
                                            cand_first, cand_last, ranked, comparison_size, comparison_logits,
                                            fusion_text, fusion_fuser, fusion_top_k, fusion_source_indexes, fusion_generated_tokens, n)
                 ORDER BY j.n
                ON CONFLICT (job_id) DO NOTHING
                RETURNING job_id
                """
        }

        /// Every value as the shortest decimal that reads back as the same float (PostgreSQL's
        /// float4 input rounds it to the float it came from), NaN and infinities spelled as it reads them.
        static func realArrayLiteral(_ matrix: ComparisonMatrix) -> String {
            var text = "{"
            for (k, pair) in ComparisonMatrix.orderedPairs(count: matrix.count).enumerated() {
                if k > 0 { text += "," }
                text += Double(matrix[pair.left, pair.right]).postgresText!
            }
            return text + "}"
        }

        /// Completion events and dead-letter copies in batch order (a job's event before its dead
        /// letter), so the relay publishes them in the order they were decided.
        ///
        /// A key or payload that is UTF-8 text without NUL (every event, and most dead letters) travels
        /// as text and is turned back into its bytes by the server, half the size of bytea's hex form;
        /// only bytes that are not (a dead letter's original record may be anything) travel as hex.
        private static func outbox(_ outcomes: [JobOutcome], eventsTopic: String, dlqTopic: String) throws -> PostgresQuery? {
            var eventId: [String?] = [], jobId: [String?] = [], topic: [String?] = [], headers: [String?] = []
            var key = BytesColumn(), payload = BytesColumn()
            let eventHeaders = #"{"content-type":"application/cloudevents+json"}"#
            for o in outcomes {
                if let event = o.event {
                    eventId.append(event.id)
                    jobId.append(o.jobId)
                    topic.append(eventsTopic)
                    key.append(Array(o.jobId.utf8))
                    payload.append(try event.jsonBytes())
                    headers.append(eventHeaders)
                }
                if let rejection = o.rejection {
                    // The dead-letter copy is the original record (key and value, bytes as they came,
                    // absent or null included) with the reasons in headers, kept short.
                    let codes = Array(Set(rejection.violations.map(\.code.rawValue))).sorted().joined(separator: ",")
                    let c = o.message.coordinates
                    let reason = rejection.description
                    let fields: [String: String] = [
                        "blendd-rejected-codes": codes,
                        "blendd-rejected-reason": reason.count > ResultStore.maxReasonCharacters
                            ? String(reason.prefix(ResultStore.maxReasonCharacters)) + "…" : reason,
                        "blendd-source-topic": c.topic,
                        "blendd-source-partition": String(c.partition),
                        "blendd-source-offset": String(c.offset),
                    ]
                    eventId.append(o.jobId + "/dlq")
                    jobId.append(o.jobId)
                    topic.append(dlqTopic)
                    key.append(o.message.key)
                    payload.append(o.message.value)
                    headers.append(try PostgresJSON(encoding: fields).text)
                }
            }
            guard !eventId.isEmpty else { return nil }
            // ORDER BY the ordinality: ids (bigserial) are drawn in that order, and the relay publishes by id.
            return """
                INSERT INTO outbox (event_id, job_id, topic, key, payload, headers)
                SELECT e.event_id, e.job_id, e.topic, coalesce(convert_to(e.key_text, 'UTF8'), e.key_hex),
                       coalesce(convert_to(e.payload_text, 'UTF8'), e.payload_hex), e.headers::jsonb
                  FROM unnest(\(a(eventId))::text[], \(a(jobId))::text[], \(a(topic))::text[], \(a(key.text))::text[],
                              \(a(key.hex))::bytea[], \(a(payload.text))::text[], \(a(payload.hex))::bytea[], \(a(headers))::text[])
                       WITH ORDINALITY AS e(event_id, job_id, topic, key_text, key_hex, payload_text, payload_hex, headers, n)
                """ + onlyNew("e") + " ORDER BY e.n ON CONFLICT (event_id) DO NOTHING"
        }

        /// A bytea column as two parallel ones: the value as text when it is UTF-8 without NUL, else as hex
        /// (both nil: SQL NULL).
        struct BytesColumn {
            var text: [String?] = []
            var hex: [String?] = []

            mutating func append(_ bytes: [UInt8]?) {
                guard let bytes else {
                    text.append(nil)
                    hex.append(nil)
                    return
                }
                if !bytes.contains(0), let string = String(validating: bytes, as: UTF8.self) {
                    text.append(string)
                    hex.append(nil)
                } else {
                    text.append(nil)
                    hex.append(PostgresBytes(bytes).postgresText)
                }
            }
        }
    }
}
