import BlendCore
import BlendTestSupport
import Foundation
import Inference
import Kafka
import Postgres
import XCTest
@testable import Worker

/// The relay settles each outbox row by its own publish result: one bad row neither blocks its
/// neighbours nor makes them publish twice, and a dead letter too large for the producer is
/// published cut, with a digest of the original.
final class OutboxRelayTests: XCTestCase {
    var db: TestDatabase!
    var pool: PostgresPool!
    var store: ResultStore!
    var broker: EmbeddedKafkaBroker!

    override func setUp() async throws {
        guard TestDatabase.serverURL != nil else { throw XCTSkip(TestDatabase.skipMessage) }
        db = try await TestDatabase.migrated()
        pool = PostgresPool(url: db.url, maxConnections: 2)
        store = ResultStore(pool: pool, eventsTopic: "blend.events", dlqTopic: "blend.jobs.dlq")
        broker = try EmbeddedKafkaBroker(brokers: 1)
        try broker.createTopic("blend.events", partitions: 2)
        try broker.createTopic("blend.jobs.dlq", partitions: 1)
    }

    override func tearDown() async throws {
        await pool?.close()
        try await db?.drop()
        broker = nil
    }

    private func message(_ offset: Int64, key: [UInt8]?, _ value: [UInt8]?) -> IncomingMessage {
        IncomingMessage(coordinates: MessageCoordinates(topic: "blend.jobs", partition: 0, offset: offset), key: key, value: value, timestamp: nil)
    }

    private func valid(_ id: String) -> [UInt8] {
        Array(#"{"job_id":"\#(id)","instruction":"Q","candidates":[{"model":"a","text":"yes"},{"model":"b","text":"no"}]}"#.utf8)
    }

    private func read(_ topic: String, count: Int) async -> [KafkaMessage] {
        await readTopic(topic, from: broker, expecting: count)
    }

    func testOversizeRowsNeitherBlockNorDuplicateTheirNeighboursAndTheDeadLetterIsCutToFit() async throws {
        let hugeText = String(repeating: "x", count: 1_500_000)
        let huge = Array(#"{"job_id":"big-1","instruction":"\#(hugeText)","candidates":[]}"#.utf8)
        let oddKey: [UInt8] = [0xFF, 0x00, 0x41]
        let processor = BatchProcessor(validator: JobValidator(), ranker: ConsensusRanker(), fuser: TopCandidateFuser(), workerId: "w1")
        let messages = [message(0, key: Array("a".utf8), valid("a")), message(1, key: Array("big-1".utf8), huge),
                        message(2, key: nil, valid("b")), message(3, key: oddKey, Array("not json \u{0}".utf8))]
        try await store.store(await processor.process(processor.validate(messages), isStored: []), workerId: "w1")
        // An event nobody could publish: larger than the producer's message.max.bytes.
        try await pool.withConnection { conn in
            try await conn.execute("""
                INSERT INTO outbox (event_id, job_id, topic, key, payload) VALUES ('giant/completed', 'giant', 'blend.events', 'giant'::bytea, \(PostgresBytes([UInt8](repeating: 0x20, count: 2_000_000))))
                """)
        }

        let registry = MetricsRegistry()
        let producer = try KafkaProducer(configuration: broker.configuration)
        let relay = OutboxRelay(store: store, producer: producer,
                                settings: .init(batchSize: 100, minIdleSeconds: 0.05, maxIdleSeconds: 1, messageMaxBytes: broker.configuration.messageMaxBytes,
                                                retry: Backoff(BlendConfiguration.Retry())),
                                instruments: WorkerMetrics(registry: registry), logger: .init(label: "test"))
        let round = try await relay.publishPendingOnce()
        XCTAssertEqual(round, OutboxRelay.Round(claimed: 7, sent: 6, retrying: 0, failed: 1))
        let next = try await relay.publishPendingOnce()
        XCTAssertEqual(next, OutboxRelay.Round(), "nothing is left to publish, and nothing is published again")
        XCTAssertEqual(registry.value(MetricNames.outboxFailures, labels: ["topic": "blend.events", "class": "permanent"]), 1)
        XCTAssertEqual(registry.value(MetricNames.deadLettersCut), 1)

        let rows = try await pool.withConnection { conn in
            try await conn.query("SELECT event_id, attempts, sent_at IS NOT NULL AS sent, error_class, last_error FROM outbox ORDER BY id")
        }
        XCTAssertEqual(try rows.map { try $0.decode("attempts", as: Int.self) }, Array(repeating: 1, count: 7))
        let giant = try XCTUnwrap(rows.first { (try? $0.decode("event_id", as: String.self)) == "giant/completed" })
        XCTAssertEqual(try giant.decode("sent", as: Bool.self), false)
        XCTAssertEqual(try giant.decode("error_class", as: String?.self), "permanent")
        XCTAssertTrue(try giant.decode("last_error", as: String.self).contains("MSG_SIZE_TOO_LARGE"))

        let events = await read("blend.events", count: 4)
        XCTAssertEqual(events.map { String(decoding: $0.key ?? [], as: UTF8.self) }.sorted(),
                       ["a", "b", "big-1", "kafka/blend.jobs/0/3"])
        XCTAssertTrue(events.allSatisfy { $0.bytes.count < 1_000_000 })

        let deadLetters = await read("blend.jobs.dlq", count: 2)
        XCTAssertEqual(deadLetters.count, 2)
        func header(_ m: KafkaMessage, _ name: String) -> String? {
            m.headers.first { $0.0 == name }.map { String(decoding: $0.1, as: UTF8.self) }
        }
        let small = try XCTUnwrap(deadLetters.first { header($0, "blendd-source-offset") == "3" })
        XCTAssertEqual(small.key, oddKey, "the dead-letter key is the original's bytes")
        XCTAssertEqual(small.value, Array("not json \u{0}".utf8))
        XCTAssertNil(header(small, "blendd-dlq-truncated"))
        let cut = try XCTUnwrap(deadLetters.first { header($0, "blendd-source-offset") == "1" })
        XCTAssertEqual(header(cut, "blendd-dlq-truncated"), "true")
        XCTAssertEqual(header(cut, "blendd-original-bytes"), String(huge.count))
        XCTAssertEqual(header(cut, "blendd-original-sha256"), SHA256.hex(huge))
        XCTAssertEqual(header(cut, "blendd-rejected-codes"), "job_too_large,text_too_large,too_few_candidates")
        XCTAssertEqual(cut.key, Array("big-1".utf8))
        XCTAssertEqual(cut.value, Array(huge.prefix(OutboxRelay.maxCutPayloadBytes)))
        // The full bytes stay in the database.
        let kept = try await pool.withConnection { conn in
            try await conn.query("SELECT payload FROM outbox WHERE event_id = 'big-1/dlq'")[0].decode("payload", as: PostgresBytes.self).bytes
        }
        XCTAssertEqual(kept, huge)
    }

    func testANullRecordValueReachesTheDeadLetterTopicAsNullAndAnEmptyOneAsEmpty() async throws {
        // Through Kafka itself, so the consumer's and the producer's handling of null is in the test.
        try broker.createTopic("blend.jobs", partitions: 1)
        let sender = try KafkaProducer(configuration: broker.configuration)
        _ = try await sender.send([ProducerMessage(topic: "blend.jobs", key: Array("tombstone".utf8), value: nil),
                                   ProducerMessage(topic: "blend.jobs", key: Array("empty".utf8), value: [])])
        let incoming = await read("blend.jobs", count: 2).map { m in
            IncomingMessage(coordinates: MessageCoordinates(topic: m.topic, partition: m.partition, offset: m.offset),
                            key: m.key, value: m.value, timestamp: nil)
        }
        XCTAssertEqual(incoming.map(\.value), [nil, []], "the consumer tells a null value from an empty one")
        let processor = BatchProcessor(validator: JobValidator(), ranker: ConsensusRanker(), fuser: TopCandidateFuser(), workerId: "w1")
        let outcomes = await processor.process(processor.validate(incoming), isStored: [])
        XCTAssertEqual(outcomes.map(\.status), [.rejected, .rejected])
        try await store.store(outcomes, workerId: "w1")

        let producer = try KafkaProducer(configuration: broker.configuration)
        let relay = OutboxRelay(store: store, producer: producer,
                                settings: .init(batchSize: 100, minIdleSeconds: 0.05, maxIdleSeconds: 1, messageMaxBytes: broker.configuration.messageMaxBytes,
                                                retry: Backoff(BlendConfiguration.Retry())),
                                instruments: WorkerMetrics(registry: MetricsRegistry()), logger: .init(label: "test"))
        let round = try await relay.publishPendingOnce()
        XCTAssertEqual(round.failed, 0)
        let deadLetters = await read("blend.jobs.dlq", count: 2)
        let byKey = Dictionary(uniqueKeysWithValues: deadLetters.map { (String(decoding: $0.key ?? [], as: UTF8.self), $0) })
        XCTAssertEqual(byKey.count, 2)
        XCTAssertNil(try XCTUnwrap(byKey["tombstone"]).value, "a null value stays null in the dead-letter copy")
        XCTAssertEqual(try XCTUnwrap(byKey["empty"]).value, [], "an empty value stays empty")
        let stored = try await pool.withConnection { conn in
            try await conn.query("SELECT (payload IS NULL) AS null_payload FROM outbox WHERE topic = 'blend.jobs.dlq' ORDER BY id")
                .map { try $0.decode("null_payload", as: Bool.self) }
        }
        XCTAssertEqual(stored, [true, false])
    }

    func testSHA256MatchesTheStandardVectors() {
        XCTAssertEqual(SHA256.hex([]), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(SHA256.hex(Array("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(SHA256.hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        XCTAssertEqual(SHA256.hex([UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)),
                       "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }
}
