import BlendCore
import Foundation
import Postgres

/// The worker's write path and the outbox relay's read path.
///
/// `store` writes a whole batch in one transaction: each job row with its candidates,
/// comparison matrix, fusion and outbox rows. It is idempotent per job_id — a job whose row
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
    /// returns the job ids newly written.
    @discardableResult
    public func store(_ outcomes: [JobOutcome], workerId: String) async throws -> [String] {
        let writable = outcomes.filter { $0.status != nil }
        guard !writable.isEmpty else { return [] }
        let eventsTopic = self.eventsTopic, dlqTopic = self.dlqTopic
        return try await pool.transaction { conn in
            var written: [String] = []
            for outcome in writable where try await Self.insertJob(outcome, workerId: workerId, on: conn) {
                try await Self.insertDependants(outcome, eventsTopic: eventsTopic, dlqTopic: dlqTopic, on: conn)
                written.append(outcome.jobId)
            }
            try await Self.insertTaskRows(writable.filter { written.contains($0.jobId) }, on: conn)
            return written
        }
    }

    private static func insertJob(_ o: JobOutcome, workerId: String, on conn: PostgresConnection) async throws -> Bool {
        let job = o.job
        let violations = try o.rejection.map { try PostgresJSON(encoding: $0.violations) }
        let fuseOptions = try job?.fuse.map { try PostgresJSON(encoding: $0) }
        let metadata = job?.metadata.map { PostgresJSON(text: $0.serialized()) }
        let timings = o.timingsMs.isEmpty ? nil : try PostgresJSON(encoding: o.timingsMs)
        let c = o.message.coordinates
        let error = o.error ?? o.rejection.map(\.description)
        // A rejected job was never ranked or fused: no model labels.
        let ranker = o.status == .rejected ? nil : o.models["ranker"], fuser = o.status == .rejected ? nil : o.models["fuser"]
        let rows = try await conn.query("""
            INSERT INTO jobs (job_id, status, error, violations, instruction, input, rank_mode, fuse_options, metadata,
                              kafka_topic, kafka_partition, kafka_offset, worker_id, ranker, fuser, timings_ms, received_at)
            VALUES (\(o.jobId), \(o.status!.rawValue), \(error), \(violations)::jsonb, \(job?.instruction), \(job?.input),
                    \(job?.rank.mode.rawValue), \(fuseOptions)::jsonb, \(metadata)::json,
                    \(c.topic), \(Int(c.partition)), \(c.offset), \(workerId), \(ranker), \(fuser),
                    \(timings)::jsonb, \(o.message.timestamp))
            ON CONFLICT (job_id) DO NOTHING
            RETURNING job_id
            """)
        return !rows.isEmpty
    }

    private static func insertDependants(_ o: JobOutcome, eventsTopic: String, dlqTopic: String, on conn: PostgresConnection) async throws {
        if let job = o.job {
            let n = job.candidates.count
            let ranks: [Int?] = (0..<n).map { o.rank?.ranks[$0] }
            let scores: [Float?] = (0..<n).map { o.rank?.scores[$0] }
            try await conn.execute("""
                INSERT INTO candidates (job_id, idx, model, text, rank, score)
                SELECT \(o.jobId), c.idx - 1, c.model, c.text, c.rank, c.score
                  FROM unnest(\(PostgresTextArray(job.candidates.map(\.model)))::text[],
                              \(PostgresTextArray(job.candidates.map(\.text)))::text[],
                              \(PostgresTextArray(ranks.map { $0.map(String.init) }))::int[],
                              \(PostgresTextArray(scores.map { $0.map { Double($0).postgresText! } }))::float8[])
                       WITH ORDINALITY AS c(model, text, rank, score, idx)
                """)
        }
        if let matrix = o.rank?.comparisons {
            let pairs = ComparisonMatrix.orderedPairs(count: matrix.count)
            try await conn.execute("""
                INSERT INTO comparisons (job_id, a, b, logit)
                SELECT \(o.jobId), p.a, p.b, p.logit
                  FROM unnest(\(pairs.map(\.left))::int[], \(pairs.map(\.right))::int[],
                              \(PostgresTextArray(pairs.map { Double(matrix[$0.left, $0.right]).postgresText }))::real[]) AS p(a, b, logit)
                """)
        }
        if let f = o.fusion {
            try await conn.execute("""
                INSERT INTO fusions (job_id, text, fuser, top_k, source_indexes, generated_tokens)
                VALUES (\(o.jobId), \(f.text), \(f.fuser), \(f.topK), \(f.sourceIndexes)::int[], \(f.generatedTokens))
                """)
        }
        if let event = o.event {
            try await conn.execute("""
                INSERT INTO outbox (event_id, job_id, topic, key, payload, headers)
                VALUES (\(event.id), \(o.jobId), \(eventsTopic), \(PostgresBytes(Array(o.jobId.utf8))), \(PostgresBytes(try event.jsonBytes())), \(PostgresJSON(text: "{\"content-type\":\"application/cloudevents+json\"}"))::jsonb)
                ON CONFLICT (event_id) DO NOTHING
                """)
        }
        if let rejection = o.rejection {
            // The dead-letter copy is the original record (key and value, bytes as they came,
            // absent or null included) with the reasons in headers, kept short.
            let codes = Array(Set(rejection.violations.map(\.code.rawValue))).sorted().joined(separator: ",")
            let c = o.message.coordinates
            let reason = rejection.description
            let headers: [String: String] = [
                "blendd-rejected-codes": codes,
                "blendd-rejected-reason": reason.count > Self.maxReasonCharacters ? String(reason.prefix(Self.maxReasonCharacters)) + "…" : reason,
                "blendd-source-topic": c.topic,
                "blendd-source-partition": String(c.partition),
                "blendd-source-offset": String(c.offset),
            ]
            try await conn.execute("""
                INSERT INTO outbox (event_id, job_id, topic, key, payload, headers)
                VALUES (\(o.jobId + "/dlq"), \(o.jobId), \(dlqTopic), \(o.message.key.map(PostgresBytes.init)), \(o.message.value.map(PostgresBytes.init)),
                        \(try PostgresJSON(encoding: headers))::jsonb)
                ON CONFLICT (event_id) DO NOTHING
                """)
        }
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

    public func markSent(_ ids: [Int64]) async throws {
        guard !ids.isEmpty else { return }
        try await pool.withConnection { conn in
            try await conn.execute("UPDATE outbox SET sent_at = now(), claimed_until = NULL WHERE id = ANY(\(ids)::bigint[])")
        }
    }

    /// A transient publish failure: releases the claim and schedules the entry's next attempt.
    public func markRetry(_ id: Int64, error: String, afterSeconds delay: Double) async throws {
        try await pool.withConnection { conn in
            try await conn.execute("""
                UPDATE outbox SET claimed_until = NULL, last_error = \(error), error_class = 'transient',
                       next_attempt_at = now() + make_interval(secs => \(delay))
                 WHERE id = \(id)
                """)
        }
    }

    /// A permanent publish failure: the entry is never retried; the error stays on the row.
    public func markFailed(_ id: Int64, error: String) async throws {
        try await pool.withConnection { conn in
            try await conn.execute("""
                UPDATE outbox SET claimed_until = NULL, last_error = \(error), error_class = 'permanent', failed_at = now()
                 WHERE id = \(id)
                """)
        }
    }

    /// Entries still to publish, for the backlog metric (permanently failed ones are not pending).
    public func pendingCount() async throws -> Int {
        try await pool.withConnection { conn in
            try await conn.query("SELECT count(*) AS n FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL")[0].decode("n")
        }
    }
}
