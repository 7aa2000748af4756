import BlendCore
import BlendTestSupport
import Foundation
import Kafka
import Postgres
import XCTest

/// Worker processes killed mid-stream: nothing is lost, nothing is stored twice.
final class WorkerCrashTests: XCTestCase {
    func testAKilledWorkersJobsAreFinishedByItsReplacementExactlyOnce() async throws {
        guard TestDatabase.serverURL != nil else { throw XCTSkip(TestDatabase.skipMessage) }
        let db = try await TestDatabase.migrated()
        let broker = try EmbeddedKafkaBroker(brokers: 1)
        for (topic, partitions) in [("blend.jobs", Int32(4)), ("blend.events", 2), ("blend.jobs.dlq", 1)] {
            try broker.createTopic(topic, partitions: partitions)
        }
        let total = 300
        let producer = try KafkaProducer(configuration: broker.configuration)
        let filler = String(repeating: "lorem ipsum dolor sit amet ", count: 40)
        let messages = (0..<total).map { i in
            let candidates = (0..<8).map { c in #"{"model":"m\#(c)","text":"\#(filler) answer \#(i * c) \#(c)"}"# }.joined(separator: ",")
            return ProducerMessage(topic: "blend.jobs", key: "crash-\(i)",
                                   value: Array(#"{"job_id":"crash-\#(i)","instruction":"Q\#(i)","candidates":[\#(candidates)]}"#.utf8))
        }
        for r in try await producer.send(messages) { _ = try r.get() }

        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("blendd-crash-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var env = ProcessInfo.processInfo.environment
        env["BLENDD_KAFKA_BOOTSTRAP"] = broker.bootstrapServers
        env["BLENDD_DATABASE_URL"] = db.url
        env["BLENDD_KAFKA_PROPERTY_SESSION_TIMEOUT_MS"] = "6000"
        env["BLENDD_KAFKA_PROPERTY_HEARTBEAT_INTERVAL_MS"] = "500"
        env["BLENDD_BATCHING_MAX_JOBS"] = "4"
        env["BLENDD_OUTBOX_POLL_MS"] = "50"
        func startWorker(_ name: String) -> pid_t {
            var e = env
            e["BLENDD_WORKER_ID"] = name
            return spawnProcess([RepositoryLayout.blenddExecutable.path, "worker"], stderrPath: dir.appendingPathComponent("\(name).log").path, environment: e)!
        }
        let conn = try await PostgresConnection.connect(db.url)
        func stored() async throws -> Int { try await conn.query("SELECT count(*) AS n FROM jobs")[0].decode("n") }

        let first = startWorker("w-first")
        try await waitUntil(seconds: 60) { try await stored() >= 20 }
        kill(first, SIGKILL)
        XCTAssertEqual(waitForExit(first), 128 + SIGKILL)
        let storedAtCrash = try await stored()
        XCTAssertLessThan(storedAtCrash, total, "the crash happened mid-stream")

        let second = startWorker("w-second")
        try await waitUntil(seconds: 120) {
            let unsent: Int = try await conn.query("SELECT count(*) AS n FROM outbox WHERE sent_at IS NULL")[0].decode("n")
            return try await stored() == total && unsent == 0
        }
        kill(second, SIGTERM)
        XCTAssertEqual(waitForExit(second), 0, "a drained worker exits 0")

        let perJob = try await conn.query("SELECT count(*) AS n, count(DISTINCT job_id) AS d FROM outbox WHERE topic = 'blend.events'")[0]
        XCTAssertEqual(try perJob.decode("n", as: Int.self), total, "one outbox event per job")
        XCTAssertEqual(try perJob.decode("d", as: Int.self), total)
        let byWorker = try await conn.query("SELECT worker_id, count(*) AS n FROM jobs GROUP BY worker_id ORDER BY worker_id")
        XCTAssertEqual(try byWorker.map { try $0.decode("worker_id", as: String.self) }, ["w-first", "w-second"])

        // Every job is announced; a crash may repeat an event (at-least-once), never lose one.
        let reader = try KafkaConsumer(configuration: broker.configuration, options: .init(groupId: "reader", topics: ["blend.events"]))
        var announced = Set<String>()
        let deadline = Date().addingTimeInterval(30)
        while announced.count < total && Date() < deadline {
            for m in await reader.nextBatch(maxCount: 500, maxWait: .milliseconds(200)) { announced.insert(String(decoding: m.key ?? [], as: UTF8.self)) }
        }
        await reader.close()
        XCTAssertEqual(announced, Set((0..<total).map { "crash-\($0)" }))
        let lag = try await KafkaAdmin(configuration: broker.configuration).consumerGroupLag(groupId: "blendd", topic: "blend.jobs")
        XCTAssertEqual(lag.map(\.lag).reduce(0, +), 0)
        await conn.close()
        try await db.drop()
    }

    private func waitUntil(seconds: Double, _ condition: () async throws -> Bool) async throws {
        let deadline = Date().addingTimeInterval(seconds)
        while try await !condition() {
            guard Date() < deadline else {
                XCTFail("condition not met within \(seconds) s")
                throw CancellationError()
            }
            try await Task.sleep(for: .milliseconds(100))
        }
    }
}
