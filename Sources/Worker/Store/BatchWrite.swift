import BlendCore
import Foundation
import Postgres

extension ResultStore {
    /// A whole batch as one statement: the job rows are inserted in a data-modifying `WITH`
    /// (`ON CONFLICT (job_id) DO NOTHING RETURNING job_id`), and every dependant table's insert
    /// keeps only the rows of the jobs that returned, so a job stored before is skipped with
    /// everything that hangs off it. One statement is one round trip and its own transaction;
    /// the foreign keys are checked at its end, when the new job rows exist.
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
            parts += [Self.candidates(outcomes), Self.comparisonMatrices(outcomes), Self.fusions(outcomes), outbox].compactMap { $0 }
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
        /// kinds have no rank mode).
        private static func jobs(_ outcomes: [JobOutcome], workerId: String) throws -> PostgresQuery {
            var jobId: [String?] = [], status: [String?] = [], error: [String?] = [], violations: [String?] = []
            var instruction: [String?] = [], input: [String?] = [], rankMode: [String?] = [], fuseOptions: [String?] = []
            var metadata: [String?] = [], topic: [String?] = [], partition: [String?] = [], offset: [String?] = []
            var ranker: [String?] = [], fuser: [String?] = [], timings: [String?] = [], receivedAt: [String?] = [], task: [String?] = []
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
            }
            return """
                INSERT INTO jobs (job_id, status, error, violations, instruction, input, rank_mode, fuse_options, metadata,
                                  kafka_topic, kafka_partition, kafka_offset, worker_id, ranker, fuser, timings_ms, received_at, task)
                SELECT j.job_id, j.status, j.error, j.violations::jsonb, j.instruction, j.input, j.rank_mode, j.fuse_options::jsonb,
                       j.metadata::json, j.kafka_topic, j.kafka_partition, j.kafka_offset, \(workerId), j.ranker, j.fuser,
                       j.timings_ms::jsonb, j.received_at, j.task
                  FROM unnest(\(a(jobId))::text[], \(a(status))::text[], \(a(error))::text[], \(a(violations))::text[],
                              \(a(instruction))::text[], \(a(input))::text[], \(a(rankMode))::text[], \(a(fuseOptions))::text[],
                              \(a(metadata))::text[], \(a(topic))::text[], \(a(partition))::int[], \(a(offset))::bigint[],
                              \(a(ranker))::text[], \(a(fuser))::text[], \(a(timings))::text[], \(a(receivedAt))::timestamptz[],
                              \(a(task))::text[])
                       WITH ORDINALITY AS j(job_id, status, error, violations, instruction, input, rank_mode, fuse_options, metadata,
                                            kafka_topic, kafka_partition, kafka_offset, ranker, fuser, timings_ms, received_at, task, n)
                 ORDER BY j.n
                ON CONFLICT (job_id) DO NOTHING
                RETURNING job_id
                """
        }

        private static func candidates(_ outcomes: [JobOutcome]) -> PostgresQuery? {
            var jobId: [String?] = [], idx: [Int] = [], model: [String?] = [], text: [String?] = [], rank: [String?] = [], score: [String?] = []
            for o in outcomes {
                guard let job = o.job else { continue }
                for (i, candidate) in job.candidates.enumerated() {
                    jobId.append(o.jobId)
                    idx.append(i)
                    model.append(candidate.model)
                    text.append(candidate.text)
                    rank.append(o.rank.map { String($0.ranks[i]) })
                    score.append(o.rank.map { Double($0.scores[i]).postgresText! })
                }
            }
            guard !jobId.isEmpty else { return nil }
            return """
                INSERT INTO candidates (job_id, idx, model, text, rank, score)
                SELECT c.job_id, c.idx, c.model, c.text, c.rank, c.score
                  FROM unnest(\(a(jobId))::text[], \(idx)::int[], \(a(model))::text[], \(a(text))::text[], \(a(rank))::int[],
                              \(a(score))::float8[]) AS c(job_id, idx, model, text, rank, score)
                """ + onlyNew("c")
        }

        /// One row per job with a matrix of two or more candidates (a single candidate has no pair):
        /// ℓ(a, b) of every ordered pair in `ComparisonMatrix.orderedPairs` order, each matrix as the
        /// text of its own real[] (the matrices differ in size, which a two-dimensional array cannot hold).
        private static func comparisonMatrices(_ outcomes: [JobOutcome]) -> PostgresQuery? {
            var jobId: [String?] = [], size: [Int] = [], logits: [String?] = []
            for o in outcomes {
                guard let matrix = o.rank?.comparisons, matrix.count >= 2 else { continue }
                jobId.append(o.jobId)
                size.append(matrix.count)
                logits.append(Self.realArrayLiteral(matrix))
            }
            guard !jobId.isEmpty else { return nil }
            return """
                INSERT INTO comparison_matrices (job_id, size, logits)
                SELECT m.job_id, m.size, m.logits::real[]
                  FROM unnest(\(a(jobId))::text[], \(size)::int[], \(a(logits))::text[]) AS m(job_id, size, logits)
                """ + onlyNew("m")
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

        private static func fusions(_ outcomes: [JobOutcome]) -> PostgresQuery? {
            var jobId: [String?] = [], text: [String?] = [], fuser: [String?] = [], topK: [Int] = [], sources: [String?] = [], tokens: [Int] = []
            for o in outcomes {
                guard let f = o.fusion else { continue }
                jobId.append(o.jobId)
                text.append(f.text)
                fuser.append(f.fuser)
                topK.append(f.topK)
                // Source lists differ in length: each travels as the text of its own int[].
                sources.append(f.sourceIndexes.postgresText)
                tokens.append(f.generatedTokens)
            }
            guard !jobId.isEmpty else { return nil }
            return """
                INSERT INTO fusions (job_id, text, fuser, top_k, source_indexes, generated_tokens)
                SELECT f.job_id, f.text, f.fuser, f.top_k, f.source_indexes::int[], f.generated_tokens
                  FROM unnest(\(a(jobId))::text[], \(a(text))::text[], \(a(fuser))::text[], \(topK)::int[], \(a(sources))::text[],
                              \(tokens)::int[]) AS f(job_id, text, fuser, top_k, source_indexes, generated_tokens)
                """ + onlyNew("f")
        }

        /// Completion events and dead-letter copies in batch order (a job's event before its dead
        /// letter), so the relay publishes them in the order they were decided.
        ///
        /// A key or payload that is UTF-8 text without NUL (an event's job id and JSON) travels as
        /// text and is turned back into its bytes by the server, half the size of bytea's hex form;
        /// other bytes (a dead letter's original record) travel as hex.
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
