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

    /// - Parameter listenFlag: false when the configuration file names the address (a flag would win over it).
    func startSupervisor(workers: Int?, listenFlag: Bool = true, extra: [String] = [], environment: [String: String] = [:]) -> pid_t {
        var env = ProcessInfo.processInfo.environment
        env["BLENDD_KAFKA_BOOTSTRAP"] = broker.bootstrapServers
        env["BLENDD_DATABASE_URL"] = db.url
        env["BLENDD_KAFKA_PROPERTY_SESSION_TIMEOUT_MS"] = "6000"
        env["BLENDD_KAFKA_PROPERTY_HEARTBEAT_INTERVAL_MS"] = "500"
        env.merge(environment) { $1 }
        let args = [RepositoryLayout.blenddExecutable.path, "supervise"] + (listenFlag ? ["--listen", "127.0.0.1:\(port)"] : []) + [
                    "--set", "supervisor.heartbeat_seconds=0.5", "--set", "supervisor.heartbeat_timeout_seconds=3",
                    "--set", "supervisor.restart_initial_ms=200", "--set", "supervisor.restart_max_ms=2000",
                    "--set", "shutdown.drain_seconds=5"] + (workers.map { ["--workers", "\($0)"] } ?? []) + extra
        return spawnProcess(args, stderrPath: logPath, environment: env)!
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Every pid in /status, whatever its state.
    func allPids() async -> [Int32] {
        await workers().compactMap { ($0["pid"] as? NSNumber)?.int32Value }
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
                XCTFail("\(what) not within \(seconds) s; supervisor log:\n\(log.suffix(3000))")
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

    func testSIGHUPScalesWorkersRollsThemForWorkerSettingsAndRefusesANewListenAddress() async throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("supervisor-\(UUID().uuidString).yaml").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        func write(workers: Int, maxJobs: Int = 8, listen: String? = nil) throws {
            try "supervisor:\n  workers: \(workers)\n  listen: \(listen ?? "127.0.0.1:\(port)")\nbatching:\n  max_jobs: \(maxJobs)\n"
                .write(toFile: file, atomically: true, encoding: .utf8)
        }
        try write(workers: 1)
        let supervisor = startSupervisor(workers: nil, listenFlag: false, extra: ["--config", file])
        try await waitUntil(30, "one running worker") { await runningPids().count == 1 }
        let first = await runningPids()[0]

        try write(workers: 3)
        kill(supervisor, SIGHUP)
        try await waitUntil(30, "three running workers") { await runningPids().count == 3 }
        var pids = await runningPids()
        XCTAssertTrue(pids.contains(first), "scaling up leaves the running worker alone")

        try write(workers: 2)
        kill(supervisor, SIGHUP)
        try await waitUntil(20, "two workers") {
            let all = await allPids()
            let running = await runningPids()
            return all.count == 2 && running.count == 2
        }
        pids = await runningPids()
        XCTAssertTrue(pids.contains(first), "scaling down stops the highest slots")

        try write(workers: 2, maxJobs: 4)
        kill(supervisor, SIGHUP)
        var fewest = 2
        try await waitUntil(60, "both workers replaced for the new worker setting") {
            let now = await runningPids()
            fewest = min(fewest, now.count)
            return now.count == 2 && Set(pids).isDisjoint(with: now)
        }
        XCTAssertGreaterThanOrEqual(fewest, 1, "a rolling restart never leaves the slot set without a running worker")

        pids = await runningPids()
        try write(workers: 2, maxJobs: 4, listen: "127.0.0.1:\(port + 1)")
        kill(supervisor, SIGHUP)
        try await waitUntil(10, "the listen change reported") { log.contains("supervisor.listen changed from 127.0.0.1:\(port) to 127.0.0.1:\(port + 1): that needs a restart") }
        let health = await get("/healthz")
        XCTAssertEqual(health?.0, 200, "still serving on the old address")
        let after = await runningPids()
        XCTAssertEqual(Set(after), Set(pids), "a supervisor-only change replaces no worker")

        let metrics = await get("/metrics")?.1 ?? ""
        XCTAssertFalse(metrics.contains("blendd_worker_restarts_total{"), "scaling and rolling are not counted as failures:\n\(metrics)")
        kill(supervisor, SIGTERM)
        XCTAssertEqual(waitForExit(supervisor), 0)
    }

    /// 200 idle connections, 50 half-sent requests and a 1 MB head on the supervisor's port: the
    /// probes keep answering and a SIGKILLed worker is still replaced at once.
    func testHealthzAndSupervisionKeepGoingUnderBadClients() async throws {
        let supervisor = startSupervisor(workers: 1)
        try await waitUntil(30, "a running worker") { await runningPids().count == 1 }
        let clients = try BadHTTPClients(port: port, idle: 200, halfSent: 50, hugeHeaderBytes: 1 << 20)
        _ = clients.hugeHeaderAnswer(timeout: 5)
        var latencies: [Duration] = []
        for _ in 0..<40 {
            let started = ContinuousClock.now
            let answer = try await HealthClient.get(host: "127.0.0.1", port: port, path: "/healthz", timeout: .seconds(2))
            latencies.append(ContinuousClock.now - started)
            XCTAssertEqual(answer.status, 200)
            try await Task.sleep(for: .milliseconds(25))
        }
        let sorted = latencies.sorted()
        // The other processes here (the worker, PostgreSQL, parallel builds) share two cores, so the
        // bound is held by 9 in 10 probes, and none may take long enough to fail a probe.
        XCTAssertLessThan(sorted[35], .milliseconds(100), "90th percentile of /healthz with \(clients.count) bad connections held: \(latencies)")
        XCTAssertLessThan(sorted.last!, .seconds(1), "slowest /healthz with \(clients.count) bad connections held: \(latencies)")
        print("healthz under bad clients (supervisor process): median \(sorted[20]), slowest \(sorted.last!) of 40 probes")

        let victim = await runningPids()[0]
        kill(victim, SIGKILL)
        let killed = ContinuousClock.now
        try await waitUntil(5, "a new worker process") { let all = await allPids(); return !all.isEmpty && !all.contains(victim) }
        let replaced = ContinuousClock.now - killed
        XCTAssertLessThan(replaced, .seconds(2), "a SIGKILLed worker is replaced while bad clients hold connections")
        print("SIGKILLed worker replaced after \(replaced) under bad clients")
        XCTAssertEqual(clients.stillOpen(), 250, "the bad connections were held throughout")
        clients.closeAll()
        kill(supervisor, SIGTERM)
        XCTAssertEqual(waitForExit(supervisor), 0)
    }

    /// A password given to the supervisor never reaches a worker's command line, the supervisor's
    /// log, /status or /metrics.
    func testSecretsStayOutOfWorkerCommandLinesLogsAndEndpoints() async throws {
        let secret = "Hunter2-\(UInt32.random(in: 100_000...999_999))"
        let url = db.url.replacingOccurrences(of: "://postgres@", with: "://postgres:\(secret)@")
        XCTAssertTrue(url.contains(secret), "the test database URL has a user to attach a password to: \(db.url)")
        let supervisor = startSupervisor(workers: 1, extra: ["--set", "postgres.url=\(url)", "--set", "kafka.properties.sasl.password=\(secret)"])
        try await waitUntil(30, "a running worker") { await runningPids().count == 1 }
        let worker = await runningPids()[0]
        let commandLine = try String(decoding: Data(contentsOf: URL(fileURLWithPath: "/proc/\(worker)/cmdline")), as: UTF8.self)
        XCTAssertEqual(commandLine.split(separator: "\0").dropFirst().map(String.init), ["worker"], "a worker's command line is just `worker`")
        let environment = try String(decoding: Data(contentsOf: URL(fileURLWithPath: "/proc/\(worker)/environ")), as: UTF8.self)
        XCTAssertTrue(environment.contains("BLENDD_OVERRIDES="), "the overrides travel in the environment")
        let status = await get("/status")?.1 ?? ""
        let metrics = await get("/metrics")?.1 ?? ""
        var ready = await get("/readyz")?.1 ?? ""
        // Error messages name the database too: with PostgreSQL down, /readyz and the log carry them.
        if ProcessInfo.processInfo.environment["BLENDD_TEST_PG_DIR"] != nil {
            XCTAssertTrue(stopTestServer())
            try await waitUntil(15, "readiness failing on postgres") { (await get("/readyz"))?.1.contains("postgres:") ?? false }
            ready += await get("/readyz")?.1 ?? ""
            XCTAssertTrue(startTestServer())
        }
        kill(supervisor, SIGTERM)
        XCTAssertEqual(waitForExit(supervisor), 0)
        XCTAssertTrue(log.contains("postgres.url=postgresql://postgres:****@"), "the overrides are logged masked:\n\(log.suffix(2000))")
        for (channel, text) in [("command line", commandLine), ("log", log), ("/status", status), ("/metrics", metrics), ("/readyz", ready)] {
            XCTAssertFalse(text.contains(secret), "the secret appears in the \(channel)")
        }
    }

    /// The supervisor exits 0 on SIGTERM at any moment: while its workers start, while they run,
    /// and while PostgreSQL is down.
    func testSIGTERMExitsZeroAtEveryStage() async throws {
        var timings: [String] = []
        for stage in ["starting", "running"] {
            let supervisor = startSupervisor(workers: 2)
            if stage == "running" { try await waitUntil(30, "two running workers") { await runningPids().count == 2 } } else {
                try await waitUntil(10, "workers spawned") { await allPids().count == 2 }
            }
            let children = await allPids()
            let sent = ContinuousClock.now
            kill(supervisor, SIGTERM)
            XCTAssertEqual(waitForExit(supervisor), 0, "SIGTERM while workers are \(stage)")
            let took = ContinuousClock.now - sent
            XCTAssertLessThan(took, .seconds(5 + 5), "within the drain time (+ the kill margin)")
            for pid in children { XCTAssertNotEqual(kill(pid, 0), 0, "worker \(pid) is gone") }
            timings.append("\(stage): \(took)")
        }
        if ProcessInfo.processInfo.environment["BLENDD_TEST_PG_DIR"] != nil {
            let supervisor = startSupervisor(workers: 1)
            try await waitUntil(30, "a running worker") { await runningPids().count == 1 }
            XCTAssertTrue(stopTestServer())
            try await waitUntil(15, "readiness failing on postgres") { (await get("/readyz"))?.1.contains("postgres:") ?? false }
            let sent = ContinuousClock.now
            kill(supervisor, SIGTERM)
            XCTAssertEqual(waitForExit(supervisor), 0, "SIGTERM while PostgreSQL is down")
            let took = ContinuousClock.now - sent
            XCTAssertTrue(startTestServer())
            XCTAssertLessThan(took, .seconds(5 + 5))
            timings.append("postgres down: \(took)")
        }
        print("supervisor SIGTERM: \(timings.joined(separator: ", "))")
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

    func testWorkersEndingOnAPermanentFaultShowAsACrashLoopWithTheirErrorLine() async throws {
        // A database that does not exist: each worker ends at once with one line and exit 1.
        var missing = URLComponents(string: db.url)!
        missing.path = "/blendd_no_such_database"
        let supervisor = startSupervisor(workers: 1, extra: ["--set", "supervisor.crash_loop_restarts=3"],
                                         environment: ["BLENDD_DATABASE_URL": missing.string!])
        try await waitUntil(30, "degraded readiness") {
            guard let (status, body) = await get("/readyz") else { return false }
            return status == 503 && body.contains("degraded")
        }
        let slots = await workers()
        let slot = try XCTUnwrap(slots.first)
        let fatal = try XCTUnwrap(slot["last_fatal_error"] as? String, "\(slot)")
        XCTAssertTrue(fatal.contains("blendd_no_such_database"), fatal)
        XCTAssertEqual(slot["last_reason"] as? String, "crashed", "a non-zero exit counts as a crash")
        let looping = try XCTUnwrap(log.split(separator: "\n").first { $0.contains("crash-looping") }, log)
        XCTAssertTrue(looping.contains("last error:") && looping.contains("blendd_no_such_database"), String(looping))
        kill(supervisor, SIGTERM)
        XCTAssertEqual(waitForExit(supervisor), 0)
    }

    func testAListenAddressInUseEndsTheSupervisorWithExitOneAndNoWorkerLeft() async throws {
        let blocker = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(blocker) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(blocker, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        XCTAssertEqual(bound, 0)
        XCTAssertEqual(listen(blocker, 1), 0)
        let supervisor = startSupervisor(workers: 1)
        XCTAssertEqual(waitForExit(supervisor), 1)
        XCTAssertTrue(log.contains("http: cannot listen on 127.0.0.1:\(port): "), log)
        let workers = try String(contentsOfFile: logPath, encoding: .utf8).components(separatedBy: "started worker ").dropFirst()
            .compactMap { Int32($0.split(whereSeparator: \.isWhitespace).dropFirst(2).first ?? "") }
        for pid in workers { XCTAssertNotEqual(kill(pid, 0), 0, "worker \(pid) is gone") }
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
