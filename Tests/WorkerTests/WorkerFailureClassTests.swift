import BlendCore
import BlendTestSupport
import Foundation
import Kafka
import Postgres
import XCTest

/// `blendd worker` processes against databases that refuse them for good, that are not there
/// at all, and that are idle: permanent faults end the process at once with one line, transient
/// ones are ridden out alive, a SIGTERM at any point exits 0, and idling costs next to nothing.
final class WorkerFailureClassTests: XCTestCase {
    var broker: EmbeddedKafkaBroker!
    var dir: URL!

    override func setUp() async throws {
        guard TestDatabase.serverURL != nil else { throw XCTSkip(TestDatabase.skipMessage) }
        broker = try EmbeddedKafkaBroker(brokers: 1)
        for (topic, partitions) in [("blend.jobs", Int32(2)), ("blend.events", 1), ("blend.jobs.dlq", 1)] {
            try broker.createTopic(topic, partitions: partitions)
        }
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("blendd-failclass-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDown() async throws {
        if let dir { try? FileManager.default.removeItem(at: dir) }
        broker = nil
    }

    private func startWorker(_ name: String, databaseURL: String, heartbeats: Bool = false) -> pid_t {
        var env = ProcessInfo.processInfo.environment
        env["BLENDD_KAFKA_BOOTSTRAP"] = broker.bootstrapServers
        env["BLENDD_DATABASE_URL"] = databaseURL
        env["BLENDD_WORKER_ID"] = name
        env["BLENDD_RETRY_MAX_MS"] = "500"
        env["BLENDD_SUPERVISOR_HEARTBEAT_SECONDS"] = "0.5"
        env["BLENDD_KAFKA_PROPERTY_SESSION_TIMEOUT_MS"] = "6000"
        env["BLENDD_KAFKA_PROPERTY_HEARTBEAT_INTERVAL_MS"] = "500"
        if heartbeats { env[HeartbeatWriter.environmentVariable] = "3" }
        return spawnProcess([RepositoryLayout.blenddExecutable.path, "worker"], stderrPath: log(name).path, environment: env,
                            fd3Path: heartbeats ? dir.appendingPathComponent("\(name).beats").path : nil)!
    }

    private func log(_ name: String) -> URL { dir.appendingPathComponent("\(name).log") }

    private func exitWithin(_ seconds: Double, _ pid: pid_t) -> (status: Int32, seconds: Double)? {
        let start = Date()
        var status: Int32 = 0
        while Date().timeIntervalSince(start) < seconds {
            if waitpid(pid, &status, WNOHANG) == pid {
                return ((status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f), Date().timeIntervalSince(start))
            }
            usleep(50_000)
        }
        kill(pid, SIGKILL)
        _ = waitForExit(pid)
        return nil
    }

    func testPermanentDatabaseRefusalsEndTheWorkerWithOneLineAndExitOne() async throws {
        let server = TestDatabase.serverURL!
        let unmigrated = try await TestDatabase.create()
        defer { Task { try? await unmigrated.drop() } }
        let cases: [(name: String, url: String, expected: String)] = [
            ("missing-db", PostgresURL.replacingDatabase(in: server, with: "blendd_no_such_database"), "database \"blendd_no_such_database\" does not exist"),
            ("missing-role", server.replacingOccurrences(of: "postgresql://postgres@", with: "postgresql://blendd_no_such_role@"),
             "role \"blendd_no_such_role\" does not exist"),
            ("old-schema", unmigrated.url, "run `blendd migrate` first"),
        ]
        for c in cases {
            let pid = startWorker(c.name, databaseURL: c.url)
            let exit = try XCTUnwrap(exitWithin(20, pid), "\(c.name) did not exit")
            XCTAssertEqual(exit.status, 1, c.name)
            XCTAssertLessThan(exit.seconds, 15, c.name)
            let lines = try String(contentsOf: log(c.name), encoding: .utf8).split(separator: "\n")
            let reasons = lines.filter { $0.contains(c.expected) }
            XCTAssertEqual(reasons.count, 1, "\(c.name): \(lines)")
            XCTAssertTrue(reasons.first?.lowercased().hasPrefix("error: ") ?? false, "\(c.name): \(reasons)")
            XCTAssertFalse(lines.contains { $0.contains("retrying") }, "\(c.name) retried a permanent fault: \(lines)")
        }
    }

    func testSIGTERMWhileRidingOutAnUnreachableDatabaseAtStartUpExitsZeroAndHeartbeatsSayDegraded() async throws {
        // Nothing listens on port 1: every connect is refused, a transient fault.
        let pid = startWorker("unreachable", databaseURL: "postgresql://postgres@127.0.0.1:1/blendd", heartbeats: true)
        let beats = dir.appendingPathComponent("unreachable.beats")
        try await eventually(within: 20, "degraded heartbeats while the database is unreachable") {
            let text = (try? String(contentsOf: beats, encoding: .utf8)) ?? ""
            return text.split(separator: "\n").compactMap { try? HeartbeatReport.parse(line: Array($0.utf8)) }.filter { $0.state == .degraded }.count >= 3
        }
        kill(pid, SIGTERM)
        let exit = try XCTUnwrap(exitWithin(10, pid), "the worker did not exit after SIGTERM")
        let output = try String(contentsOf: log("unreachable"), encoding: .utf8)
        XCTAssertEqual(exit.status, 0, output)
        XCTAssertLessThan(exit.seconds, 5)
    }

    func testAnIdleWorkerUsesUnderTwoPercentOfACoreAndFewerThanFiveStatementsPerSecond() async throws {
        let db = try await TestDatabase.migrated()
        let observer = try await PostgresConnection.connect(db.url)
        let pid = startWorker("idle", databaseURL: db.url)
        try await eventually(within: 30, "the worker runs") {
            try await observer.query("SELECT count(*) AS n FROM workers WHERE state = 'running'")[0].decode("n", as: Int.self) == 1
        }
        try await Task.sleep(for: .seconds(3))
        let cost = try await IdleCost.measure(workers: [pid], database: db.name, observer: observer, seconds: 10)
        print("idle: worker cpu \(cost.workerCPUPercent.map { String(format: "%.2f", $0) }) %, backends cpu \(String(format: "%.2f", cost.backendCPUPercent)) %, \(String(format: "%.2f", cost.statementsPerSecond)) statements/s")
        XCTAssertLessThan(cost.workerCPUPercent.max() ?? 100, 2)
        XCTAssertLessThan(cost.backendCPUPercent, 2)
        XCTAssertLessThan(cost.statementsPerSecond, 5)
        kill(pid, SIGTERM)
        XCTAssertEqual(exitWithin(15, pid)?.status, 0)
        await observer.close()
        try await db.drop()
    }
}

/// What idle workers cost over a window: their CPU, their PostgreSQL backends' CPU, and the
/// transactions their database committed (every statement the workers send is one).
struct IdleCost {
    var workerCPUPercent: [Double]
    var backendCPUPercent: Double
    var statementsPerSecond: Double

    static func measure(workers: [pid_t], database: String, observer: PostgresConnection, seconds: Double) async throws -> IdleCost {
        func commits() async throws -> Int {
            // Statistics reach pg_stat_database within about a second of a transaction.
            try await observer.query("SELECT xact_commit + xact_rollback AS n FROM pg_stat_database WHERE datname = \(database)")[0].decode("n")
        }
        let backends = try await observer.query("""
            SELECT pid FROM pg_stat_activity WHERE datname = \(database) AND application_name LIKE 'blendd worker%'
            """).map { pid_t(try $0.decode("pid", as: Int.self)) }
        try await Task.sleep(for: .seconds(1.5))
        let before = try await commits()
        let readBefore = Date()
        let workerStart = workers.map { cpuSeconds(of: $0) ?? 0 }
        let backendStart = backends.map { cpuSeconds(of: $0) ?? 0 }
        let start = Date()
        try await Task.sleep(for: .seconds(seconds))
        let elapsed = Date().timeIntervalSince(start)
        let workerEnd = workers.map { cpuSeconds(of: $0) ?? 0 }
        let backendEnd = backends.map { cpuSeconds(of: $0) ?? 0 }
        // The statements of the window's last second reach the statistics a moment later.
        try await Task.sleep(for: .seconds(1.5))
        let readAfter = Date()
        // The observer's own first read committed inside the window; it is not the workers'.
        let after = try await commits() - 1
        return IdleCost(workerCPUPercent: zip(workerStart, workerEnd).map { ($1 - $0) / elapsed * 100 },
                        backendCPUPercent: zip(backendStart, backendEnd).map { $1 - $0 }.reduce(0, +) / elapsed * 100,
                        statementsPerSecond: Double(after - before) / readAfter.timeIntervalSince(readBefore))
    }
}
