import Foundation
import XCTest
@testable import BlendCore

final class ConfigurationLoaderTests: XCTestCase {
    private func write(_ yaml: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("blendd-\(UUID().uuidString).yaml").path
        try yaml.write(toFile: path, atomically: true, encoding: .utf8)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    func testDefaultsAreValid() {
        let loaded = ConfigurationLoader.load(file: nil, environment: [:])
        XCTAssertEqual(loaded.problems, [])
        XCTAssertEqual(loaded.configuration.kafka.jobsTopic, "blend.jobs")
        XCTAssertFalse(loaded.configuration.workerId.isEmpty)
    }

    func testFileThenEnvironmentThenFlagsOverride() throws {
        let file = try write("""
        kafka:
          group_id: from-file
          bootstrap_servers: file:9092
        batching:
          max_jobs: 4
        """)
        let loaded = ConfigurationLoader.load(
            file: file,
            environment: ["BLENDD_KAFKA_GROUP_ID": "from-env", "BLENDD_BATCHING_MAX_JOBS": "12", "BLENDD_TEST_DATABASE_URL": "ignored"],
            overrides: ["batching.max_jobs=20"])
        XCTAssertEqual(loaded.problems, [])
        XCTAssertEqual(loaded.configuration.kafka.groupId, "from-env")
        XCTAssertEqual(loaded.configuration.kafka.bootstrapServers, "file:9092")
        XCTAssertEqual(loaded.configuration.batching.maxJobs, 20)
        XCTAssertEqual(loaded.sources["kafka.group_id"], .environment)
        XCTAssertEqual(loaded.sources["batching.max_jobs"], .flag)
        XCTAssertEqual(loaded.sources["kafka.bootstrap_servers"], .file)
    }

    func testEveryProblemIsReportedWithItsLocation() throws {
        let file = try write("""
        kafka:
          group_idd: x
        postgres:
          pool_size: many
        retry:
          jitter: 3
        """)
        let loaded = ConfigurationLoader.load(file: file, environment: [:], overrides: ["log.format=xml", "nonsense"])
        let messages = loaded.problems.map(\.description)
        XCTAssertEqual(messages.count, 5, messages.joined(separator: "\n"))
        XCTAssertTrue(messages.contains("\(file): kafka.group_idd: unknown setting kafka.group_idd; did you mean kafka.group_id?"))
        XCTAssertTrue(messages.contains("\(file): postgres.pool_size: postgres.pool_size must be an integer, found \"many\""))
        XCTAssertTrue(messages.contains("--set log.format: log.format must be one of text, json, found \"xml\""))
        XCTAssertTrue(messages.contains("--set nonsense: expected path=value, e.g. kafka.group_id=blendd"))
        XCTAssertTrue(messages.contains("retry.jitter: must be between 0 and 1 (is 3)"))
    }

    func testKafkaPropertiesPassThroughAndSecretsAreMasked() throws {
        let secretFile = try write("s3cret-from-file\n")
        let file = try write("""
        kafka:
          properties:
            security.protocol: SASL_SSL
            sasl.password: hunter2
        postgres:
          url: postgresql://blendd:pw@db:5432/blendd
        """)
        let loaded = ConfigurationLoader.load(file: file, environment: [
            "BLENDD_KAFKA_PROPERTY_SASL_USERNAME": "svc",
            "BLENDD_KAFKA_PROPERTY_SSL_KEY_PASSWORD_FILE": secretFile,
        ])
        XCTAssertEqual(loaded.problems, [])
        XCTAssertEqual(loaded.configuration.kafka.properties, [
            "security.protocol": "SASL_SSL", "sasl.password": "hunter2",
            "sasl.username": "svc", "ssl.key.password": "s3cret-from-file",
        ])
        let text = loaded.rendered().joined(separator: "\n")
        for secret in ["hunter2", "s3cret-from-file", ":pw@"] { XCTAssertFalse(text.contains(secret), secret) }
        XCTAssertTrue(text.contains("postgres.url = postgresql://blendd:****@db:5432/blendd  (file)"))
        XCTAssertTrue(text.contains("kafka.properties.sasl.username = svc  (environment)"))
        XCTAssertEqual(ConfigurationLoader.mask("host=db user=u password=pw dbname=x"), "host=db user=u password=**** dbname=x")
    }

    func testManagedKafkaPropertiesAreRefused() {
        let loaded = ConfigurationLoader.load(file: nil, environment: ["BLENDD_KAFKA_PROPERTY_ENABLE_AUTO_OFFSET_STORE": "true"])
        XCTAssertEqual(loaded.problems.map(\.location), ["kafka.properties.enable.auto.offset.store"])
    }

    func testShortAliasesForTheCommonVariables() {
        let loaded = ConfigurationLoader.load(file: nil, environment: [
            "BLENDD_DATABASE_URL": "postgresql://x/y", "BLENDD_KAFKA_BOOTSTRAP": "k:1",
        ])
        XCTAssertEqual(loaded.configuration.postgres.url, "postgresql://x/y")
        XCTAssertEqual(loaded.configuration.kafka.bootstrapServers, "k:1")
    }

    func testInvalidYAMLAndMissingFileAreProblemsNotCrashes() throws {
        let bad = try write("kafka: [unclosed\n")
        XCTAssertEqual(ConfigurationLoader.load(file: bad, environment: [:]).problems.first?.location, bad)
        XCTAssertEqual(ConfigurationLoader.load(file: "/nonexistent.yaml", environment: [:]).problems.map(\.description),
                       ["/nonexistent.yaml: cannot read the configuration file"])
    }
}
