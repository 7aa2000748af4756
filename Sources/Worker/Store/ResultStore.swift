import BlendCore
import Foundation
import Postgres

/// The worker's write path and the outbox relay's read path.
///
/// `store` writes a whole batch in one transaction: the job rows with their candidates,
/// comparison matrices, fusions and outbox rows, a constant number of statements per batch. It is idempotent per job_id — a job whose row
/// exists is skipped with everything that depends on it — so storing a batch twice leaves
/// the same rows and one outbox event per job.
public struct ResultStore: Sendable {
    public let pool: PostgresPool
    public let eventsTopic: String
    public let dlqTopic: String

    public init(pool: PostgresPool, eventsTopic: String, dlqTopic: String) {
        self.pool = pool
        self.eventsTopic = eventsTopic
        self.dlqTopic = dlqTopic
    }

    /// Which of these job ids already have a stored outcome.
    public func existingJobIds(_ ids: [String]) async throws -> Set<String> {
        guard !ids.isEmpty else { return [] }
        let rows = try await pool.withConnection { conn in
            try await conn.query("SELECT job_id FROM jobs WHERE job_id = ANY(\(PostgresTextArray(ids))::text[])")
        }
        return Set(try rows.map { try $0.decode("job_id", as: String.self) })
    }

    /// Stores every outcome that carries a status (already-stored ones are skipped) and
    /// returns the job ids newly written, in the order given.
    ///
    /// The batch costs a constant number of statements whatever its size: one multi-row insert
    /// of the job rows (`ON CONFLICT (job_id) DO NOTHING RETURNING job_id` tells which are new),
    /// then one statement per dependant table over all the new jobs at once. Each statement
    /// takes its rows as parallel arrays — one bound parameter per column — and `unnest`s them.
    @discardableResult
    public func store(_ outcomes: [JobOutcome], workerId: String) async throws -> [String] {
        // The first outcome of a job id wins, as it did when jobs were inserted one by one.
        var seen = Set<String>()
        let writable = outcomes.filter { $0.status != nil && seen.insert($0.jobId).inserted }
        guard !writable.isEmpty else { return [] }
        // Everything that can fail without the database (JSON encoding) fails before BEGIN.
        let jobs = try JobColumns(writable, workerId: workerId)
        let eventsTopic = self.eventsTopic, dlqTopic = self.dlqTopic
        return try await pool.transaction { conn in
            let newIds = try await Self.insertJobs(jobs, on: conn)
            let written = writable.filter { newIds.contains($0.jobId) }
            guard !written.isEmpty else { return [] }
            try await Self.insertDependants(of: written, eventsTopic: eventsTopic, dlqTopic: dlqTopic, on: conn)
            try await Self.insertTaskRows(written, on: conn)
            return written.map(\.jobId)
        }
    }

    /// The rows that hang off newly written jobs, one statement per table; a table no new job
    /// has rows for costs nothing.
    static func insertDependants(of written: [JobOutcome], eventsTopic: String, dlqTopic: String, on conn: PostgresConnection) async throws {
        try await insertCandidates(written, on: conn)
        try await insertComparisons(written, on: conn)
        try await insertFusions(written, on: conn)
        try await insertOutbox(written, eventsTopic: eventsTopic, dlqTopic: dlqTopic, on: conn)
    }

    /// The jobs table's columns for a batch, one array per column, in batch order.
    struct JobColumns {
        var jobId: [String?] = [], status: [String?] = [], error: [String?] = [], violations: [String?] = []
        var instruction: [String?] = [], input: [String?] = [], rankMode: [String?] = [], fuseOptions: [String?] = []
        var metadata: [String?] = [], topic: [String?] = [], partition: [String?] = [], offset: [String?] = []
        var ranker: [String?] = [], fuser: [String?] = [], timings: [String?] = [], receivedAt: [String?] = []
        var workerId: String

        init(_ outcomes: [JobOutcome], workerId: String) throws {
            self.workerId = workerId
            for o in outcomes {
                let job = o.job, c = o.message.coordinates
                jobId.append(o.jobId)
                status.append(o.status!.rawValue)
                error.append(o.error ?? o.rejection.map(\.description))
                violations.append(try o.rejection.map { try PostgresJSON(encoding: $0.violations).text })
                instruction.append(job?.instruction)
                input.append(job?.input)
                rankMode.append(job?.rank.mode.rawValue)
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
            }
        }
    }

    /// Inserts the job rows that do not exist yet and returns the ids it wrote.
    private static func insertJobs(_ j: JobColumns, on conn: PostgresConnection) async throws -> Set<String> {
        func a(_ column: [String?]) -> PostgresTextArray { PostgresTextArray(column) }
        let rows = try await conn.query("""
            INSERT INTO jobs (job_id, status, error, violations, instruction, input, rank_mode, fuse_options, metadata,
                              kafka_topic, kafka_partition, kafka_offset, worker_id, ranker, fuser, timings_ms, received_at)
            SELECT j.job_id, j.status, j.error, j.violations::jsonb, j.instruction, j.input, j.rank_mode, j.fuse_options::jsonb,
                   j.metadata::json, j.kafka_topic, j.kafka_partition, j.kafka_offset, \(j.workerId), j.ranker, j.fuser,
                   j.timings_ms::jsonb, j.received_at
              FROM unnest(\(a(j.jobId))::text[], \(a(j.status))::text[], \(a(j.error))::text[], \(a(j.violations))::text[],
                          \(a(j.instruction))::text[], \(a(j.input))::text[], \(a(j.rankMode))::text[], \(a(j.fuseOptions))::text[],
                          \(a(j.metadata))::text[], \(a(j.topic))::text[], \(a(j.partition))::int[], \(a(j.offset))::bigint[],
                          \(a(j.ranker))::text[], \(a(j.fuser))::text[], \(a(j.timings))::text[], \(a(j.receivedAt))::timestamptz[])
                   WITH ORDINALITY AS j(job_id, status, error, violations, instruction, input, rank_mode, fuse_options, metadata,
                                        kafka_topic, kafka_partition, kafka_offset, ranker, fuser, timings_ms, received_at, n)
             ORDER BY j.n
            ON CONFLICT (job_id) DO NOTHING
            RETURNING job_id
            """)
        return Set(try rows.map { try $0.decode("job_id", as: String.self) })
    }

    private static func insertCandidates(_ written: [JobOutcome], on conn: PostgresConnection) async throws {
        var jobId: [String?] = [], idx: [Int] = [], model: [String?] = [], text: [String?] = [], rank: [String?] = [], score: [String?] = []
        for o in written {
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
        guard !jobId.isEmpty else { return }
        try await conn.execute("""
            INSERT INTO candidates (job_id, idx, model, text, rank, score)
            SELECT * FROM unnest(\(PostgresTextArray(jobId))::text[], \(idx)::int[], \(PostgresTextArray(model))::text[],
                                 \(PostgresTextArray(text))::text[], \(PostgresTextArray(rank))::int[], \(PostgresTextArray(score))::float8[])
            """)
    }

    private static func insertComparisons(_ written: [JobOutcome], on conn: PostgresConnection) async throws {
        var jobId: [String?] = [], a: [Int] = [], b: [Int] = [], logit: [String?] = []
        for o in written {
            guard let matrix = o.rank?.comparisons else { continue }
            for pair in ComparisonMatrix.orderedPairs(count: matrix.count) {
                jobId.append(o.jobId)
                a.append(pair.left)
                b.append(pair.right)
                logit.append(Double(matrix[pair.left, pair.right]).postgresText)
            }
        }
        guard !jobId.isEmpty else { return }
        try await conn.execute("""
            INSERT INTO comparisons (job_id, a, b, logit)
            SELECT * FROM unnest(\(PostgresTextArray(jobId))::text[], \(a)::int[], \(b)::int[], \(PostgresTextArray(logit))::real[])
            """)
    }

    private static func insertFusions(_ written: [JobOutcome], on conn: PostgresConnection) async throws {
        var jobId: [String?] = [], text: [String?] = [], fuser: [String?] = [], topK: [Int] = [], sources: [String?] = [], tokens: [Int] = []
        for o in written {
            guard let f = o.fusion else { continue }
            jobId.append(o.jobId)
            text.append(f.text)
            fuser.append(f.fuser)
            topK.append(f.topK)
            // Source lists differ in length, which a two-dimensional int[][] cannot hold: each
            // travels as the text of its own int[] and is cast row by row.
            sources.append(f.sourceIndexes.postgresText)
            tokens.append(f.generatedTokens)
        }
        guard !jobId.isEmpty else { return }
        try await conn.execute("""
            INSERT INTO fusions (job_id, text, fuser, top_k, source_indexes, generated_tokens)
            SELECT f.job_id, f.text, f.fuser, f.top_k, f.source_indexes::int[], f.generated_tokens
              FROM unnest(\(PostgresTextArray(jobId))::text[], \(PostgresTextArray(text))::text[], \(PostgresTextArray(fuser))::text[],
                          \(topK)::int[], \(PostgresTextArray(sources))::text[], \(tokens)::int[])
                   AS f(job_id, text, fuser, top_k, source_indexes, generated_tokens)
            """)
    }

    /// Completion events and dead-letter copies in one statement, in batch order (a job's event
    /// before its dead letter), so the relay publishes them in the order they were decided.
    private static func insertOutbox(_ written: [JobOutcome], eventsTopic: String, dlqTopic: String, on conn: PostgresConnection) async throws {
        var eventId: [String?] = [], jobId: [String?] = [], topic: [String?] = [], key: [String?] = [], payload: [String?] = [], headers: [String?] = []
        let eventHeaders = #"{"content-type":"application/cloudevents+json"}"#
        for o in written {
            if let event = o.event {
                eventId.append(event.id)
                jobId.append(o.jobId)
                topic.append(eventsTopic)
                key.append(PostgresBytes(Array(o.jobId.utf8)).postgresText)
                payload.append(PostgresBytes(try event.jsonBytes()).postgresText)
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
                    "blendd-rejected-reason": reason.count > Self.maxReasonCharacters ? String(reason.prefix(Self.maxReasonCharacters)) + "…" : reason,
                    "blendd-source-topic": c.topic,
                    "blendd-source-partition": String(c.partition),
                    "blendd-source-offset": String(c.offset),
                ]
                eventId.append(o.jobId + "/dlq")
                jobId.append(o.jobId)
                topic.append(dlqTopic)
                key.append(o.message.key.map { PostgresBytes($0).postgresText! })
                payload.append(o.message.value.map { PostgresBytes($0).postgresText! })
                headers.append(try PostgresJSON(encoding: fields).text)
            }
        }
        guard !eventId.isEmpty else { return }
        // ORDER BY the ordinality: ids (bigserial) are drawn in that order, and the relay publishes by id.
        try await conn.execute("""
            INSERT INTO outbox (event_id, job_id, topic, key, payload, headers)
            SELECT e.event_id, e.job_id, e.topic, e.key, e.payload, e.headers::jsonb
              FROM unnest(\(PostgresTextArray(eventId))::text[], \(PostgresTextArray(jobId))::text[], \(PostgresTextArray(topic))::text[],
                          \(PostgresTextArray(key))::bytea[], \(PostgresTextArray(payload))::bytea[], \(PostgresTextArray(headers))::text[])
                   WITH ORDINALITY AS e(event_id, job_id, topic, key, payload, headers, n)
             ORDER BY e.n
            ON CONFLICT (event_id) DO NOTHING
            """)
    }

    /// The channel a trigger on the outbox NOTIFYs when a transaction adds rows (migration 0002).
    public static let notifyChannel = "blendd_outbox"

    /// Characters of the rejection reason a dead-letter header carries.
    static let maxReasonCharacters = 1000

    // MARK: - Outbox relay

    public struct OutboxEntry: Sendable, Equatable {
        public var id: Int64
        public var eventId: String
        public var topic: String
        /// nil: the record has no key.
        public var key: [UInt8]?
        /// nil: the record's value is null (dead-letter copies of null records).
        public var payload: [UInt8]?
        public var headers: [String: String]
        /// Publish attempts so far, this one included.
        public var attempts: Int
    }

    /// Claims up to `limit` entries that are due (unsent, not failed for good, past their retry
    /// time) for `claimSeconds`, oldest first; entries another relay holds are skipped, and
    /// claims of a relay that died expire.
    public func claimPending(limit: Int, claimSeconds: Double = 30) async throws -> [OutboxEntry] {
        let rows = try await pool.withConnection { conn in
            try await conn.query("""
                UPDATE outbox SET attempts = attempts + 1, claimed_until = now() + make_interval(secs => \(claimSeconds))
                 WHERE id IN (SELECT id FROM outbox
                               WHERE sent_at IS NULL AND failed_at IS NULL
                                 AND (claimed_until IS NULL OR claimed_until < now())
                                 AND (next_attempt_at IS NULL OR next_attempt_at <= now())
                               ORDER BY id LIMIT \(limit) FOR UPDATE SKIP LOCKED)
                RETURNING id, event_id, topic, key, payload, headers, attempts
                """)
        }
        return try rows.map { row in
            OutboxEntry(id: try row.decode("id"), eventId: try row.decode("event_id"), topic: try row.decode("topic"),
                        key: try row.decode("key", as: PostgresBytes?.self)?.bytes,
                        payload: try row.decode("payload", as: PostgresBytes?.self)?.bytes,
                        headers: try row.decode("headers", as: PostgresJSON.self).decoded(as: [String: String].self),
                        attempts: try row.decode("attempts"))
        }.sorted { $0.id < $1.id }
    }

    /// Seconds until the next unsent entry becomes due (its claim expires or its retry time
    /// comes; 0 or less = due now), or nil when nothing is pending.
    public func secondsUntilNextDue() async throws -> Double? {
        try await pool.withConnection { conn in
            try await conn.query("""
                SELECT extract(epoch FROM min(coalesce(greatest(claimed_until, next_attempt_at), now())) - now())::float8 AS s
                  FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL
                """)[0].decode("s", as: Double?.self)
        }
    }

    /// A transient publish failure: the claim is released and the entry tried again after `afterSeconds`.
    public struct Retry: Sendable, Equatable {
        public var id: Int64
        public var error: String
        public var afterSeconds: Double
        public init(id: Int64, error: String, afterSeconds: Double) { self.id = id; self.error = error; self.afterSeconds = afterSeconds }
    }

    /// A permanent publish failure: the entry is never retried; the error stays on the row.
    public struct Failure: Sendable, Equatable {
        public var id: Int64
        public var error: String
        public init(id: Int64, error: String) { self.id = id; self.error = error }
    }

    /// Settles a publish round in one statement: each row gets its own outcome (sent, retried
    /// with its own delay, or set aside with its error), all or none.
    public func settle(sent: [Int64], retrying: [Retry] = [], failed: [Failure] = []) async throws {
        guard !sent.isEmpty || !retrying.isEmpty || !failed.isEmpty else { return }
        try await pool.withConnection { conn in
            if retrying.isEmpty && failed.isEmpty {
                try await conn.execute("UPDATE outbox SET sent_at = now(), claimed_until = NULL WHERE id = ANY(\(sent)::bigint[])")
                return
            }
            // Data-modifying WITH clauses run to completion whether or not the final SELECT reads them.
            try await conn.execute("""
                WITH sent AS (
                    UPDATE outbox SET sent_at = now(), claimed_until = NULL WHERE id = ANY(\(sent)::bigint[])
                ), retrying AS (
                    UPDATE outbox o SET claimed_until = NULL, last_error = r.error, error_class = 'transient',
                           next_attempt_at = now() + make_interval(secs => r.delay)
                      FROM unnest(\(retrying.map(\.id))::bigint[], \(PostgresTextArray(retrying.map(\.error)))::text[],
                                  \(retrying.map(\.afterSeconds))::float8[]) AS r(id, error, delay)
                     WHERE o.id = r.id
                ), failed AS (
                    UPDATE outbox o SET claimed_until = NULL, last_error = f.error, error_class = 'permanent', failed_at = now()
                      FROM unnest(\(failed.map(\.id))::bigint[], \(PostgresTextArray(failed.map(\.error)))::text[]) AS f(id, error)
                     WHERE o.id = f.id
                )
                SELECT 1
                """)
        }
    }

    public func markSent(_ ids: [Int64]) async throws {
        try await settle(sent: ids)
    }

    /// A transient publish failure: releases the claim and schedules the entry's next attempt.
    public func markRetry(_ id: Int64, error: String, afterSeconds delay: Double) async throws {
        try await settle(sent: [], retrying: [Retry(id: id, error: error, afterSeconds: delay)])
    }

    /// A permanent publish failure: the entry is never retried; the error stays on the row.
    public func markFailed(_ id: Int64, error: String) async throws {
        try await settle(sent: [], failed: [Failure(id: id, error: error)])
    }

    /// Entries still to publish, for the backlog metric (permanently failed ones are not pending).
    public func pendingCount() async throws -> Int {
        try await pool.withConnection { conn in
            try await conn.query("SELECT count(*) AS n FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL")[0].decode("n")
        }
    }
}
