import BlendCore
import BlendTestSupport
import Foundation
import Health
import Kafka
import Postgres
import XCTest

/// `blendd worker` run alone, as in a Kubernetes pod: its lifecycle services, its own HTTP
/// endpoints, and SIGTERM at each stage of its life.
final class WorkerCommandLifecycleTests: XCTestCase {
    var db: TestDatabase!
    var broker: EmbeddedKafkaBroker!
    var logPath = ""
    let drainSeconds = 5.0

    override func setUp() async throws {
        guard TestDatabase.serverURL != nil else { throw XCTSkip(TestDatabase.skipMessage) }
        db = try await TestDatabase.migrated()
        broker = try EmbeddedKafkaBroker(brokers: 1)
        for t in ["blend.jobs", "blend.events", "blend.jobs.dlq"] { try broker.createTopic(t, partitions: 2) }
        logPath = FileManager.default.temporaryDirectory.appendingPathComponent("worker-\(UUID().uuidString).log").path
    }

    override func tearDown() async throws {
        try? FileManager.default.removeItem(atPath: logPath)
        broker = nil
        try await db?.drop()
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    func startWorker(databaseURL: String? = nil, listen port: Int? = nil) -> pid_t {
        var env = ProcessInfo.processInfo.environment
        env["BLENDD_KAFKA_BOOTSTRAP"] = broker.bootstrapServers
        env["BLENDD_DATABASE_URL"] = databaseURL ?? db.url
        env["BLENDD_KAFKA_PROPERTY_SESSION_TIMEOUT_MS"] = "6000"
        env["BLENDD_KAFKA_PROPERTY_HEARTBEAT_INTERVAL_MS"] = "500"
        var args = [RepositoryLayout.blenddExecutable.path, "worker", "--set", "shutdown.drain_seconds=\(drainSeconds)",
                    "--set", "retry.initial_ms=500", "--set", "retry.max_ms=20000"]
        if let port { args += ["--set", "worker.listen=127.0.0.1:\(port)"] }
        return spawnProcess(args, stderrPath: logPath, environment: env)!
    }

    /// Sends SIGTERM and returns the exit status and how long the exit took.
    func terminate(_ pid: pid_t) -> (Int32, Duration) {
        let sent = ContinuousClock.now
        kill(pid, SIGTERM)
        let status = waitForExit(pid)
        return (status, ContinuousClock.now - sent)
    }

    func get(_ port: Int, _ path: String) async -> HealthResponse? {
        try? await HealthClient.get(host: "127.0.0.1", port: port, path: path, timeout: .seconds(3))
    }

    func testSIGTERMDuringStartupRetriesExitsZeroWithinTheDrainTime() async throws {
        // Nothing listens on port 1: every connection attempt fails and is retried with backoff.
        let worker = startWorker(databaseURL: "postgresql://postgres@127.0.0.1:1/blendd")
        try await eventually(within: 20, "the worker retrying its start-up") { self.log.components(separatedBy: "retrying in").count > 3 }
        let (status, took) = terminate(worker)
        XCTAssertEqual(status, 0, "log:\n\(log.suffix(2000))")
        XCTAssertLessThan(took, .seconds(drainSeconds + 1), "within the drain time, not after the backoff")
        print("worker SIGTERM during start-up retries: exit \(status) after \(took)")
    }

    func testALoneWorkerServesItsOwnEndpointsAndExitsZeroOnSIGTERMDuringAnOutage() async throws {
        guard ProcessInfo.processInfo.environment["BLENDD_TEST_PG_DIR"] != nil else { throw XCTSkip(TestDatabase.skipMessage) }
        let port = Int.random(in: 40001...50000)
        let worker = startWorker(listen: port)
        try await eventually(within: 30, "the worker ready") { await self.get(port, "/readyz")?.status == 200 }
        let health = await get(port, "/healthz")
        XCTAssertEqual(health?.body, "ok\n")
        let metrics = await get(port, "/metrics")
        XCTAssertEqual(metrics?.contentType, PrometheusText.contentType)
        XCTAssertTrue(metrics?.body.contains("# TYPE blendd_") ?? false, metrics?.body ?? "no /metrics")
        XCTAssertTrue(stopTestServer())
        defer { XCTAssertTrue(startTestServer()) }
        try await eventually(within: 15, "readiness failing on postgres") {
            guard let ready = await self.get(port, "/readyz") else { return false }
            return ready.status == 503 && ready.body.contains("postgres:")
        }
        let alive = await get(port, "/healthz")
        XCTAssertEqual(alive?.status, 200, "liveness does not depend on the database")
        let (status, took) = terminate(worker)
        XCTAssertEqual(status, 0, "log:\n\(log.suffix(2000))")
        XCTAssertLessThan(took, .seconds(drainSeconds + 1))
        print("lone worker SIGTERM during a PostgreSQL outage: exit \(status) after \(took)")
    }

    func testSIGTERMDuringBatchesExitsZeroWithinTheDrainTime() async throws {
        let filler = String(repeating: "sphinx of black quartz judge my vow ", count: 40)
        let producer = try KafkaProducer(configuration: broker.configuration)
        let messages = (0..<400).map { i in
            let candidates = (0..<8).map { c in #"{"model":"m\#(c)","text":"\#(filler)\#(i) \#(c)"}"# }.joined(separator: ",")
            return ProducerMessage(topic: "blend.jobs", key: "t-\(i)", value: Array(#"{"job_id":"t-\#(i)","instruction":"Q","candidates":[\#(candidates)]}"#.utf8))
        }
        for r in try await producer.send(messages) { _ = try r.get() }
        let worker = startWorker()
        let conn = try await PostgresConnection.connect(db.url)
        try await eventually(within: 60, "jobs being stored") {
            let n: Int = try await conn.query("SELECT count(*) AS n FROM jobs")[0].decode("n")
            return n > 0
        }
        let (status, took) = terminate(worker)
        let stored: Int = try await conn.query("SELECT count(*) AS n FROM jobs")[0].decode("n")
        await conn.close()
        XCTAssertEqual(status, 0, "log:\n\(log.suffix(2000))")
        XCTAssertLessThan(took, .seconds(drainSeconds + 1))
        print("worker SIGTERM during batches: exit \(status) after \(took), \(stored) of 400 jobs stored")
    }
}
