import BlendCore
import BlendTestSupport
import Foundation
import Inference
import Kafka
import Postgres
import XCTest
@testable import Worker

/// The worker against the embedded broker and a real PostgreSQL database.
final class WorkerPipelineTests: WorkerIntegrationTestCase {
    override class var partitions: Int32 { 4 }

    func config(group: String = "blendd", workerId: String = "w-test") -> BlendConfiguration {
        var c = configuration(workerId: workerId, group: group)
        c.batching.maxJobs = 8
        c.batching.maxWaitMilliseconds = 20
        return c
    }

    static func job(_ id: String, variant: Int) -> String {
        """
        {"job_id":"\(id)","instruction":"Which is right? \(variant)","candidates":[{"model":"a","text":"The answer is \(variant)."},
         {"model":"b","text":"I think the answer is \(variant)."},{"model":"c","text":"Bananas \(variant * 7)."}],"fuse":{"top_k":2}}
        """.replacingOccurrences(of: "\n", with: "")
    }

    /// 40 valid jobs, 2 invalid, and 5 valid ones sent twice.
    func sendJobs() async throws -> (valid: Set<String>, invalid: Set<String>) {
        let producer = try KafkaProducer(configuration: broker.configuration)
        var messages: [ProducerMessage] = []
        var valid = Set<String>()
        for i in 0..<40 {
            messages.append(ProducerMessage(topic: "blend.jobs", key: "job-\(i)", value: Array(Self.job("job-\(i)", variant: i).utf8)))
            valid.insert("job-\(i)")
        }
        for i in 0..<5 { messages.append(ProducerMessage(topic: "blend.jobs", key: "job-\(i)", value: Array(Self.job("job-\(i)", variant: i).utf8))) }
        messages.append(ProducerMessage(topic: "blend.jobs", key: "bad-1", value: Array(#"{"job_id":"bad-1","candidates":[]}"#.utf8)))
        messages.append(ProducerMessage(topic: "blend.jobs", key: "bad-2", value: Array("\u{FF}garbage".utf8)))
        for r in try await producer.send(messages) { _ = try r.get() }
        return (valid, ["bad-1"])
    }

    func eventsById(expected: Int, within seconds: Double) async throws -> [String: [String: Any]] {
        let consumer = try KafkaConsumer(configuration: broker.configuration, options: .init(groupId: "event-reader-\(UUID())", topics: ["blend.events"]))
        var events: [String: [String: Any]] = [:]
        var duplicates = 0
        let deadline = Date().addingTimeInterval(seconds)
        while events.count < expected && Date() < deadline {
            for m in await consumer.nextBatch(maxCount: 100, maxWait: .milliseconds(200)) {
                let object = try JSONSerialization.jsonObject(with: Data(m.bytes)) as! [String: Any]
                let id = object["id"] as! String
                if events[id] != nil { duplicates += 1 }
                events[id] = object
            }
        }
        await consumer.close()
        XCTAssertEqual(duplicates, 0, "no event is published twice in a clean run")
        return events
    }

    func testEveryJobGetsOneStoredOutcomeAndOneEventAndRejectsGoToTheDeadLetterTopic() async throws {
        let (valid, _) = try await sendJobs()
        let service = try WorkerService(config: config(), ranker: ConsensusRanker(), fuser: TopCandidateFuser())
        let running = Task { try await service.run() }
        let events = try await eventsById(expected: 42, within: 60)
        await service.stop()
        try await running.value

        XCTAssertEqual(Set(events.keys.filter { $0.hasSuffix("/completed") }), Set(valid.map { "\($0)/completed" }))
        let rejected = events.keys.filter { $0.hasSuffix("/rejected") }.sorted()
        XCTAssertEqual(rejected.count, 2)
        XCTAssertEqual(rejected.first, "bad-1/rejected")
        XCTAssertTrue(rejected.last!.hasPrefix("kafka/blend.jobs/"), "undecodable messages get an id from their coordinates: \(rejected)")
        let completed = try XCTUnwrap(events["job-3/completed"])
        XCTAssertEqual(completed["type"] as? String, "blend.job.completed")
        XCTAssertEqual(completed["source"] as? String, "blendd/w-test")
        let data = completed["data"] as! [String: Any]
        XCTAssertEqual((data["ranking"] as! [[String: Any]]).count, 3)
        XCTAssertEqual((data["fused"] as! [String: Any])["fuser"] as? String, "top1")

        let conn = try await PostgresConnection.connect(db.url)
        let counts = try await conn.query("SELECT status, count(*) AS n FROM jobs GROUP BY status ORDER BY status")
        XCTAssertEqual(try counts.map { "\(try $0.decode("status", as: String.self))=\(try $0.decode("n", as: Int.self))" }, ["completed=40", "rejected=2"])
        let unsent = try await conn.query("SELECT count(*) AS n FROM outbox WHERE sent_at IS NULL")[0].decode("n", as: Int.self)
        XCTAssertEqual(unsent, 0, "the relay published everything before the worker stopped")
        let dlq = try await conn.query("SELECT count(*) AS n FROM outbox WHERE topic = 'blend.jobs.dlq' AND sent_at IS NOT NULL")[0].decode("n", as: Int.self)
        XCTAssertEqual(dlq, 2)
        let worker = try await conn.query("SELECT state FROM workers WHERE worker_id = 'w-test'")[0].decode("state", as: String.self)
        XCTAssertEqual(worker, "stopped")
        await conn.close()

        let lag = try await KafkaAdmin(configuration: broker.configuration).consumerGroupLag(groupId: "blendd", topic: "blend.jobs")
        XCTAssertEqual(lag.map(\.lag).reduce(0, +), 0, "every offset is committed after a clean stop")
        XCTAssertEqual(service.metrics.value(MetricNames.redeliveries), 5, "the 5 repeated jobs were acknowledged without recomputation")
    }

    func testAFatalKafkaErrorStopsTheWorkerAndMakesRunThrow() async throws {
        _ = try await sendJobs()
        for client in ["producer", "consumer"] {
            let service = try WorkerService(config: config(group: "fatal-\(client)", workerId: "w-fatal-\(client)"),
                                            ranker: ConsensusRanker(), fuser: TopCandidateFuser())
            let running = Task { try await service.run() }
            try await eventually(within: 60, "the \(client) test worker is assigned partitions") { !service.consumer.assignment.isEmpty }
            if client == "producer" {
                service.producer.simulateFatalError(reason: "test: fenced producer")
            } else {
                service.consumer.simulateFatalError(reason: "test: fenced static member")
            }
            do {
                try await running.value
                XCTFail("run() returned normally after a fatal \(client) error")
            } catch let error as WorkerError {
                guard case .kafkaFatal(let failed, _) = error else { return XCTFail("unexpected \(error)") }
                XCTAssertEqual(failed, client)
                XCTAssertTrue(error.description.contains("failed fatally"), error.description)
            }
        }
    }

    func testARedeliveredBatchIsAcknowledgedWithoutRecomputationOrSecondEvents() async throws {
        _ = try await sendJobs()
        let first = try WorkerService(config: config(group: "first"), ranker: ConsensusRanker(), fuser: TopCandidateFuser())
        let run1 = Task { try await first.run() }
        _ = try await eventsById(expected: 42, within: 60)
        await first.stop()
        try await run1.value

        // A second group reads every message again: the whole topic is a redelivery.
        let second = try WorkerService(config: config(group: "second", workerId: "w-second"), ranker: ConsensusRanker(), fuser: TopCandidateFuser())
        let run2 = Task { try await second.run() }
        let deadline = Date().addingTimeInterval(60)
        while (second.metrics.value(MetricNames.redeliveries) ?? 0) < 47 && Date() < deadline { try await Task.sleep(for: .milliseconds(100)) }
        await second.stop()
        try await run2.value
        XCTAssertEqual(second.metrics.value(MetricNames.redeliveries), 47)
        XCTAssertNil(second.metrics.value(MetricNames.jobs, labels: ["status": "completed"]))
        let conn = try await PostgresConnection.connect(db.url)
        let outbox = try await conn.query("SELECT count(*) AS n FROM outbox")[0].decode("n", as: Int.self)
        XCTAssertEqual(outbox, 44, "42 events and 2 dead-letter copies, none added by the redelivery")
        let workers = try await conn.query("SELECT count(*) AS n FROM jobs WHERE worker_id = 'w-second'")[0].decode("n", as: Int.self)
        XCTAssertEqual(workers, 0)
        await conn.close()
    }

    func testTheFixtureCheckpointsRunInTheWorkerEndToEnd() async throws {
        let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")
        let ranker = try PairRMRanker(directory: fixtures.appendingPathComponent("pairrm-tiny").path)
        let fuser = try GenFuser(directory: fixtures.appendingPathComponent("t5-tiny").path)
        let producer = try KafkaProducer(configuration: broker.configuration)
        let jobs = (0..<6).map { i in
            #"{"job_id":"m-\#(i)","instruction":"Which is right? \#(i)","candidates":[{"model":"a","text":"The answer is \#(i)."},{"model":"b","text":"I think \#(i)."},{"model":"c","text":"Bananas."}],"rank":{"mode":"\#(i % 2 == 0 ? "max_logits" : "bubble")"},"fuse":{"top_k":2,"max_new_tokens":6}}"#
        }
        for r in try await producer.send(jobs.enumerated().map { ProducerMessage(topic: "blend.jobs", key: "m-\($0.offset)", value: Array($0.element.utf8)) }) {
            _ = try r.get()
        }
        let service = try WorkerService(config: config(), ranker: ranker, fuser: fuser)
        let running = Task { try await service.run() }
        let events = try await eventsById(expected: 6, within: 60)
        await service.stop()
        try await running.value

        XCTAssertEqual(Set(events.keys), Set((0..<6).map { "m-\($0)/completed" }))
        let data = try XCTUnwrap(events["m-0/completed"]?["data"] as? [String: Any])
        let fused = try XCTUnwrap(data["fused"] as? [String: Any])
        XCTAssertTrue((fused["fuser"] as? String)?.hasPrefix("genfuser:t5-tiny@") == true, "\(fused)")
        let conn = try await PostgresConnection.connect(db.url)
        let rows = try await conn.query("SELECT job_id, ranker, fuser FROM jobs ORDER BY job_id")
        XCTAssertEqual(rows.count, 6)
        for row in rows {
            XCTAssertTrue(try row.decode("ranker", as: String.self).hasPrefix("pairrm:pairrm-tiny@"))
            XCTAssertTrue(try row.decode("fuser", as: String.self).hasPrefix("genfuser:t5-tiny@"))
        }
        // max_logits jobs store their full matrix: 3 candidates, 6 ordered pairs each.
        let pairs = try await conn.query("SELECT count(*) AS n FROM comparisons")[0].decode("n", as: Int.self)
        XCTAssertEqual(pairs, 3 * 6)
        await conn.close()
        XCTAssertEqual(service.metrics.value(MetricNames.rankedPairs), 3 * 6 + 3 * 4, "matrix pairs plus 2(N−1) bubble passes")
        let padding = try XCTUnwrap(service.metrics.value(MetricNames.paddingWaste), "the model ranker reports the padding it avoided")
        XCTAssertTrue(padding >= 0 && padding < 1, "\(padding)")
    }
}
