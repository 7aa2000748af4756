import BlendCore
import BlendTestSupport
import Foundation
import Inference
import Kafka
import Postgres
import XCTest
@testable import Worker

/// Infrastructure faults in the middle of a run.
final class WorkerOutageTests: XCTestCase {
    func testPostgresDownForTenSecondsPausesRetriesAndResumesWithoutLossOrDuplicates() async throws {
        guard TestDatabase.serverURL != nil, ProcessInfo.processInfo.environment["BLENDD_TEST_PG_DIR"] != nil else {
            throw XCTSkip(TestDatabase.skipMessage)
        }
        let db = try await TestDatabase.migrated()
        let broker = try EmbeddedKafkaBroker(brokers: 1)
        for (topic, partitions) in [("blend.jobs", Int32(2)), ("blend.events", 2), ("blend.jobs.dlq", 1)] {
            try broker.createTopic(topic, partitions: partitions)
        }
        let total = 200
        let filler = String(repeating: "the quick brown fox jumps over the lazy dog ", count: 30)
        let producer = try KafkaProducer(configuration: broker.configuration)
        let messages = (0..<total).map { i in
            let candidates = (0..<8).map { c in #"{"model":"m\#(c)","text":"\#(filler)\#(i) \#(c * i)"}"# }.joined(separator: ",")
            return ProducerMessage(topic: "blend.jobs", key: "out-\(i)", value: Array(#"{"job_id":"out-\#(i)","instruction":"Q","candidates":[\#(candidates)]}"#.utf8))
        }
        for r in try await producer.send(messages) { _ = try r.get() }

        var config = BlendConfiguration()
        config.workerId = "w-outage"
        config.kafka.bootstrapServers = broker.bootstrapServers
        config.postgres.url = db.url
        config.batching.maxJobs = 4
        config.kafka.maxBufferedMessages = 20
        config.retry.initialMilliseconds = 100
        config.retry.maxMilliseconds = 1000
        config.outbox.pollMilliseconds = 50
        let service = try WorkerService(config: config, ranker: ConsensusRanker(), fuser: TopCandidateFuser())
        let running = Task { try await service.run() }

        let observer = PostgresPool(url: db.url, maxConnections: 1)
        func count(_ sql: PostgresQuery) async -> Int? {
            try? await observer.withConnection { try await $0.query(sql)[0].decode(0, as: Int.self) }
        }
        try await eventually(within: 60, "12 jobs stored before the outage") { (await count("SELECT count(*) FROM jobs") ?? 0) >= 12 }
        XCTAssertTrue(stopTestServer(), "pg_ctl stop")
        try await Task.sleep(for: .seconds(10))
        let retriesWhileDown = service.metrics.value(MetricNames.transientRetries, labels: ["operation": "store"]) ?? 0
            + (service.metrics.value(MetricNames.transientRetries, labels: ["operation": "lookup"]) ?? 0)
        XCTAssertTrue(startTestServer(), "pg_ctl start")
        XCTAssertGreaterThan(retriesWhileDown, 0, "the worker retried while the database was down")

        try await eventually(within: 120, "all jobs stored and announced after the outage") {
            let jobs = await count("SELECT count(*) FROM jobs")
            let unsent = await count("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
            return jobs == total && unsent == 0
        }
        await service.stop()
        try await running.value

        let events = await count("SELECT count(*) FROM outbox WHERE topic = 'blend.events'")
        let distinct = await count("SELECT count(DISTINCT job_id) FROM outbox WHERE topic = 'blend.events'")
        XCTAssertEqual(events, total, "one event per job, none duplicated by retries")
        XCTAssertEqual(distinct, total)
        let candidates = await count("SELECT count(*) FROM candidates")
        XCTAssertEqual(candidates, total * 8)
        let lag = try await KafkaAdmin(configuration: broker.configuration).consumerGroupLag(groupId: "blendd", topic: "blend.jobs")
        XCTAssertEqual(lag.map(\.lag).reduce(0, +), 0)
        await observer.close()
        try await db.drop()
    }

    func testSIGTERMMidBatchExitsZeroWithinTheDrainTimeAndLosesNothing() async throws {
        guard TestDatabase.serverURL != nil else { throw XCTSkip(TestDatabase.skipMessage) }
        let db = try await TestDatabase.migrated()
        let broker = try EmbeddedKafkaBroker(brokers: 1)
        for (topic, partitions) in [("blend.jobs", Int32(2)), ("blend.events", 2), ("blend.jobs.dlq", 1)] {
            try broker.createTopic(topic, partitions: partitions)
        }
        let total = 120
        let filler = String(repeating: "pack my box with five dozen liquor jugs ", count: 60)
        let producer = try KafkaProducer(configuration: broker.configuration)
        let messages = (0..<total).map { i in
            let candidates = (0..<12).map { c in #"{"model":"m\#(c)","text":"\#(filler)\#(i) \#(c)"}"# }.joined(separator: ",")
            return ProducerMessage(topic: "blend.jobs", key: "t-\(i)", value: Array(#"{"job_id":"t-\#(i)","instruction":"Q","candidates":[\#(candidates)]}"#.utf8))
        }
        for r in try await producer.send(messages) { _ = try r.get() }
        var env = ProcessInfo.processInfo.environment
        env["BLENDD_KAFKA_BOOTSTRAP"] = broker.bootstrapServers
        env["BLENDD_DATABASE_URL"] = db.url
        env["BLENDD_BATCHING_MAX_JOBS"] = "8"
        env["BLENDD_SHUTDOWN_DRAIN_SECONDS"] = "20"
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("blendd-term-\(UUID().uuidString).log").path
        let pid = spawnProcess([RepositoryLayout.blenddExecutable.path, "worker"], stderrPath: log, environment: env)!
        let conn = try await PostgresConnection.connect(db.url)
        func stored() async throws -> Int { try await conn.query("SELECT count(*) AS n FROM jobs")[0].decode("n") }
        try await eventually(within: 60, "a first batch stored") { try await stored() >= 8 }
        let signalled = Date()
        kill(pid, SIGTERM)
        XCTAssertEqual(waitForExit(pid), 0, (try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
        XCTAssertLessThan(Date().timeIntervalSince(signalled), 20 + 5, "exits within the drain time")

        // Everything stored was announced and committed; the rest is still on the topic.
        let storedAtExit = try await stored()
        let unsent: Int = try await conn.query("SELECT count(*) AS n FROM outbox WHERE sent_at IS NULL")[0].decode("n")
        XCTAssertEqual(unsent, 0, "the outbox was flushed before exit")
        let lag = try await KafkaAdmin(configuration: broker.configuration).consumerGroupLag(groupId: "blendd", topic: "blend.jobs")
        let workerLog = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        XCTAssertEqual(lag.map { $0.committed ?? 0 }.reduce(0, +), Int64(storedAtExit), "committed exactly what was stored; worker log:\n\(workerLog.suffix(4000))")
        XCTAssertEqual(Int(lag.map(\.lag).reduce(0, +)), total - storedAtExit, "the rest waits for the next worker")
        await conn.close()
        try? FileManager.default.removeItem(atPath: log)
        try await db.drop()
    }
}
