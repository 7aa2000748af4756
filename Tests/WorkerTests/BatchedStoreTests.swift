import BlendCore
import BlendTestSupport
import Foundation
import Inference
import Postgres
import XCTest
@testable import Worker

/// The batched store path against a per-job reference: generated batches (1…200 outcomes of
/// every kind, hostile strings, duplicate ids, jobs stored before, null keys and values) are
/// stored by `ResultStore.store` in one database and job by job, with the statements the store
/// used before it batched, in another. Every column of every table must read back the same,
/// storing the batch again must change nothing, and every new job has exactly one event.
final class BatchedStoreTests: XCTestCase {
    var db: TestDatabase!, refDb: TestDatabase!
    var pool: PostgresPool!, refPool: PostgresPool!
    var store: ResultStore!

    override func setUp() async throws {
        guard TestDatabase.serverURL != nil else { throw XCTSkip(TestDatabase.skipMessage) }
        db = try await TestDatabase.migrated()
        refDb = try await TestDatabase.migrated()
        pool = PostgresPool(url: db.url, maxConnections: 2)
        refPool = PostgresPool(url: refDb.url, maxConnections: 1)
        store = ResultStore(pool: pool, eventsTopic: "blend.events", dlqTopic: "blend.jobs.dlq")
    }

    override func tearDown() async throws {
        await pool?.close()
        await refPool?.close()
        try await db?.drop()
        try await refDb?.drop()
    }

    let processor = BatchProcessor(validator: JobValidator(), ranker: ConsensusRanker(), fuser: TopCandidateFuser(), workerId: "w1")

    func testGeneratedBatchesReadBackExactlyLikeTheJobByJobReferenceAndStoringTwiceChangesNothing() async throws {
        var rng = SplitMix64(seed: 0x5EED_0018)
        var everStored: [String] = []
        var offset: Int64 = 0
        for round in 0..<14 {
            let size = round == 0 ? 1 : round == 1 ? 200 : Int.random(in: 1...200, using: &rng)
            var messages: [IncomingMessage] = []
            for _ in 0..<size {
                let value: [UInt8]?
                switch Int.random(in: 0..<100, using: &rng) {
                case 0..<8 where !messages.isEmpty:
                    // The same job again inside the batch (a producer retry).
                    value = messages.randomElement(using: &rng)!.value
                case 8..<18 where !everStored.isEmpty:
                    value = Self.jobJSON(id: everStored.randomElement(using: &rng)!, using: &rng)
                case 18..<30:
                    value = Self.rejectedValue(using: &rng)
                default:
                    value = Self.jobJSON(id: "g\(round)-\(messages.count)-\(rng.next() % 1000)", using: &rng)
                }
                let key: [UInt8]? = switch Int.random(in: 0..<5, using: &rng) {
                case 0: nil
                case 1: []
                case 2: [0xFF, 0x00, 0x5C, 0x22, 0x7B]  // not UTF-8, a NUL, a backslash, a quote, a brace
                default: Array(Self.nasty.randomElement(using: &rng)!.utf8)
                }
                messages.append(IncomingMessage(coordinates: MessageCoordinates(topic: "blend.jobs", partition: Int32(round % 3), offset: offset),
                                                key: key, value: value,
                                                timestamp: Bool.random(using: &rng) ? nil : Date(timeIntervalSince1970: 1_790_000_000 + Double(offset) * 0.001)))
                offset += 1
            }
            let validated = processor.validate(messages)
            // The lookup may miss some stored jobs (a concurrent worker stored them meanwhile):
            // the store must skip those itself.
            let existing = try await store.existingJobIds(validated.jobIds)
            let known = existing.filter { _ in Bool.random(using: &rng) }
            var outcomes = await processor.process(validated, isStored: known)
            // Outcomes of one job id twice in one call, the later one different: the first wins.
            for _ in 0..<Int.random(in: 0...3, using: &rng) {
                guard let pick = outcomes.filter({ $0.status != nil }).randomElement(using: &rng) else { break }
                outcomes.insert(processor.failed(pick, reason: "again: " + Self.nasty.randomElement(using: &rng)!),
                                at: Int.random(in: outcomes.firstIndex { $0.jobId == pick.jobId }! + 1...outcomes.count, using: &rng))
            }
            // Some jobs failed (their result could not be stored), with hostile reasons.
            for i in outcomes.indices where outcomes[i].status == .completed && Int.random(in: 0..<10, using: &rng) == 0 {
                outcomes[i] = processor.failed(outcomes[i], reason: Self.nasty.randomElement(using: &rng)!)
            }

            let written = try await store.store(outcomes, workerId: "w-\(round)")
            let expected = try await Self.referenceStore(outcomes, workerId: "w-\(round)", on: refPool)
            XCTAssertEqual(written, expected, "round \(round): the jobs newly written, in batch order")
            XCTAssertEqual(Set(written).count, written.count)
            for id in written { XCTAssertFalse(existing.contains(id), "round \(round): \(id) was stored before") }

            let dump = try await Self.dump(pool)
            let refDump = try await Self.dump(refPool)
            for table in refDump.keys.sorted() {
                XCTAssertEqual(dump[table]?.count, refDump[table]?.count, "round \(round): \(table) rows")
                for (got, want) in zip(dump[table] ?? [], refDump[table] ?? []) where got != want {
                    XCTFail("round \(round): \(table) differs:\n  batched   \(got)\n  reference \(want)")
                    break
                }
            }
            try await checkExactValues(of: outcomes, written: Set(written), round: round)

            let again = try await store.store(outcomes, workerId: "w-other")
            XCTAssertEqual(again, [], "round \(round): nothing is written twice")
            let dumpAgain = try await Self.dump(pool)
            XCTAssertEqual(dumpAgain, dump, "round \(round): storing the batch again changes no row")
            everStored += written
        }
        let perJob = try await pool.withConnection { conn in
            try await conn.query("""
                SELECT j.job_id, count(o.id) FILTER (WHERE o.topic = 'blend.events') AS events,
                       count(o.id) FILTER (WHERE o.topic = 'blend.jobs.dlq') AS dead, j.status
                  FROM jobs j LEFT JOIN outbox o ON o.job_id = j.job_id GROUP BY j.job_id, j.status
                """)
        }
        XCTAssertEqual(perJob.count, everStored.count)
        for row in perJob {
            let id: String = try row.decode("job_id"), status: String = try row.decode("status")
            XCTAssertEqual(try row.decode("events", as: Int.self), 1, "one event for \(id)")
            XCTAssertEqual(try row.decode("dead", as: Int.self), status == "rejected" ? 1 : 0, "dead letters of \(id)")
        }
        // The generator reached every kind of outcome and every dependant table.
        let statuses = Set(try perJob.map { try $0.decode("status", as: String.self) })
        XCTAssertEqual(statuses, ["completed", "failed", "rejected"])
        let final = try await Self.dump(pool)
        for table in ["candidates", "comparisons", "fusions"] { XCTAssertGreaterThan(final[table]?.count ?? 0, 100, table) }
        let total = try await pool.withConnection { try await $0.query("SELECT count(*) AS n FROM outbox")[0].decode("n", as: Int.self) }
        XCTAssertEqual(total, perJob.count + (try perJob.filter { try $0.decode("status", as: String.self) == "rejected" }.count))
    }

    /// The columns the reference comparison cannot vouch for alone (both paths could mangle a
    /// value the same way) against the Swift values themselves.
    private func checkExactValues(of outcomes: [JobOutcome], written: Set<String>, round: Int) async throws {
        var firsts: [String: JobOutcome] = [:]
        for o in outcomes where o.status != nil && firsts[o.jobId] == nil { firsts[o.jobId] = o }
        let ids = Array(written)
        let jobs = try await pool.withConnection { conn in
            try await conn.query("""
                SELECT job_id, status, error, instruction, input, metadata::text AS metadata, kafka_offset, worker_id
                  FROM jobs WHERE job_id = ANY(\(PostgresTextArray(ids))::text[])
                """)
        }
        XCTAssertEqual(jobs.count, ids.count)
        for row in jobs {
            let o = try XCTUnwrap(firsts[try row.decode("job_id", as: String.self)])
            XCTAssertEqual(try row.decode("status", as: String.self), o.status?.rawValue, o.jobId)
            XCTAssertEqual(try row.decode("error", as: String?.self), o.error ?? o.rejection?.description, o.jobId)
            XCTAssertEqual(try row.decode("instruction", as: String?.self), o.job?.instruction, o.jobId)
            XCTAssertEqual(try row.decode("input", as: String?.self), o.job?.input, o.jobId)
            XCTAssertEqual(try row.decode("metadata", as: String?.self), o.job?.metadata?.serialized(), o.jobId)
            XCTAssertEqual(try row.decode("kafka_offset", as: Int64.self), o.message.coordinates.offset, o.jobId)
        }
        let candidates = try await pool.withConnection { conn in
            try await conn.query("SELECT job_id, idx, model, text, rank FROM candidates WHERE job_id = ANY(\(PostgresTextArray(ids))::text[]) ORDER BY job_id, idx")
        }
        XCTAssertEqual(candidates.count, ids.reduce(0) { $0 + (firsts[$1]?.job?.candidates.count ?? 0) }, "round \(round): candidate rows")
        for row in candidates {
            let o = try XCTUnwrap(firsts[try row.decode("job_id", as: String.self)])
            let i: Int = try row.decode("idx")
            XCTAssertEqual(try row.decode("model", as: String.self), o.job!.candidates[i].model)
            XCTAssertEqual(try row.decode("text", as: String.self), o.job!.candidates[i].text)
            XCTAssertEqual(try row.decode("rank", as: Int?.self), o.rank?.ranks[i])
        }
        // Every logit read back through the comparisons view is the float the ranker computed, bit for bit.
        let logits = try await pool.withConnection { conn in
            try await conn.query("SELECT job_id, a, b, logit FROM comparisons WHERE job_id = ANY(\(PostgresTextArray(ids))::text[])")
        }
        XCTAssertEqual(logits.count, ids.reduce(0) { n, id in n + (firsts[id]?.rank?.comparisons.map { $0.count * ($0.count - 1) } ?? 0) },
                       "round \(round): comparison rows")
        for row in logits {
            let o = try XCTUnwrap(firsts[try row.decode("job_id", as: String.self)])
            let a: Int = try row.decode("a"), b: Int = try row.decode("b")
            let want = try XCTUnwrap(o.rank?.comparisons)[a, b]
            XCTAssertEqual(try row.decode("logit", as: Float.self).bitPattern, want.bitPattern, "\(o.jobId) ℓ(\(a), \(b))")
        }
        let outbox = try await pool.withConnection { conn in
            try await conn.query("SELECT job_id, topic, key, payload FROM outbox WHERE job_id = ANY(\(PostgresTextArray(ids))::text[]) ORDER BY id")
        }
        for row in outbox {
            let o = try XCTUnwrap(firsts[try row.decode("job_id", as: String.self)])
            let key = try row.decode("key", as: PostgresBytes?.self)?.bytes, payload = try row.decode("payload", as: PostgresBytes?.self)?.bytes
            if try row.decode("topic", as: String.self) == "blend.jobs.dlq" {
                XCTAssertEqual(key, o.message.key, "the dead letter keeps the original key of \(o.jobId)")
                XCTAssertEqual(payload, o.message.value, "the dead letter keeps the original value of \(o.jobId)")
            } else {
                XCTAssertEqual(key, Array(o.jobId.utf8))
                XCTAssertEqual(payload, try o.event!.jsonBytes())
            }
        }
        // Outbox rows come in batch order, a job's event before its dead letter.
        let order = try outbox.map { "\(try $0.decode("job_id", as: String.self)) \(try $0.decode("topic", as: String.self))" }
        var seen = Set<String>(), expectedOrder: [String] = []
        for o in outcomes where o.status != nil && seen.insert(o.jobId).inserted && written.contains(o.jobId) {
            expectedOrder.append("\(o.jobId) blend.events")
            if o.rejection != nil { expectedOrder.append("\(o.jobId) blend.jobs.dlq") }
        }
        XCTAssertEqual(order, expectedOrder, "round \(round): outbox order")
    }

    func testTheBatchedStatementsRejectNulBytesLikeThePerJobOnesAndStoreNothing() async throws {
        // The validator refuses NUL in job text, so only a hand-made outcome can carry one; the
        // database cannot hold it and the whole batch must fail before anything is written.
        var rng = SplitMix64(seed: 7)
        let good = await processor.process(processor.validate([IncomingMessage(
            coordinates: MessageCoordinates(topic: "blend.jobs", partition: 0, offset: 0), key: nil,
            value: Self.jobJSON(id: "ok-1", using: &rng), timestamp: nil)]), isStored: [])
        var poisoned = processor.failed(good[0], reason: "bad \u{0} reason")
        poisoned.jobId = "poison-1"
        do {
            try await store.store(good + [poisoned], workerId: "w1")
            XCTFail("a NUL byte cannot be stored")
        } catch let error as PostgresError {
            XCTAssertEqual(error.kind, .invalidParameter, "\(error)")
        }
        let n = try await pool.withConnection { try await $0.query("SELECT (SELECT count(*) FROM jobs) + (SELECT count(*) FROM outbox) AS n")[0].decode("n", as: Int.self) }
        XCTAssertEqual(n, 0)
        // The good job alone still stores (the worker falls back to job-by-job storage).
        let written = try await store.store(good, workerId: "w1")
        XCTAssertEqual(written, ["ok-1"])
    }

    // MARK: - Generated input

    /// Strings that break naive array literals, JSON or SQL quoting.
    static let nasty = [
        "plain", "\"", "\\", "\\\"", "\"\\", "{", "}", "{}", "{a,b}", ",", "a,b", "NULL", "null", "Null", " NULL ", "",
        " ", "  lead and trail  ", "tab\there", "line\nbreak\r\n", "'single'", "$1", "\\x41", "\\\\x41", "😀", "𝄞 music",
        "\u{10FFFF}", "é vs e\u{301}", "日本語", "\u{7F}\u{1}\u{1F}", "{\"json\": [1, 2]}", "ARRAY[1]", "\"quoted, with comma\"",
        String(repeating: "long ", count: 400), "--", "/* c */", "\\N", "NaN", "Infinity",
    ]

    static func jsonString(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case _ where scalar.value < 0x20: out += String(format: "\\u%04x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    static func jobJSON(id: String, using rng: inout SplitMix64) -> [UInt8] {
        let n = Int.random(in: 2...7, using: &rng)
        let candidates = (0..<n).map { i in
            // Mostly distinct texts (ranks differ), sometimes hostile ones.
            let text = Bool.random(using: &rng) ? nasty.randomElement(using: &rng)! + " \(i)" : "answer \(i) \(rng.next() % 97)"
            return "{\"model\":\(jsonString(nasty.randomElement(using: &rng)! + "m\(i)")),\"text\":\(jsonString(text))}"
        }
        var fields = ["\"job_id\":\(jsonString(id))", "\"instruction\":\(jsonString(nasty.randomElement(using: &rng)!))",
                      "\"candidates\":[\(candidates.joined(separator: ","))]"]
        if Bool.random(using: &rng) { fields.append("\"input\":\(jsonString(nasty.randomElement(using: &rng)!))") }
        if Bool.random(using: &rng) { fields.append("\"fuse\":{\"top_k\":\(Int.random(in: 1...3, using: &rng))}") }
        if Bool.random(using: &rng) { fields.append("\"rank\":{\"mode\":\"\(["max_logits", "max_wins", "bubble"].randomElement(using: &rng)!)\"}") }
        switch Int.random(in: 0..<4, using: &rng) {
        case 0: fields.append(#""metadata":{"big":18446744073709551617,"e":1e400,"z":-0,"f":1.0,"s":"NULL \" \\ {,}","a":[null,{}]}"#)
        case 1: fields.append("\"metadata\":{\"s\":\(jsonString(nasty.randomElement(using: &rng)!)),\"n\":  12.50 }")
        case 2: fields.append("\"metadata\":{}")
        default: break
        }
        return Array("{\(fields.joined(separator: ","))}".utf8)
    }

    /// Values the validator rejects: a null record, broken JSON, bytes that are not UTF-8, a
    /// NUL, an invalid job, and text fields it refuses.
    static func rejectedValue(using rng: inout SplitMix64) -> [UInt8]? {
        switch Int.random(in: 0..<7, using: &rng) {
        case 0: return nil
        case 1: return []
        case 2: return [0xFF, 0xFE, 0x00, 0x7B]
        case 3: return Array("not json \u{0} \(nasty.randomElement(using: &rng)!)".utf8)
        case 4: return Array(#"{"job_id":"r\#(rng.next() % 100_000)","instruction":"x","candidates":[{"model":"a","text":""}],"rank":{"mode":"borda"}}"#.utf8)
        case 5: return Array(#"{"job_id":"bad id \#(nasty.randomElement(using: &rng)!.prefix(5))","candidates":[]}"#.utf8)
        default: return Array(#"{"job_id":"n\#(rng.next() % 100_000)","instruction":"nul \u0000 inside","candidates":[{"model":"a","text":"x"},{"model":"b","text":"y"}]}"#.utf8)
        }
    }

    // MARK: - The per-job reference

    /// Every table as text, one line per row, in a fixed order (outbox in id order, ids and
    /// creation times left out: they differ between two databases by construction).
    static func dump(_ pool: PostgresPool) async throws -> [String: [String]] {
        let queries: [String: PostgresQuery] = [
            "jobs": """
                SELECT row(job_id, status, attempts, error, violations, instruction, input, rank_mode, fuse_options, metadata::text,
                           kafka_topic, kafka_partition, kafka_offset, worker_id, ranker, fuser, timings_ms, received_at)::text AS r
                  FROM jobs ORDER BY job_id
                """,
            "candidates": "SELECT row(c.*)::text AS r FROM candidates c ORDER BY job_id, idx",
            "comparisons": "SELECT row(c.*)::text AS r FROM comparisons c ORDER BY job_id, a, b",
            "fusions": "SELECT row(f.*)::text AS r FROM fusions f ORDER BY job_id",
            "outbox": """
                SELECT row(event_id, job_id, topic, key, payload, headers, attempts, claimed_until, last_error, sent_at,
                           next_attempt_at, failed_at, error_class)::text AS r
                  FROM outbox ORDER BY id
                """,
        ]
        var out: [String: [String]] = [:]
        for (table, query) in queries {
            out[table] = try await pool.withConnection { try await $0.query(query) }.map { try $0.decode("r", as: String.self) }
        }
        return out
    }

    /// What the store did before it batched: per job one INSERT … RETURNING, then one
    /// statement per dependant row set, all in one transaction. Returns the job ids written.
    /// (Since migration 0005 the candidates, the comparison matrix and the fusion are columns of the
    /// job row, each array element its own bound value; the views read them back as rows.)
    static func referenceStore(_ outcomes: [JobOutcome], workerId: String, on pool: PostgresPool) async throws -> [String] {
        try await pool.transaction { conn in
            var written: [String] = []
            for o in outcomes where o.status != nil {
                let job = o.job
                let c = o.message.coordinates
                let violations = try o.rejection.map { try PostgresJSON(encoding: $0.violations) }
                let fuseOptions = try job?.fuse.map { try PostgresJSON(encoding: $0) }
                let metadata = job?.metadata.map { PostgresJSON(text: $0.serialized()) }
                let timings = o.timingsMs.isEmpty ? nil : try PostgresJSON(encoding: o.timingsMs)
                let ranker = o.status == .rejected ? nil : o.models["ranker"], fuser = o.status == .rejected ? nil : o.models["fuser"]
                let candidates = job?.candidates ?? []
                let matrix = o.rank?.comparisons.flatMap { $0.count >= 2 ? $0 : nil }
                let logits = matrix.map { m in ComparisonMatrix.orderedPairs(count: m.count).map { Double(m[$0.left, $0.right]) } }
                var insert: PostgresQuery = """
                    INSERT INTO jobs (job_id, status, error, violations, instruction, input, rank_mode, fuse_options, metadata,
                                      kafka_topic, kafka_partition, kafka_offset, worker_id, ranker, fuser, timings_ms, received_at,
                                      candidate_models, candidate_texts, candidate_ranks, candidate_scores, comparison_size, comparison_logits,
                                      fusion_text, fusion_fuser, fusion_top_k, fusion_source_indexes, fusion_generated_tokens)
                    VALUES (\(o.jobId), \(o.status!.rawValue), \(o.error ?? o.rejection.map(\.description)), \(violations)::jsonb,
                            \(job?.instruction), \(job?.input), \(job?.rank.mode.rawValue), \(fuseOptions)::jsonb, \(metadata)::json,
                            \(c.topic), \(Int(c.partition)), \(c.offset), \(workerId), \(ranker), \(fuser), \(timings)::jsonb, \(o.message.timestamp),
                    """
                insert += array(candidates.isEmpty ? nil : candidates.map(\.model), "text") + ", "
                insert += array(candidates.isEmpty ? nil : candidates.map(\.text), "text") + ", "
                insert += array(candidates.isEmpty ? nil : o.rank?.ranks, "int") + ", "
                insert += array(candidates.isEmpty ? nil : o.rank.map { $0.scores.map(Double.init) }, "float8") + ", "
                let size: PostgresQuery = "\(matrix?.count), "
                insert += size + array(logits, "real") + ", "
                let fusion: PostgresQuery = "\(o.fusion?.text), \(o.fusion?.fuser), \(o.fusion?.topK), "
                let tokens: PostgresQuery = ", \(o.fusion?.generatedTokens))"
                insert += fusion + array(o.fusion?.sourceIndexes, "int") + tokens
                let rows = try await conn.query(insert + " ON CONFLICT (job_id) DO NOTHING RETURNING job_id")
                guard !rows.isEmpty else { continue }
                written.append(o.jobId)
                if let event = o.event {
                    try await conn.execute("""
                        INSERT INTO outbox (event_id, job_id, topic, key, payload, headers)
                        VALUES (\(event.id), \(o.jobId), 'blend.events', \(PostgresBytes(Array(o.jobId.utf8))), \(PostgresBytes(try event.jsonBytes())),
                                '{"content-type":"application/cloudevents+json"}'::jsonb)
                        ON CONFLICT (event_id) DO NOTHING
                        """)
                }
                if let rejection = o.rejection {
                    let reason = rejection.description
                    let headers: [String: String] = [
                        "blendd-rejected-codes": Set(rejection.violations.map(\.code.rawValue)).sorted().joined(separator: ","),
                        "blendd-rejected-reason": reason.count > ResultStore.maxReasonCharacters ? String(reason.prefix(ResultStore.maxReasonCharacters)) + "…" : reason,
                        "blendd-source-topic": c.topic,
                        "blendd-source-partition": String(c.partition),
                        "blendd-source-offset": String(c.offset),
                    ]
                    try await conn.execute("""
                        INSERT INTO outbox (event_id, job_id, topic, key, payload, headers)
                        VALUES (\(o.jobId + "/dlq"), \(o.jobId), 'blend.jobs.dlq', \(o.message.key.map(PostgresBytes.init)), \(o.message.value.map(PostgresBytes.init)),
                                \(try PostgresJSON(encoding: headers))::jsonb)
                        ON CONFLICT (event_id) DO NOTHING
                        """)
                }
            }
            return written
        }
    }

    /// `ARRAY[$1, $2, …]::type[]`, each element its own bound value (nil: NULL).
    static func array<T: PostgresEncodable>(_ values: [T]?, _ type: String) -> PostgresQuery {
        guard let values else { return PostgresQuery(unsafeSQL: "NULL::\(type)[]") }
        var out = PostgresQuery(unsafeSQL: "ARRAY[")
        for (i, value) in values.enumerated() {
            if i > 0 { out += ", " }
            let element: PostgresQuery = "\(value)"
            out += element + PostgresQuery(unsafeSQL: "::\(type)")
        }
        return out + PostgresQuery(unsafeSQL: "]::\(type)[]")
    }
}
