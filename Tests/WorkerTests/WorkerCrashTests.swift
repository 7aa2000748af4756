import BlendCore
import BlendTestSupport
import Foundation
import Kafka
import Postgres
import XCTest

/// Two worker processes, one killed mid-stream and restarted: nothing is lost, nothing is
/// stored or announced twice, nothing unstored is committed.
final class WorkerCrashTests: XCTestCase {
    func testTwoWorkersOneKilledAndRestartedEveryJobExactlyOnce() async throws {
        guard TestDatabase.serverURL != nil else { throw XCTSkip(TestDatabase.skipMessage) }
        let db = try await TestDatabase.migrated()
        let broker = try EmbeddedKafkaBroker(brokers: 1)
        for (topic, partitions) in [("blend.jobs", Int32(4)), ("blend.events", 2), ("blend.jobs.dlq", 1)] {
            try broker.createTopic(topic, partitions: partitions)
        }
        // 470 valid jobs, 15 invalid ones, and 15 valid jobs sent a second time (duplicate ids).
        let filler = String(repeating: "lorem ipsum dolor sit amet ", count: 40)
        func valid(_ i: Int) -> ProducerMessage {
            let candidates = (0..<8).map { c in #"{"model":"m\#(c)","text":"\#(filler) answer \#(i * c) \#(c)"}"# }.joined(separator: ",")
            return ProducerMessage(topic: "blend.jobs", key: "crash-\(i)",
                                   value: Array(#"{"job_id":"crash-\#(i)","instruction":"Q\#(i)","candidates":[\#(candidates)]}"#.utf8))
        }
        var messages = (0..<470).map(valid)
        for i in 0..<15 {
            messages.insert(ProducerMessage(topic: "blend.jobs", key: "bad-\(i)", value: Array(#"{"job_id":"bad-\#(i)","instruction":"x","candidates":[]}"#.utf8)), at: i * 30)
            messages.insert(valid(i * 31), at: i * 30 + 20)
        }
        XCTAssertEqual(messages.count, 500)
        let producer = try KafkaProducer(configuration: broker.configuration)
        var position: [String: (Int32, Int64)] = [:]   // job id -> (partition, offset) of its first copy
        for (message, result) in zip(messages, try await producer.send(messages)) {
            let report = try result.get()
            let id = String(decoding: message.key!, as: UTF8.self)
            if position[id] == nil { position[id] = (report.partition, report.offset) }
        }

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
        func stored() async throws -> Set<String> {
            Set(try await conn.query("SELECT job_id FROM jobs").map { try $0.decode("job_id", as: String.self) })
        }

        let a = startWorker("w-a")
        let b = startWorker("w-b")
        try await eventually(within: 60, "60 jobs stored before the kill") { try await stored().count >= 60 }
        kill(a, SIGKILL)
        XCTAssertEqual(waitForExit(a), 128 + SIGKILL)

        // Whatever the group committed so far was stored first.
        let admin = try KafkaAdmin(configuration: broker.configuration)
        let committedAtCrash = try await admin.consumerGroupLag(groupId: "blendd", topic: "blend.jobs")
        let storedAtCrash = try await stored()
        XCTAssertLessThan(storedAtCrash.count, 485, "the crash happened mid-stream")
        for (id, (partition, offset)) in position {
            guard let committed = committedAtCrash.first(where: { $0.partition == partition })?.committed, offset < committed else { continue }
            let synthetic = "kafka/blend.jobs/\(partition)/\(offset)"
            XCTAssertTrue(storedAtCrash.contains(id) || storedAtCrash.contains(synthetic), "\(id) at \(partition)@\(offset) was committed (\(committed)) before it was stored")
        }

        let restarted = startWorker("w-a")
        try await eventually(within: 180, "all jobs stored, announced and committed") {
            let unsent: Int = try await conn.query("SELECT count(*) AS n FROM outbox WHERE sent_at IS NULL")[0].decode("n")
            // Duplicates come after their originals: all 500 messages are consumed once the group's lag is 0.
            let lag = try await admin.consumerGroupLag(groupId: "blendd", topic: "blend.jobs").map(\.lag).reduce(0, +)
            return try await stored().count == 485 && unsent == 0 && lag == 0
        }
        kill(b, SIGTERM)
        kill(restarted, SIGTERM)
        XCTAssertEqual(waitForExit(b), 0)
        XCTAssertEqual(waitForExit(restarted), 0)

        let statuses = try await conn.query("SELECT status, count(*) AS n FROM jobs GROUP BY status ORDER BY status")
        XCTAssertEqual(try statuses.map { "\(try $0.decode("status", as: String.self))=\(try $0.decode("n", as: Int.self))" }, ["completed=470", "rejected=15"])
        let outbox = try await conn.query("SELECT topic, count(*) AS n, count(DISTINCT job_id) AS d FROM outbox GROUP BY topic ORDER BY topic")
        XCTAssertEqual(try outbox.map { "\(try $0.decode("topic", as: String.self)) \(try $0.decode("n", as: Int.self)) \(try $0.decode("d", as: Int.self))" },
                       ["blend.events 485 485", "blend.jobs.dlq 15 15"], "exactly one event per job and one dead-letter copy per rejected job")

        // Every announced event matches a stored outcome; every outcome is announced.
        let events = try await conn.query("SELECT event_id FROM outbox WHERE topic = 'blend.events'").map { try $0.decode("event_id", as: String.self) }
        let reader = try KafkaConsumer(configuration: broker.configuration, options: .init(groupId: "reader", topics: ["blend.events"]))
        var announced = Set<String>()
        let deadline = Date().addingTimeInterval(30)
        while announced.count < 485 && Date() < deadline {
            for m in await reader.nextBatch(maxCount: 500, maxWait: .milliseconds(200)) {
                let object = try JSONSerialization.jsonObject(with: Data(m.bytes)) as! [String: Any]
                announced.insert(object["id"] as! String)
            }
        }
        await reader.close()
        XCTAssertEqual(announced, Set(events))
        let dlq = try KafkaConsumer(configuration: broker.configuration, options: .init(groupId: "dlq-reader", topics: ["blend.jobs.dlq"]))
        var rejectedKeys = Set<String>()
        while rejectedKeys.count < 15, let m = await dlq.next() {
            rejectedKeys.insert(String(decoding: m.key ?? [], as: UTF8.self))
            XCTAssertTrue(m.headers.contains { $0.0 == "blendd-rejected-codes" && String(decoding: $0.1, as: UTF8.self) == "too_few_candidates" })
        }
        await dlq.close()
        XCTAssertEqual(rejectedKeys, Set((0..<15).map { "bad-\($0)" }))
        let lag = try await admin.consumerGroupLag(groupId: "blendd", topic: "blend.jobs")
        XCTAssertEqual(lag.map(\.lag).reduce(0, +), 0)
        await conn.close()
        try await db.drop()
    }
}
