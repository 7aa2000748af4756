import BlendTestSupport
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Kafka
import XCTest

/// Secrets given in every form (URL user info, URL query, quoted conninfo, Kafka properties from
/// the file, the environment, `*_FILE` and flags) appear in no output channel of any command:
/// `config check`, the logs of worker, supervisor and migrate, their error messages after a
/// failed connect, and the supervisor's /status.
final class SecretLeakTests: XCTestCase {
    static let secrets = ["PgUrlSecret1", "PgSslSecret2", "PgQuoted Secret3", "SaslSecret4", "KeyFileSecret5", "OauthSecret6", "FlagSecret7"]

    private var dir: URL!
    private var broker: EmbeddedKafkaBroker!

    override func setUp() async throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("blendd-secrets-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        broker = try EmbeddedKafkaBroker(brokers: 1)
        for topic in ["blend.jobs", "blend.events", "blend.jobs.dlq"] { try broker.createTopic(topic, partitions: 1) }
    }

    override func tearDown() {
        try? FileManager.default.removeItem(at: dir)
    }

    /// Runs blendd until it exits or `seconds` pass (then SIGTERM, then SIGKILL); returns everything
    /// it wrote. `meanwhile` runs while it does.
    private func run(_ arguments: [String], environment: [String: String], seconds: Double, meanwhile: () throws -> Void = {}) throws -> String {
        let process = Process()
        process.executableURL = RepositoryLayout.blenddExecutable
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("BLENDD_") || $0.key.hasPrefix("BLENDD_TEST_") }
            .merging(environment) { $1 }
        let output = dir.appendingPathComponent(UUID().uuidString)
        FileManager.default.createFile(atPath: output.path, contents: nil)
        let handle = try FileHandle(forWritingTo: output)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        let deadline = Date().addingTimeInterval(seconds)
        try meanwhile()
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.1) }
        if process.isRunning { kill(process.processIdentifier, SIGTERM) }
        let hard = Date().addingTimeInterval(40)
        while process.isRunning && Date() < hard { Thread.sleep(forTimeInterval: 0.1) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        try handle.close()
        return try String(contentsOf: output, encoding: .utf8)
    }

    private func assertNoSecret(_ text: String, _ channel: String, file: StaticString = #filePath, line: UInt = #line) {
        for secret in Self.secrets {
            XCTAssertFalse(text.contains(secret), "\(channel) shows \(secret):\n\(text)", file: file, line: line)
        }
    }

    func testNoSecretReachesAnyOutputChannel() throws {
        // A database that refuses the connection (nothing listens on port 1), with secrets in
        // the URL's user information and query.
        let deadDatabase = "postgresql://blendd:PgUrlSecret1@127.0.0.1:1/blendd?sslpassword=PgSslSecret2&connect_timeout=1"
        let keyFile = dir.appendingPathComponent("key-password")
        try "KeyFileSecret5\n".write(to: keyFile, atomically: true, encoding: .utf8)
        let config = dir.appendingPathComponent("blendd.yaml")
        let listen = "127.0.0.1:\(Int.random(in: 20000..<60000))"
        try """
        kafka:
          bootstrap_servers: \(broker.bootstrapServers)
          properties:
            sasl.oauthbearer.config: principal=OauthSecret6
        supervisor:
          listen: \(listen)
          workers: 1
        """.write(to: config, atomically: true, encoding: .utf8)
        let environment = [
            "BLENDD_POSTGRES_URL": deadDatabase,
            "BLENDD_KAFKA_PROPERTY_SASL_PASSWORD": "SaslSecret4",
            "BLENDD_KAFKA_PROPERTY_SSL_KEY_PASSWORD_FILE": keyFile.path,
        ]
        let flags = ["--config", config.path, "--set", "kafka.properties.sasl.username=svc",
                     "--set", "kafka.properties.ssl.keystore.password=FlagSecret7"]

        let check = try run(["config", "check"] + flags, environment: environment, seconds: 20)
        XCTAssertTrue(check.contains("configuration ok"), check)
        XCTAssertTrue(check.contains("postgres.url = postgresql://blendd:****@127.0.0.1:1/blendd?sslpassword=****&connect_timeout=1"), check)
        assertNoSecret(check, "config check")

        let badType = try run(["config", "check", "--set", "postgres.pool_size=PgQuoted Secret3"], environment: [:], seconds: 20)
        XCTAssertTrue(badType.contains("problem:"), badType)

        let migrate = try run(["migrate", "--database-url", "host=127.0.0.1 port=1 dbname=x password='PgQuoted Secret3' connect_timeout=1"] + flags,
                              environment: environment, seconds: 20)
        XCTAssertFalse(migrate.isEmpty, "migrate reports the failed connect")
        assertNoSecret(migrate, "migrate")

        let worker = try run(["worker"] + flags, environment: environment, seconds: 6)
        XCTAssertFalse(worker.isEmpty, "the worker logs its start and the failed connects")
        assertNoSecret(worker, "worker")

        var status = ""
        let supervisor = try run(["supervise"] + flags, environment: environment, seconds: 10) {
            Thread.sleep(forTimeInterval: 5)
            status = (try? String(contentsOf: URL(string: "http://\(listen)/status")!, encoding: .utf8)) ?? ""
        }
        XCTAssertFalse(supervisor.isEmpty)
        XCTAssertTrue(status.contains("worker"), "/status answered: \(status)")
        assertNoSecret(supervisor, "supervisor and its worker")
        assertNoSecret(status, "/status")
    }
}
