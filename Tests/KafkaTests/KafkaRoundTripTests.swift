import CRdKafka
import Foundation
import Kafka
import XCTest

final class KafkaRoundTripTests: XCTestCase {
    func testTenThousandMessagesArriveOncePerPartitionInOrder() async throws {
        let broker = try EmbeddedKafkaBroker(brokers: 1)
        try broker.createTopic("orders", partitions: 4)
        let producer = try KafkaProducer(configuration: broker.configuration)
        let count = 10_000
        let messages = (0..<count).map { i in
            ProducerMessage(topic: "orders", key: "key-\(i % 37)", value: Array("\(i)".utf8), headers: ["seq": "\(i)"])
        }
        let reports = try await producer.send(messages)
        XCTAssertEqual(reports.filter { if case .success = $0 { true } else { false } }.count, count)

        let consumer = try KafkaConsumer(configuration: broker.configuration,
                                         options: .init(groupId: "g-order", topics: ["orders"], maxBuffered: 500))
        var seen: [Int32: [Int]] = [:]
        var total = 0
        while total < count {
            let batch = await consumer.nextBatch(maxCount: 256, maxWait: .milliseconds(50))
            for m in batch {
                let value = Int(String(decoding: m.bytes, as: UTF8.self))!
                seen[m.partition, default: []].append(value)
                XCTAssertEqual(m.headers.first?.0, "seq")
                XCTAssertEqual(m.headers.first.map { String(decoding: $0.1, as: UTF8.self) }, "\(value)")
                consumer.markDone(m)
            }
            total += batch.count
        }
        XCTAssertEqual(total, count)
        XCTAssertEqual(Set(seen.values.joined()), Set(0..<count), "every message exactly once")
        for (partition, values) in seen {
            XCTAssertEqual(values, values.sorted(), "partition \(partition) keeps production order")
        }
        // Same key, same partition.
        var partitionOfKey: [Int: Int32] = [:]
        for (p, values) in seen { for v in values { partitionOfKey[v % 37] = partitionOfKey[v % 37] ?? p; XCTAssertEqual(partitionOfKey[v % 37], p) } }
        await consumer.close()

        let admin = try KafkaAdmin(configuration: broker.configuration)
        let lag = try await admin.consumerGroupLag(groupId: "g-order", topic: "orders")
        XCTAssertEqual(lag.map(\.partition), [0, 1, 2, 3])
        XCTAssertEqual(lag.map(\.lag), [0, 0, 0, 0], "close commits every offset marked done")
        XCTAssertEqual(lag.compactMap(\.committed).reduce(0, +), Int64(count))
    }

    func testIdempotentProducerWritesEachMessageOnceDespiteTransientProduceErrors() async throws {
        let broker = try EmbeddedKafkaBroker(brokers: 1)
        try broker.createTopic("flaky", partitions: 1)
        let producer = try KafkaProducer(configuration: broker.configuration)
        try await producer.send(ProducerMessage(topic: "flaky", key: "warm-up", value: Array("warm-up".utf8)))
        // The broker fails the next produce requests with retriable errors; the producer retries
        // with the same sequence numbers, so the log gets each message once and in order.
        broker.injectErrors([RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
                             RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS, RD_KAFKA_RESP_ERR__TRANSPORT], on: .produce)
        let results = try await producer.send((0..<200).map { ProducerMessage(topic: "flaky", key: "k", value: Array("\($0)".utf8)) })
        XCTAssertTrue(results.allSatisfy { if case .success = $0 { true } else { false } }, "\(results.first { if case .failure = $0 { true } else { false } }!)")

        let consumer = try KafkaConsumer(configuration: broker.configuration, options: .init(groupId: "g-flaky", topics: ["flaky"]))
        let values = await readValues(consumer, count: 201, within: .seconds(30))
        XCTAssertEqual(values, ["warm-up"] + (0..<200).map(String.init))
        let extra = await readValues(consumer, count: 1, within: .seconds(1))
        XCTAssertEqual(extra, [], "no duplicates after the last message")
        await consumer.close()
    }

    func testAFullBufferPausesFetchingAndResumesWithoutLoss() async throws {
        let broker = try EmbeddedKafkaBroker(brokers: 1)
        try broker.createTopic("burst", partitions: 2)
        let producer = try KafkaProducer(configuration: broker.configuration)
        _ = try await producer.send((0..<2000).map { ProducerMessage(topic: "burst", key: "k\($0 % 5)", value: Array("\($0)".utf8)) })
        let consumer = try KafkaConsumer(configuration: broker.configuration,
                                         options: .init(groupId: "g-burst", topics: ["burst"], maxBuffered: 200))
        // Read nothing for a while: the buffer fills and fetching pauses.
        var waited = 0
        while !consumer.isPaused && waited < 200 {
            try await Task.sleep(for: .milliseconds(50))
            waited += 1
        }
        XCTAssertTrue(consumer.isPaused, "fetching pauses when the buffer is full")
        try await Task.sleep(for: .milliseconds(500))
        // The poll loop checks the bound before taking each message, so it never exceeds it by more than one.
        XCTAssertLessThanOrEqual(consumer.bufferedCount, 201, "memory stays bounded")
        XCTAssertGreaterThanOrEqual(consumer.bufferedCount, 200)
        var values = Set<Int>()
        while values.count < 2000 {
            for m in await consumer.nextBatch(maxCount: 100, maxWait: .milliseconds(100)) {
                values.insert(Int(String(decoding: m.bytes, as: UTF8.self))!)
                consumer.markDone(m)
            }
        }
        XCTAssertEqual(values, Set(0..<2000))
        XCTAssertFalse(consumer.isPaused, "fetching resumes once drained")
        await consumer.close()
    }

    func testTheByteBoundPausesFetchingBeforeTheMessageBound() async throws {
        let broker = try EmbeddedKafkaBroker(brokers: 1)
        try broker.createTopic("large", partitions: 2)
        let producer = try KafkaProducer(configuration: broker.configuration)
        // 400 values of 2 KB (each names its number up front) against a bound of 64 KB, about 33 of them, 0.8 MB in all:
        // the mock cluster keeps at most 5 MiB per partition and deletes the oldest batches beyond it (rdkafka_mock.c,
        // max_size), which is why 300 values of 20 KB (6 MB, mostly on one partition by their keys) once lost their oldest
        // megabyte, paused or not.
        let value = { (i: Int) in Array("\(i):".utf8) + [UInt8](repeating: UInt8(ascii: "x"), count: 2_000) }
        let sent = try await producer.send((0..<400).map { ProducerMessage(topic: "large", key: "k\($0 % 3)", value: value($0)) })
        XCTAssertTrue(sent.allSatisfy { if case .success = $0 { true } else { false } }, "every value is delivered to the broker")
        let consumer = try KafkaConsumer(configuration: broker.configuration,
                                         options: .init(groupId: "g-large", topics: ["large"], maxBuffered: 10_000, maxBufferedBytes: 64 << 10))
        var waited = 0
        while !consumer.isPaused && waited < 200 {
            try await Task.sleep(for: .milliseconds(50))
            waited += 1
        }
        XCTAssertTrue(consumer.isPaused, "fetching pauses when the buffer holds its bytes' bound")
        try await Task.sleep(for: .milliseconds(500))
        XCTAssertLessThanOrEqual(consumer.bufferedBytes, (64 << 10) + 2_010, "the bound is passed by one message at most")
        XCTAssertGreaterThanOrEqual(consumer.bufferedBytes, 64 << 10)
        XCTAssertLessThan(consumer.bufferedCount, 40)
        // A lost value would leave the reader waiting: after a minute the consumer is closed, which ends it.
        let watchdog = Task {
            try await Task.sleep(for: .seconds(60))
            await consumer.close()
        }
        defer { watchdog.cancel() }
        var seen: [Int] = []
        while seen.count < 400 {
            let batch = await consumer.nextBatch(maxCount: 25, maxWait: .milliseconds(100))
            if batch.isEmpty { break }
            for m in batch {
                let number = Int(String(decoding: m.bytes.prefix { $0 != UInt8(ascii: ":") }, as: UTF8.self))!
                XCTAssertEqual(m.bytes, value(number), "value \(number) intact")
                seen.append(number)
                consumer.markDone(m)
            }
        }
        XCTAssertEqual(seen.sorted(), Array(0..<400), "none lost, none twice")
        XCTAssertFalse(consumer.isPaused, "fetching resumes once drained")
        XCTAssertEqual(consumer.bufferedBytes, 0)
        await consumer.close()
    }

    func testMarkDoneAfterRevocationStoresNothing() async throws {
        let broker = try EmbeddedKafkaBroker(brokers: 1)
        try broker.createTopic("fence", partitions: 1)
        let producer = try KafkaProducer(configuration: broker.configuration)
        _ = try await producer.send((0..<3).map { ProducerMessage(topic: "fence", key: "k", value: Array("\($0)".utf8)) })
        let events = EventLog()
        let consumer = try KafkaConsumer(configuration: broker.configuration, options: .init(groupId: "g-fence", topics: ["fence"])) {
            events.append($0)
        }
        let batch = await consumer.nextBatch(maxCount: 3, maxWait: .seconds(2))
        XCTAssertEqual(batch.count, 3)
        XCTAssertTrue(consumer.markDone(batch[0]))
        await consumer.close()
        XCTAssertEqual(events.all, [.assigned([TopicPartition(topic: "fence", partition: 0)]), .revoked([TopicPartition(topic: "fence", partition: 0)])])
        XCTAssertFalse(consumer.markDone(batch[2]), "the partition was revoked: its offsets are no longer ours")
        let lag = try await KafkaAdmin(configuration: broker.configuration).consumerGroupLag(groupId: "g-fence", topic: "fence")
        XCTAssertEqual(lag.first?.committed, 1, "only the message marked done before revocation is committed")
    }

    func testConfigurationRefusesUnknownPropertiesAndMasksSecrets() throws {
        let config = KafkaConfiguration(bootstrapServers: "localhost:9092", properties: ["sasl.password": "hunter2", "no.such.property": "x"])
        XCTAssertFalse(config.description.contains("hunter2"))
        XCTAssertTrue(config.description.contains("sasl.password=****"))
        XCTAssertThrowsError(try KafkaProducer(configuration: config)) { error in
            XCTAssertTrue("\(error)".contains("no.such.property"), "\(error)")
        }
    }
}

/// Reads up to `count` message values, giving up after `within` (a test must not hang).
func readValues(_ consumer: KafkaConsumer, count: Int, within: Duration) async -> [String] {
    let reader = Task {
        var values: [String] = []
        while values.count < count, let m = await consumer.next() {
            values.append(String(decoding: m.bytes, as: UTF8.self))
            consumer.markDone(m)
        }
        return values
    }
    let watchdog = Task {
        try await Task.sleep(for: within)
        await consumer.close()
    }
    let values = await reader.value
    watchdog.cancel()
    return values
}

final class EventLog: @unchecked Sendable {
    private let lock = NSLock()
    private var events: [RebalanceEvent] = []
    func append(_ e: RebalanceEvent) { lock.withLock { events.append(e) } }
    var all: [RebalanceEvent] { lock.withLock { events } }
}
