import BlendCore
import BlendTestSupport
import Foundation
import Health
import Kafka
import Postgres
import Supervisor
import XCTest

/// `blendd supervise` as a real process, supervising real `blendd worker` processes.
final class SupervisorProcessTests: XCTestCase {
    var db: TestDatabase!
    var broker: EmbeddedKafkaBroker!
    var port: Int = 0
    var logPath = ""

    override func setUp() async throws {
        guard TestDatabase.serverURL != nil else { throw XCTSkip(TestDatabase.skipMessage) }
        db = try await TestDatabase.migrated()
        broker = try EmbeddedKafkaBroker(brokers: 1)
        for t in ["blend.jobs", "blend.events", "blend.jobs.dlq"] { try broker.createTopic(t, partitions: 2) }
        port = Int.random(in: 20000...40000)
        logPath = FileManager.default.temporaryDirectory.appendingPathComponent("supervisor-\(UUID().uuidString).log").path
    }

    override func tearDown() async throws {
        try? FileManager.default.removeItem(atPath: logPath)
        broker = nil
        try await db?.drop()
    }

    func startSupervisor(workers: Int, extra: [String] = []) -> pid_t {
        var env = ProcessInfo.processInfo.environment
        env["BLENDD_KAFKA_BOOTSTRAP"] = broker.bootstrapServers
        env["BLENDD_DATABASE_URL"] = db.url
        env["BLENDD_KAFKA_PROPERTY_SESSION_TIMEOUT_MS"] = "6000"
        env["BLENDD_KAFKA_PROPERTY_HEARTBEAT_INTERVAL_MS"] = "500"
        let args = [RepositoryLayout.blenddExecutable.path, "supervise", "--workers", "\(workers)", "--listen", "127.0.0.1:\(port)",
                    "--set", "supervisor.heartbeat_seconds=0.5", "--set", "supervisor.heartbeat_timeout_seconds=3",
                    "--set", "supervisor.restart_initial_ms=200", "--set", "supervisor.restart_max_ms=2000",
                    "--set", "shutdown.drain_seconds=5"] + extra
        return spawnProcess(args, stderrPath: logPath, environment: env)!
    }

    func get(_ path: String) async -> (Int, String)? {
        guard let response = try? await HealthClient.get(host: "127.0.0.1", port: port, path: path) else { return nil }
        return (response.status, response.body)
    }

    func workers() async -> [[String: Any]] {
        guard let (_, body) = await get("/status"), let object = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any] else { return [] }
        return object["workers"] as? [[String: Any]] ?? []
    }

    func runningPids() async -> [Int32] {
        await workers().filter { $0["state"] as? String == "running" }.compactMap { ($0["pid"] as? NSNumber)?.int32Value }
    }

    func waitUntil(_ seconds: Double, _ what: String, _ condition: () async -> Bool) async throws {
        let deadline = Date().addingTimeInterval(seconds)
        while !(await condition()) {
            guard Date() < deadline else {
                XCTFail("\(what) not within \(seconds) s; supervisor log:\n\((try? String(contentsOfFile: logPath, encoding: .utf8))?.suffix(3000) ?? "")")
                throw CancellationError()
            }
            try await Task.sleep(for: .milliseconds(200))
        }
    }

    func testKilledAndStoppedWorkersAreReplacedAndSIGTERMDrainsEverything() async throws {
        let total = 240
        let filler = String(repeating: "sphinx of black quartz judge my vow ", count: 40)
        let producer = try KafkaProducer(configuration: broker.configuration)
        let messages = (0..<total).map { i in
            let candidates = (0..<8).map { c in #"{"model":"m\#(c)","text":"\#(filler)\#(i) \#(c)"}"# }.joined(separator: ",")
            return ProducerMessage(topic: "blend.jobs", key: "s-\(i)", value: Array(#"{"job_id":"s-\#(i)","instruction":"Q","candidates":[\#(candidates)]}"#.utf8))
        }
        for r in try await producer.send(messages) { _ = try r.get() }
        let supervisor = startSupervisor(workers: 2)
        try await waitUntil(30, "two running workers") { await runningPids().count == 2 }
        let health = await get("/healthz")
        XCTAssertEqual(health?.0, 200)
        try await waitUntil(15, "ready") { await get("/readyz")?.0 == 200 }

        let victim = await runningPids()[0]
        kill(victim, SIGKILL)
        try await waitUntil(10, "a replacement for the killed worker") { let p = await runningPids(); return p.count == 2 && !p.contains(victim) }

        let frozen = await runningPids()[0]
        kill(frozen, SIGSTOP)
        let frozenAt = Date()
        try await waitUntil(15, "the stopped worker replaced as hung") { let p = await runningPids(); return p.count == 2 && !p.contains(frozen) }
        XCTAssertLessThan(Date().timeIntervalSince(frozenAt), 3 + 8, "detected within the heartbeat timeout")

        let scraped = await get("/metrics")
        let metrics = try XCTUnwrap(scraped)
        XCTAssertEqual(metrics.0, 200)
        try assertPrometheusText(metrics.1)
        XCTAssertTrue(metrics.1.contains(#"blendd_worker_restarts_total{reason="crashed"} 1"#), metrics.1)
        XCTAssertTrue(metrics.1.contains(#"blendd_worker_restarts_total{reason="hung"} 1"#))
        XCTAssertTrue(metrics.1.contains(#"blendd_workers{state="running"} 2"#))
        XCTAssertTrue(metrics.1.contains("blendd_consumer_lag_messages{worker=\""), "worker metrics are included, labelled by worker:\n\(metrics.1)")

        // No job is lost or stored twice across the replacements.
        let conn = try await PostgresConnection.connect(db.url)
        let deadline = Date().addingTimeInterval(120)
        var stored = 0, unsent = -1
        while Date() < deadline {
            stored = try await conn.query("SELECT count(*) AS n FROM jobs")[0].decode("n")
            unsent = try await conn.query("SELECT count(*) AS n FROM outbox WHERE sent_at IS NULL")[0].decode("n")
            // Messages the killed and the frozen worker stored but had not committed come back to
            // their successors as redeliveries: wait until the group has consumed everything.
            let lag = try await KafkaAdmin(configuration: broker.configuration).consumerGroupLag(groupId: "blendd", topic: "blend.jobs")
            if stored == total && unsent == 0 && lag.map(\.lag).reduce(0, +) == 0 { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        XCTAssertEqual(stored, total)
        XCTAssertEqual(unsent, 0)
        let events: Int = try await conn.query("SELECT count(*) AS n FROM outbox WHERE topic = 'blend.events'")[0].decode("n")
        XCTAssertEqual(events, total, "one event per job")
        let fleet: Int = try await conn.query("SELECT count(*) AS n FROM workers WHERE state = 'running'")[0].decode("n")
        XCTAssertGreaterThanOrEqual(fleet, 2, "worker rows are kept current")

        let children = await runningPids()
        kill(supervisor, SIGTERM)
        XCTAssertEqual(waitForExit(supervisor), 0)
        for pid in children + [frozen] { XCTAssertNotEqual(kill(pid, 0), 0, "worker \(pid) is gone") }
        let stopped: Int = try await conn.query("SELECT count(*) AS n FROM workers WHERE state = 'stopped' AND worker_id LIKE '%-w_'")[0].decode("n")
        XCTAssertEqual(stopped, 2, "both slots drained and recorded their stop")
        let lag = try await KafkaAdmin(configuration: broker.configuration).consumerGroupLag(groupId: "blendd", topic: "blend.jobs")
        XCTAssertEqual(lag.map(\.lag).reduce(0, +), 0)
        await conn.close()
    }

    func testSIGHUPReplacesWorkersOneAtATime() async throws {
        let supervisor = startSupervisor(workers: 2)
        try await waitUntil(30, "two running workers") { await runningPids().count == 2 }
        let before = Set(await runningPids())
        kill(supervisor, SIGHUP)
        var fewest = 2
        try await waitUntil(60, "both workers replaced") {
            let now = await runningPids()
            fewest = min(fewest, now.count)
            return now.count == 2 && before.isDisjoint(with: now)
        }
        XCTAssertGreaterThanOrEqual(fewest, 1, "a rolling restart never leaves the slot set without a running worker")
        let restarts = await get("/metrics")?.1 ?? ""
        XCTAssertFalse(restarts.contains("blendd_worker_restarts_total{"), "a roll is not counted as failures:\n\(restarts)")
        kill(supervisor, SIGTERM)
        XCTAssertEqual(waitForExit(supervisor), 0)
    }

    func testReadinessFailsWhilePostgresIsDownAndRecovers() async throws {
        guard ProcessInfo.processInfo.environment["BLENDD_TEST_PG_DIR"] != nil else { throw XCTSkip(TestDatabase.skipMessage) }
        let supervisor = startSupervisor(workers: 1)
        try await waitUntil(30, "ready") { await get("/readyz")?.0 == 200 }
        XCTAssertTrue(stopTestServer())
        try await waitUntil(15, "readiness failing on postgres") {
            guard let (status, body) = await get("/readyz") else { return false }
            return status == 503 && body.contains("postgres:")
        }
        let health = await get("/healthz")
        XCTAssertEqual(health?.0, 200, "liveness does not depend on the database")
        XCTAssertTrue(startTestServer())
        try await waitUntil(30, "ready again") { await get("/readyz")?.0 == 200 }
        kill(supervisor, SIGTERM)
        XCTAssertEqual(waitForExit(supervisor), 0)
    }

    func testAWorkerThatAlwaysFailsMakesTheSupervisorDegradedWithoutSpinning() async throws {
        let supervisor = startSupervisor(workers: 1, extra: ["--set", "supervisor.crash_loop_restarts=3", "--worker-command", "/bin/false"])
        try await waitUntil(20, "degraded readiness") {
            guard let (status, body) = await get("/readyz") else { return false }
            return status == 503 && body.contains("degraded")
        }
        let before = cpuSeconds(supervisor)
        try await Task.sleep(for: .seconds(4))
        let used = cpuSeconds(supervisor) - before
        XCTAssertLessThan(used, 0.5, "the supervisor waits between restarts instead of spinning (\(used) s CPU in 4 s)")
        let metrics = await get("/metrics")?.1 ?? ""
        XCTAssertTrue(metrics.contains("blendd_supervisor_degraded 1"), metrics)
        kill(supervisor, SIGTERM)
        XCTAssertEqual(waitForExit(supervisor), 0)
    }

    private func cpuSeconds(_ pid: pid_t) -> Double {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return 0 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // Fields after the command: state is index 0; utime and stime are 11 and 12.
        let ticks = (Double(fields[11]) ?? 0) + (Double(fields[12]) ?? 0)
        return ticks / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// Every line is a comment (# HELP/# TYPE) or `name{labels} value` in exposition format 0.0.4.
    private func assertPrometheusText(_ text: String) throws {
        let sample = try NSRegularExpression(pattern: #"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*")(,[a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*")*\})? (-?[0-9.eE+-]+|NaN|\+Inf|-Inf)$"#)
        let help = try NSRegularExpression(pattern: #"^# (HELP [a-zA-Z_:][a-zA-Z0-9_:]* .*|TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge|histogram|summary|untyped))$"#)
        var lines = 0
        for line in text.split(separator: "\n").map(String.init) {
            let range = NSRange(line.startIndex..., in: line)
            let ok = line.hasPrefix("#") ? help.firstMatch(in: line, range: range) != nil : sample.firstMatch(in: line, range: range) != nil
            XCTAssertTrue(ok, "not exposition format: \(line)")
            lines += 1
        }
        XCTAssertGreaterThan(lines, 10)
    }
}
