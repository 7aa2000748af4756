import BlendCore
import Foundation
import Postgres

/// The worker's write path and the outbox relay's read path.
///
/// `store` writes a whole batch in one statement: the job rows, which carry their candidates,
/// comparison matrices and fusions (migration 0005), the task rows and the outbox rows. It is idempotent per job_id — a job whose row
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
    /// The batch is one statement whatever its size (`BatchWrite`): one round trip, atomic by
    /// itself, which inserts the job rows and, for the jobs it wrote, their rows of every
    /// dependant table and their outbox rows.
    @discardableResult
    public func store(_ outcomes: [JobOutcome], workerId: String) async throws -> [String] {
        // The first outcome of a job id wins, as it did when jobs were inserted one by one.
        var seen = Set<String>()
        let writable = outcomes.filter { $0.status != nil && seen.insert($0.jobId).inserted }
        guard !writable.isEmpty else { return [] }
        let write = try BatchWrite(writable, workerId: workerId, eventsTopic: eventsTopic, dlqTopic: dlqTopic)
        let rows = try await pool.withConnection { conn in try await conn.query(write.query) }
        let newIds = Set(try rows.map { try $0.decode("job_id", as: String.self) })
        return writable.filter { newIds.contains($0.jobId) }.map(\.jobId)
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
