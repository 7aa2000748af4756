import BlendCore
import BlendTestSupport
import Foundation
import Inference
import Postgres
import XCTest
@testable import Worker

final class ResultStoreTests: XCTestCase {
    var db: TestDatabase!
    var pool: PostgresPool!
    var store: ResultStore!

    override func setUp() async throws {
        guard TestDatabase.serverURL != nil else { throw XCTSkip(TestDatabase.skipMessage) }
        db = try await TestDatabase.migrated()
        pool = PostgresPool(url: db.url, maxConnections: 2)
        store = ResultStore(pool: pool, eventsTopic: "blend.events", dlqTopic: "blend.jobs.dlq")
    }

    override func tearDown() async throws {
        await pool?.close()
        try await db?.drop()
    }

    private func outcomes(_ jsons: [String]) async -> [JobOutcome] {
        let processor = BatchProcessor(validator: JobValidator(), ranker: ConsensusRanker(), fuser: TopCandidateFuser(), workerId: "w1")
        let messages = jsons.enumerated().map { i, json in
            IncomingMessage(coordinates: MessageCoordinates(topic: "blend.jobs", partition: 0, offset: Int64(i)),
                            key: nil, value: Array(json.utf8), timestamp: Date())
        }
        return await processor.process(processor.validate(messages), isStored: [])
    }

    private func job(_ id: String, instruction: String = "Capital of France?") -> String {
        let escaped = instruction.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
        return """
        {"job_id":"\(id)","instruction":"\(escaped)","candidates":[{"model":"m0","text":"Paris is the capital of France."},
         {"model":"m1","text":"Bananas."},{"model":"m2","text":"The capital of France is Paris."}],"fuse":{"top_k":2},"metadata":{"t":1}}
        """
    }

    private func count(_ sql: PostgresQuery) async throws -> Int {
        try await pool.withConnection { try await $0.query(sql)[0].decode(0, as: Int.self) }
    }

    func testStoringABatchTwiceLeavesTheSameRowsAndOneOutboxEventPerJob() async throws {
        let batch = await outcomes([job("a"), job("b"), #"{"job_id":"bad","candidates":[]}"#])
        let first = try await store.store(batch, workerId: "w1")
        XCTAssertEqual(first, ["a", "b", "bad"])
        let snapshot = try await tableCounts()
        let second = try await store.store(batch, workerId: "w2")
        XCTAssertEqual(second, [], "nothing is written twice")
        let again = try await tableCounts()
        XCTAssertEqual(again, snapshot)
        XCTAssertEqual(snapshot["jobs"], 3)
        XCTAssertEqual(snapshot["candidates"], 6)
        XCTAssertEqual(snapshot["comparisons"], 12)
        XCTAssertEqual(snapshot["fusions"], 2)
        XCTAssertEqual(snapshot["outbox"], 4, "three events and one dead-letter copy")
        let perJob = try await pool.withConnection { conn in
            try await conn.query("SELECT job_id, count(*) AS n FROM outbox WHERE topic = 'blend.events' GROUP BY job_id ORDER BY job_id")
        }
        XCTAssertEqual(try perJob.map { try $0.decode("job_id", as: String.self) }, ["a", "b", "bad"])
        XCTAssertEqual(try perJob.map { try $0.decode("n", as: Int.self) }, [1, 1, 1])
        let stored = try await store.existingJobIds(["a", "bad", "zzz"])
        XCTAssertEqual(stored, ["a", "bad"])
    }

    func testStoredRowsMatchTheOutcomeAndTheViewsReadThem() async throws {
        let batch = await outcomes([job("v1", instruction: "it's \"quoted\"; DROP TABLE jobs; -- 😀")])
        try await store.store(batch, workerId: "w1")
        let outcome = batch[0]
        let row = try await pool.withConnection { try await $0.query("SELECT * FROM blend_results WHERE job_id = 'v1'")[0] }
        XCTAssertEqual(try row.decode("status", as: String.self), "completed")
        XCTAssertEqual(try row.decode("instruction", as: String.self), "it's \"quoted\"; DROP TABLE jobs; -- 😀")
        XCTAssertEqual(try row.decode("fused_text", as: String.self), outcome.fusion?.text)
        XCTAssertEqual(try row.decode("fused_from", as: [Int].self), outcome.fusion?.sourceIndexes)
        XCTAssertEqual(try row.decode("ranker", as: String.self), "consensus-chrf")
        XCTAssertEqual(try row.decode("best_model", as: String.self), "m\(outcome.rank!.ranks.firstIndex(of: 1)!)")
        let ranking = try row.decode("ranking", as: PostgresJSON.self).decoded(as: [[String: JSONValue]].self)
        XCTAssertEqual(ranking.map { $0["rank"] }, [.number(1), .number(2), .number(3)])
        let logits = try await pool.withConnection { conn in
            try await conn.query("SELECT a, b, logit FROM comparisons WHERE job_id = 'v1' ORDER BY a, b")
        }
        let matrix = outcome.rank!.comparisons!
        for r in logits {
            let a: Int = try r.decode("a"), b: Int = try r.decode("b")
            XCTAssertEqual(try r.decode("logit", as: Float.self), matrix[a, b], accuracy: 1e-6)
        }
        let payload = try await pool.withConnection { try await $0.query("SELECT payload FROM outbox WHERE job_id = 'v1'")[0] }
        XCTAssertEqual(try payload.decode("payload", as: PostgresBytes.self).bytes, try outcome.event!.jsonBytes())
        let board = try await pool.withConnection { try await $0.query("SELECT model, jobs, first_places FROM model_leaderboard ORDER BY model") }
        XCTAssertEqual(try board.map { try $0.decode("model", as: String.self) }, ["m0", "m1", "m2"])
        XCTAssertEqual(try board.map { try $0.decode("jobs", as: Int.self) }, [1, 1, 1])
    }

    func testRejectedJobsKeepTheirViolationsAndADeadLetterCopyOfTheOriginalBytes() async throws {
        let raw = "{\"job_id\":\"r1\",\"instruction\":\"x\",\"candidates\":[{\"model\":\"a\",\"text\":\"\"}],\"rank\":{\"mode\":\"borda\"}}"
        let batch = await outcomes([raw, "\u{1}not json"])
        try await store.store(batch, workerId: "w1")
        let row = try await pool.withConnection { try await $0.query("SELECT status, violations FROM jobs WHERE job_id = 'r1'")[0] }
        XCTAssertEqual(try row.decode("status", as: String.self), "rejected")
        let violations = try row.decode("violations", as: PostgresJSON.self).decoded(as: [Violation].self)
        XCTAssertEqual(Set(violations.map(\.code)), [.tooFewCandidates, .emptyText, .unknownRankMode])
        let dlq = try await pool.withConnection { conn in
            try await conn.query("SELECT job_id, key, payload, headers FROM outbox WHERE topic = 'blend.jobs.dlq' ORDER BY id")
        }
        XCTAssertEqual(try dlq.map { try $0.decode("job_id", as: String.self) }, ["r1", "kafka/blend.jobs/0/1"])
        XCTAssertEqual(try dlq[0].decode("payload", as: PostgresBytes.self).bytes, Array(raw.utf8))
        XCTAssertEqual(try dlq[1].decode("payload", as: PostgresBytes.self).bytes, Array("\u{1}not json".utf8))
        let headers = try dlq[0].decode("headers", as: PostgresJSON.self).decoded(as: [String: String].self)
        XCTAssertEqual(headers["blendd-rejected-codes"], "empty_text,too_few_candidates,unknown_rank_mode")
        XCTAssertEqual(headers["blendd-source-offset"], "0")
    }

    func testABatchThatFailsMidwayStoresNothing() async throws {
        // A trigger makes the second job's outbox insert fail after the first job was written.
        try await pool.withConnection { conn in
            try await conn.executeScript("""
                CREATE FUNCTION explode() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN IF NEW.job_id = 'second' THEN RAISE EXCEPTION 'disk on fire' USING ERRCODE = '53100'; END IF; RETURN NEW; END $$;
                CREATE TRIGGER explode BEFORE INSERT ON outbox FOR EACH ROW EXECUTE FUNCTION explode();
                """)
        }
        let batch = await outcomes([job("first"), job("second")])
        do {
            try await store.store(batch, workerId: "w1")
            XCTFail("the trigger must fail the batch")
        } catch let error as PostgresError {
            XCTAssertEqual(error.sqlState, "53100")
        }
        let counts = try await tableCounts()
        XCTAssertEqual(counts.values.reduce(0, +), 0, "\(counts)")
    }

    func testOutboxClaimsAreExclusiveExpireRetryWithBackoffAndSetPermanentFailuresAside() async throws {
        try await store.store(await outcomes([job("o1"), job("o2"), job("o3"), job("o4")]), workerId: "w1")
        let keys = { (entries: [ResultStore.OutboxEntry]) in entries.map { String(decoding: $0.key ?? [], as: UTF8.self) } }
        let first = try await store.claimPending(limit: 2)
        XCTAssertEqual(keys(first), ["o1", "o2"])
        XCTAssertEqual(first[0].headers["content-type"], "application/cloudevents+json")
        let second = try await store.claimPending(limit: 10)
        XCTAssertEqual(keys(second), ["o3", "o4"], "claimed entries are not handed out twice")
        try await store.markSent(first.map(\.id))
        // A transient failure waits for its own retry time; a permanent one is never retried.
        try await store.markRetry(second[0].id, error: "broker down", afterSeconds: 60)
        try await store.markFailed(second[1].id, error: "kafka error MSG_SIZE_TOO_LARGE")
        let tooEarly = try await store.claimPending(limit: 10)
        XCTAssertEqual(tooEarly, [], "a row is not retried before its next_attempt_at")
        let due = try await store.secondsUntilNextDue()
        XCTAssertEqual(due ?? -1, 60, accuracy: 10, "the next row falls due at its retry time")
        try await pool.withConnection { try await $0.execute("UPDATE outbox SET next_attempt_at = now() - interval '1 second' WHERE next_attempt_at IS NOT NULL") }
        let retried = try await store.claimPending(limit: 10)
        XCTAssertEqual(keys(retried), ["o3"], "a transient failure is retried once due; the permanent one stays aside")
        XCTAssertEqual(retried.map(\.attempts), [2])
        let pendingBefore = try await store.pendingCount()
        XCTAssertEqual(pendingBefore, 1)
        let failed = try await pool.withConnection { conn in
            try await conn.query("SELECT last_error, error_class FROM outbox WHERE failed_at IS NOT NULL")
        }
        XCTAssertEqual(try failed.map { "\(try $0.decode("error_class", as: String.self)): \(try $0.decode("last_error", as: String.self))" },
                       ["permanent: kafka error MSG_SIZE_TOO_LARGE"])
        // A claim that lapses (its relay died) is handed out again.
        let lapsed = try await store.claimPending(limit: 10, claimSeconds: 0)
        XCTAssertEqual(lapsed, [])
        try await pool.withConnection { try await $0.execute("UPDATE outbox SET claimed_until = now() - interval '1 second' WHERE sent_at IS NULL") }
        let reclaimed = try await store.claimPending(limit: 10)
        XCTAssertEqual(keys(reclaimed), ["o3"])
        try await store.markSent(reclaimed.map(\.id))
        let pendingAfter = try await store.pendingCount()
        XCTAssertEqual(pendingAfter, 0)
        let nothingDue = try await store.secondsUntilNextDue()
        XCTAssertNil(nothingDue)
    }

    private func tableCounts() async throws -> [String: Int] {
        var counts: [String: Int] = [:]
        for table in ["jobs", "candidates", "comparisons", "fusions", "outbox"] {
            counts[table] = try await count("SELECT count(*) FROM \(identifier: table)")
        }
        return counts
    }
}
