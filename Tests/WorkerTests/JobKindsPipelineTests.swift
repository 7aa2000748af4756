import BlendCore
import BlendTestSupport
import Foundation
import Inference
import Kafka
import Postgres
import XCTest
@testable import Worker

/// Every job kind from the jobs topic (embedded broker) through the real worker and the fixture PairRM to
/// PostgreSQL (rows and views of migration 0003) and to its own event on the events topic.
final class JobKindsPipelineTests: WorkerIntegrationTestCase {
    func config() -> BlendConfiguration {
        var c = configuration(workerId: "w-kinds")
        c.batching.maxJobs = 16
        c.batching.maxWaitMilliseconds = 200
        return c
    }

    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")
    static let candidates = #"[{"model":"a","text":"Paris is the capital of France."},{"model":"b","text":"Lyon."},{"model":"c","text":"The capital is Paris, on the Seine, and it is large."}]"#
    static let conversation = #"""
    {"a":[{"role":"USER","content":"Capital of France?"},{"role":"ASSISTANT","content":"Paris."},{"role":"USER","content":"And Italy?"},{"role":"ASSISTANT","content":"Rome."}],
     "b":[{"role":"USER","content":"Capital of France?"},{"role":"ASSISTANT","content":"Lyon."},{"role":"USER","content":"And Italy?"},{"role":"ASSISTANT","content":"Milan."}]}
    """#.replacingOccurrences(of: "\n", with: "")

    static let jobs: [String: String] = [
        "blend-1": #"{"job_id":"blend-1","instruction":"Capital of France?","candidates":\#(candidates),"fuse":false}"#,
        "cmp-1": #"{"job_id":"cmp-1","task":"compare","instruction":"Capital of France?","pairs":[{"a":"Paris.","b":"Lyon."},{"a":"Same.","b":"Same."},{"a":"Rome.","b":"Paris, of course."}],"metadata":{"tenant":"rlhf","n":18446744073709551617}}"#,
        "cmp-2": #"{"job_id":"cmp-2","task":"compare","conversations":[\#(conversation)],"compare":{"mode":"[B,A]"}}"#,
        "bon-1": #"{"job_id":"bon-1","task":"best_of_n","instruction":"Capital of France?","candidates":\#(candidates),"rank":{"seed":7}}"#,
        "won-1": #"{"job_id":"won-1","task":"worst_of_n","instruction":"Capital of France?","candidates":\#(candidates),"select":{"method":"full"}}"#,
        "rwd-1": #"{"job_id":"rwd-1","task":"reward","instruction":"Capital of France?","candidates":\#(candidates),"reward":{"reference":"median_length"}}"#,
        "rwd-2": #"{"job_id":"rwd-2","task":"reward","instruction":"Capital of France?","candidates":\#(candidates),"reward":{"reference_text":"Paris."}}"#,
        "bad-1": #"{"job_id":"bad-1","task":"compare","instruction":"q","pairs":[{"a":"x","b":"y"}],"fuse":true}"#,
    ]

    /// Events as read exactly (numbers as their literal text), by job id: Foundation's JSONSerialization may
    /// read a 17-digit double one unit in the last place off, and these values are compared bit for bit.
    var exactEvents: [String: ExactJSON] = [:]

    /// A number of an exactly read event, by path of member names and array indexes.
    func number(_ jobId: String, _ path: [Any]) -> Double? {
        var v: ExactJSON? = exactEvents[jobId]
        for step in path {
            if let key = step as? String { v = v?[key] } else if let i = step as? Int, case .array(let items)? = v { v = i < items.count ? items[i] : nil }
        }
        guard case .number(let literal)? = v else { return nil }
        return Double(literal)
    }

    func events(expected: Int, within seconds: Double) async throws -> [String: [String: Any]] {
        let consumer = try KafkaConsumer(configuration: broker.configuration, options: .init(groupId: "reader-\(UUID())", topics: ["blend.events"]))
        var events: [String: [String: Any]] = [:]
        let deadline = Date().addingTimeInterval(seconds)
        while events.count < expected && Date() < deadline {
            for m in await consumer.nextBatch(maxCount: 100, maxWait: .milliseconds(200)) {
                let object = try JSONSerialization.jsonObject(with: Data(m.bytes)) as! [String: Any]
                events[object["subject"] as! String] = object
                exactEvents[object["subject"] as! String] = try JSONParser.parse(m.bytes).value
            }
        }
        await consumer.close()
        return events
    }

    func testEveryKindRunsFromKafkaToPostgreSQLToItsOwnEvent() async throws {
        let ranker = try PairRMRanker(directory: Self.fixtures.appendingPathComponent("pairrm-tiny").path)
        let producer = try KafkaProducer(configuration: broker.configuration)
        for r in try await producer.send(Self.jobs.sorted { $0.key < $1.key }.map { ProducerMessage(topic: "blend.jobs", key: $0.key, value: Array($0.value.utf8)) }) {
            _ = try r.get()
        }
        let service = try WorkerService(config: config(), ranker: ranker, fuser: TopCandidateFuser())
        let running = Task { try await service.run() }
        let events = try await events(expected: Self.jobs.count, within: 90)
        await service.stop()
        try await running.value
        XCTAssertEqual(Set(events.keys), Set(Self.jobs.keys))

        // What the ranker answers for each job alone: the worker's mixed batch must give the same bits.
        let validator = JobValidator()
        var expected: [String: TaskOutcome] = [:]
        for (id, json) in Self.jobs where id != "bad-1" {
            let job = try validator.validate(Array(json.utf8)).get()
            expected[id] = try ranker.runNow([RankTask(job: job)]).results[0].get()
        }

        // Types: one per kind; blend's and the failures' types are unchanged.
        let types = events.mapValues { $0["type"] as? String }
        XCTAssertEqual(types["blend-1"], "blend.job.completed")
        XCTAssertEqual(types["cmp-1"], "blend.job.compare.completed")
        XCTAssertEqual(types["cmp-2"], "blend.job.compare.completed")
        XCTAssertEqual(types["bon-1"], "blend.job.best_of_n.completed")
        XCTAssertEqual(types["won-1"], "blend.job.worst_of_n.completed")
        XCTAssertEqual(types["rwd-1"], "blend.job.reward.completed")
        XCTAssertEqual(types["bad-1"], "blend.job.rejected")
        let blendData = try XCTUnwrap(events["blend-1"]?["data"] as? [String: Any])
        XCTAssertNil(blendData["task"], "a blend event keeps its shape")
        XCTAssertNotNil(blendData["ranking"])
        let rejected = try XCTUnwrap(events["bad-1"]?["data"] as? [String: Any])
        XCTAssertEqual((rejected["violations"] as? [[String: Any]])?.first?["code"] as? String, "field_not_for_task")

        let conn = try await PostgresConnection.connect(db.url)
        let tasks = try await conn.query("SELECT job_id, task, rank_mode, fuser FROM jobs ORDER BY job_id")
        XCTAssertEqual(try tasks.map { "\(try $0.decode("job_id", as: String.self))=\(try $0.decode("task", as: String.self))" },
                       ["bad-1=blend", "blend-1=blend", "bon-1=best_of_n", "cmp-1=compare", "cmp-2=compare", "rwd-1=reward", "rwd-2=reward", "won-1=worst_of_n"])
        for row in tasks where try row.decode("task", as: String.self) != "blend" {
            XCTAssertNil(try row.decode("rank_mode", as: String?.self))
            XCTAssertNil(try row.decode("fuser", as: String?.self), "only blend jobs are fused")
        }

        // compare: event, rows and view agree with the ranker alone, bit for bit.
        guard case .compare(let cmp1)? = expected["cmp-1"], case .compare(let cmp2)? = expected["cmp-2"] else { return XCTFail() }
        let data1 = try XCTUnwrap(events["cmp-1"]?["data"] as? [String: Any])
        XCTAssertEqual(data1["task"] as? String, "compare")
        let compare1 = try XCTUnwrap(data1["compare"] as? [String: Any])
        XCTAssertEqual(compare1["mode"] as? String, "[A,B]+[B,A]")
        XCTAssertEqual(compare1["forward_passes"] as? Int, 6)
        let pairs1 = try XCTUnwrap(compare1["pairs"] as? [[String: Any]])
        XCTAssertEqual(pairs1.count, 3)
        for (k, (p, j)) in zip(pairs1, cmp1.judgements).enumerated() {
            XCTAssertEqual(number("cmp-1", ["data", "compare", "pairs", k, "logit"]), Double(j.logit))
            XCTAssertEqual(number("cmp-1", ["data", "compare", "pairs", k, "reference_logit"]), Double(j.referenceLogit))
            XCTAssertEqual(number("cmp-1", ["data", "compare", "pairs", k, "probability"]), j.probability)
            XCTAssertEqual(p["verdict"] as? String, j.verdict.rawValue)
        }
        XCTAssertEqual(pairs1[1]["verdict"] as? String, "tie", "identical A and B")
        XCTAssertTrue(String(decoding: try JSONSerialization.data(withJSONObject: data1["metadata"]!), as: UTF8.self).contains("tenant"))
        let view = try await conn.query("""
            SELECT job_id, pair, mode, a, b, logit, reference_logit, probability, verdict, conversation, source
              FROM compare_results ORDER BY job_id, pair
            """)
        XCTAssertEqual(view.count, 4)
        for (row, j) in zip(view.prefix(3), cmp1.judgements) {
            XCTAssertEqual(try row.decode("logit", as: Float.self), j.logit)
            XCTAssertEqual(try row.decode("reference_logit", as: Float.self), j.referenceLogit)
            XCTAssertEqual(try row.decode("probability", as: Double.self), j.probability)
            XCTAssertEqual(try row.decode("verdict", as: String.self), j.verdict.rawValue)
            XCTAssertNil(try row.decode("conversation", as: PostgresJSON?.self))
            XCTAssertEqual(try row.decode("source", as: String.self), "Capital of France?")
        }
        let conv = view[3]
        XCTAssertEqual(try conv.decode("mode", as: String.self), "[B,A]")
        XCTAssertEqual(try conv.decode("a", as: String.self), "<Response 1>: Paris.\n<Response 2>: Rome.")
        XCTAssertTrue(try conv.decode("source", as: String.self).hasPrefix(ConversationFlattening.instruction + "USER: Capital of France?\nAssistant: <Response 1>"))
        XCTAssertEqual(try conv.decode("logit", as: Float.self), cmp2.judgements[0].logit)
        XCTAssertEqual(try conv.decode("reference_logit", as: Float.self), -cmp2.judgements[0].logit, "[B,A]: the reference's un-negated ℓ(B,A)")
        let turns = try XCTUnwrap(try conv.decode("conversation", as: PostgresJSON?.self)).decoded(as: BlendJob.ConversationPair.self)
        XCTAssertEqual(turns.a.count, 4)

        // best_of_n / worst_of_n
        guard case .select(let bon)? = expected["bon-1"], case .select(let won)? = expected["won-1"] else { return XCTFail() }
        let selection = try XCTUnwrap((events["bon-1"]?["data"] as? [String: Any])?["selection"] as? [String: Any])
        XCTAssertEqual(selection["index"] as? Int, bon.index)
        XCTAssertEqual(selection["elimination_order"] as? [Int], bon.eliminationOrder)
        XCTAssertEqual(selection["forward_passes"] as? Int, 4)
        XCTAssertEqual(selection["goal"] as? String, "best")
        let best = try await conn.query("SELECT selected, selected_model, selected_text, method, elimination_order, scores, forward_passes FROM best_of_n_results")
        XCTAssertEqual(best.count, 1)
        XCTAssertEqual(try best[0].decode("selected", as: Int.self), bon.index)
        XCTAssertEqual(try best[0].decode("elimination_order", as: [Int].self), bon.eliminationOrder)
        XCTAssertEqual(try best[0].decode("method", as: String.self), "bubble")
        XCTAssertEqual(try best[0].decode("selected_model", as: String.self), ["a", "b", "c"][bon.index])
        let worst = try await conn.query("SELECT selected, scores, forward_passes, method FROM worst_of_n_results")
        XCTAssertEqual(worst.count, 1)
        XCTAssertEqual(try worst[0].decode("selected", as: Int.self), won.index)
        XCTAssertEqual(try worst[0].decode("scores", as: [Double].self), won.scores!.map(Double.init))
        XCTAssertEqual(try worst[0].decode("forward_passes", as: Int.self), 6)
        XCTAssertEqual(((events["won-1"]?["data"] as? [String: Any])?["selection"] as? [String: Any])?["goal"] as? String, "worst")

        // reward
        guard case .reward(let rwd1)? = expected["rwd-1"], case .reward(let rwd2)? = expected["rwd-2"] else { return XCTFail() }
        let reward = try XCTUnwrap((events["rwd-1"]?["data"] as? [String: Any])?["reward"] as? [String: Any])
        XCTAssertEqual((reward["reference"] as? [String: Any])?["mode"] as? String, "median_length")
        XCTAssertEqual((reward["reference"] as? [String: Any])?["index"] as? Int, rwd1.referenceIndex)
        XCTAssertEqual((0..<3).compactMap { number("rwd-1", ["data", "reward", "candidates", $0, "reward"]) }, rwd1.rewards.map(Double.init))
        let rewards = try await conn.query("SELECT job_id, idx, model, reward, reference_mode, reference_index, reference_text FROM reward_results ORDER BY job_id, idx")
        XCTAssertEqual(rewards.count, 6)
        for (row, r) in zip(rewards, rwd1.rewards + rwd2.rewards) { XCTAssertEqual(try row.decode("reward", as: Double.self), Double(r)) }
        XCTAssertEqual(try rewards[0].decode("reference_index", as: Int?.self), rwd1.referenceIndex)
        XCTAssertEqual(try rewards[rwd1.referenceIndex!].decode("reward", as: Double.self), 0)
        XCTAssertEqual(try rewards[3].decode("reference_text", as: String?.self), "Paris.")
        XCTAssertNil(try rewards[3].decode("reference_mode", as: String?.self))

        // The outbox row is the event; the blend view still serves blend jobs.
        let unsent = try await conn.query("SELECT count(*) AS n FROM outbox WHERE sent_at IS NULL")[0].decode("n", as: Int.self)
        XCTAssertEqual(unsent, 0)
        let blend = try await conn.query("SELECT best_model FROM blend_results WHERE job_id = 'blend-1'")
        XCTAssertEqual(blend.count, 1)
        await conn.close()
        XCTAssertEqual(service.metrics.value(MetricNames.rankedPairs), 6 + 6 + 1 + 4 + 6 + 6 + 6,
                       "blend matrix, compare pairs (both / [B,A]), bubble, full, and 2N reward passes each")
    }

    /// Storing a batch of every kind twice writes each kind's rows once (the outbox pattern's idempotency).
    func testStoringTheSameKindsTwiceLeavesOneSetOfRows() async throws {
        let processor = BatchProcessor(validator: JobValidator(), ranker: ConsensusRanker(), fuser: TopCandidateFuser(), workerId: "w1")
        let messages = Self.jobs.sorted { $0.key < $1.key }.enumerated().map { i, job in
            IncomingMessage(coordinates: MessageCoordinates(topic: "blend.jobs", partition: 0, offset: Int64(i)), key: Array(job.key.utf8),
                            value: Array(job.value.utf8), timestamp: nil)
        }
        let outcomes = await processor.process(processor.validate(messages), isStored: [])
        let pool = PostgresPool(url: db.url, maxConnections: 2)
        let store = ResultStore(pool: pool, eventsTopic: "blend.events", dlqTopic: "blend.jobs.dlq")
        let first = try await store.store(outcomes, workerId: "w1")
        let second = try await store.store(outcomes, workerId: "w1")
        XCTAssertEqual(first.count, Self.jobs.count)
        XCTAssertEqual(second, [])
        let conn = try await PostgresConnection.connect(db.url)
        for (table, rows) in [("pair_judgements", 4), ("selections", 2), ("reward_references", 2), ("rewards", 6)] {
            let n = try await conn.query("SELECT count(*) AS n FROM \(identifier: table)")[0].decode("n", as: Int.self)
            XCTAssertEqual(n, rows, table)
        }
        await conn.close()
        await pool.close()
    }
}
