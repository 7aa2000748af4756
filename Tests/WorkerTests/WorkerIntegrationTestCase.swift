import BlendCore
import BlendTestSupport
import Kafka
import XCTest

/// A throwaway migrated database and an embedded broker with the jobs, events and dead-letter topics, for tests
/// that run the real worker; `configuration` points a worker at them with the timings these tests use.
class WorkerIntegrationTestCase: XCTestCase {
    var db: TestDatabase!
    var broker: EmbeddedKafkaBroker!

    /// Partitions of the jobs and events topics.
    class var partitions: Int32 { 2 }

    override func setUp() async throws {
        guard TestDatabase.serverURL != nil else { throw XCTSkip(TestDatabase.skipMessage) }
        db = try await TestDatabase.migrated()
        broker = try EmbeddedKafkaBroker(brokers: 1)
        for (topic, partitions) in [("blend.jobs", Self.partitions), ("blend.events", Self.partitions), ("blend.jobs.dlq", 1)] {
            try broker.createTopic(topic, partitions: partitions)
        }
    }

    override func tearDown() async throws {
        broker = nil
        try await db?.drop()
    }

    func configuration(workerId: String, group: String = "blendd", drainSeconds: Double = 10) -> BlendConfiguration {
        Self.configuration(workerId: workerId, group: group, broker: broker, db: db, drainSeconds: drainSeconds)
    }

    static func configuration(workerId: String, group: String = "blendd", broker: EmbeddedKafkaBroker, db: TestDatabase,
                              drainSeconds: Double = 10) -> BlendConfiguration {
        var c = BlendConfiguration()
        c.workerId = workerId
        c.kafka.bootstrapServers = broker.bootstrapServers
        c.kafka.groupId = group
        c.kafka.properties = ["session.timeout.ms": "6000", "heartbeat.interval.ms": "500"]
        c.postgres.url = db.url
        c.outbox.pollMilliseconds = 50
        c.drainSeconds = drainSeconds
        c.supervisor.heartbeatSeconds = 0.5
        return c
    }
}
