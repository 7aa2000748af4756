import BlendCore
import BlendTestSupport
import CRdKafka
import Foundation
import Kafka
import Logging
import XCTest

/// The client layer: events, fatal errors, error classes, timeouts and logging.
final class KafkaClientTests: XCTestCase {
    /// An address where nothing listens: connecting to it is refused at once.
    static let deadBroker = "127.0.0.1:1"

    func testAFatalProducerErrorIsAnEventAndEverySendAfterItFails() async throws {
        let broker = try EmbeddedKafkaBroker(brokers: 1)
        try broker.createTopic("fatal", partitions: 1)
        let producer = try KafkaProducer(configuration: broker.configuration)
        try await producer.send(ProducerMessage(topic: "fatal", key: "k", value: Array("before".utf8)))
        XCTAssertNil(producer.fatalError)
        producer.simulateFatalError(reason: "test: producer fenced")
        let fatal = await firstEvent(producer.events, within: .seconds(10)) { if case .fatal(let e) = $0 { e } else { nil } }
        let error = try XCTUnwrap(fatal, "the fatal error arrives as an event")
        XCTAssertEqual(error.name, "OUT_OF_ORDER_SEQUENCE_NUMBER")
        XCTAssertEqual(error.disposition, .fatal)
        XCTAssertTrue(error.message.contains("test: producer fenced"), error.message)
        XCTAssertEqual(producer.fatalError?.name, "OUT_OF_ORDER_SEQUENCE_NUMBER")
        do {
            try await producer.send(ProducerMessage(topic: "fatal", key: "k", value: Array("after".utf8)))
            XCTFail("a fatal producer sends nothing")
        } catch let error as KafkaError {
            XCTAssertEqual(error.disposition, .fatal, "\(error)")
        }
    }

    func testAFatalConsumerErrorIsAnEvent() async throws {
        let broker = try EmbeddedKafkaBroker(brokers: 1)
        try broker.createTopic("fatal-c", partitions: 1)
        let consumer = try KafkaConsumer(configuration: broker.configuration, options: .init(groupId: "g-fatal", topics: ["fatal-c"]))
        consumer.simulateFatalError(reason: "test: instance fenced")
        let fatal = await firstEvent(consumer.events, within: .seconds(10)) { if case .fatal(let e) = $0 { e } else { nil } }
        XCTAssertEqual(fatal?.name, "FENCED_INSTANCE_ID")
        XCTAssertTrue(fatal?.message.contains("test: instance fenced") ?? false)
        XCTAssertEqual(fatal?.disposition, .fatal)
        XCTAssertEqual(consumer.fatalError, fatal)
        await consumer.close()
    }

    func testRebalancesAppearOnTheEventStreamAfterTheHandler() async throws {
        let broker = try EmbeddedKafkaBroker(brokers: 1)
        try broker.createTopic("events", partitions: 2)
        let handled = EventLog()
        let consumer = try KafkaConsumer(configuration: broker.configuration, options: .init(groupId: "g-events", topics: ["events"])) {
            handled.append($0)
        }
        let assigned = await firstEvent(consumer.events, within: .seconds(30)) { if case .rebalance(let r) = $0 { r } else { nil } }
        let partitions = [TopicPartition(topic: "events", partition: 0), TopicPartition(topic: "events", partition: 1)]
        guard case .assigned(let tps) = assigned else { return XCTFail("first rebalance event: \(String(describing: assigned))") }
        XCTAssertEqual(Set(tps), Set(partitions))
        XCTAssertEqual(handled.all.count, 1, "the synchronous handler ran before the event was published")
        await consumer.close()
    }

    func testStatisticsArriveAsEvents() async throws {
        let broker = try EmbeddedKafkaBroker(brokers: 1)
        var configuration = broker.configuration
        configuration.statisticsInterval = .milliseconds(100)
        let producer = try KafkaProducer(configuration: configuration)
        let json = await firstEvent(producer.events, within: .seconds(10)) { if case .statistics(let s) = $0 { s } else { nil } }
        let object = try JSONSerialization.jsonObject(with: Data(try XCTUnwrap(json).utf8)) as? [String: Any]
        XCTAssertEqual(object?["type"] as? String, "producer")
    }

    func testADeliveryToADeadClusterFailsWithinItsTimeoutAndSaysWhy() async throws {
        let producer = try KafkaProducer(configuration: KafkaConfiguration(bootstrapServers: Self.deadBroker),
                                         options: .init(deliveryTimeout: .seconds(2)))
        let started = ContinuousClock.now
        let results = try await producer.send([ProducerMessage(topic: "t", key: "k", value: [1, 2, 3])])
        let elapsed = ContinuousClock.now - started
        guard case .failure(let error) = results.first else { return XCTFail("delivered to a dead cluster: \(results)") }
        XCTAssertEqual(error.name, "_MSG_TIMED_OUT")
        XCTAssertEqual(error.disposition, .transient)
        XCTAssertTrue(error.brokerError?.contains("Connection refused") ?? false, "\(error)")
        XCTAssertTrue("\(error)".contains("last broker error: _TRANSPORT"), "\(error)")
        XCTAssertLessThan(elapsed, .seconds(10), "the delivery timeout bounds the wait")
    }

    func testEachConnectFailureIsLoggedOnce() async throws {
        let records = LogRecords()
        let logger = Logger(label: "test") { _ in CapturingLogHandler(records: records) }
        let admin = try KafkaAdmin(configuration: KafkaConfiguration(bootstrapServers: Self.deadBroker,
                                                                     properties: ["reconnect.backoff.ms": "100", "reconnect.backoff.max.ms": "200"]),
                                   logger: logger)
        // The admin client is polled without being used, so its error callback runs (a readiness
        // check against a dead cluster says why).
        try await eventually(within: 10, "connect failures reported") { admin.brokerErrorCount >= 2 }
        XCTAssertTrue(records.all.contains { $0.contains("Connect to ipv4#127.0.0.1:1 failed: Connection refused") }, "\(records.all)")
        // librdkafka reports a failed connect as a log line and as an error: only one of them is logged.
        try await eventually(within: 5, "one log line per failure") { records.all.count == admin.brokerErrorCount }
    }

    func testPermanentFailuresAreToldApartFromTransientOnes() async throws {
        let broker = try EmbeddedKafkaBroker(brokers: 1)
        try broker.createTopic("classes", partitions: 1)
        let producer = try KafkaProducer(configuration: broker.configuration)
        XCTAssertEqual(producer.messageMaxBytes, 1_000_000, "librdkafka's default")
        let results = try await producer.send([
            ProducerMessage(topic: "classes", key: "big", value: [UInt8](repeating: 7, count: producer.messageMaxBytes + 1)),
            ProducerMessage(topic: "classes", key: "fine", value: [1]),
        ])
        guard case .failure(let tooLarge) = results[0], case .success = results[1] else { return XCTFail("\(results)") }
        XCTAssertEqual(tooLarge.name, "MSG_SIZE_TOO_LARGE")
        XCTAssertTrue(tooLarge.isPermanent, "\(tooLarge)")

        broker.injectErrors([RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED], on: .produce)
        let denied = try await producer.send([ProducerMessage(topic: "classes", key: "k", value: [2])])
        guard case .failure(let authorization) = denied.first else { return XCTFail("\(denied)") }
        XCTAssertEqual(authorization.name, "TOPIC_AUTHORIZATION_FAILED")
        XCTAssertTrue(authorization.isPermanent)
        XCTAssertNil(producer.fatalError, "a refused message does not end the producer")

        for code in [RD_KAFKA_RESP_ERR_INVALID_RECORD, RD_KAFKA_RESP_ERR_POLICY_VIOLATION, RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE,
                     RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION, RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED] {
            XCTAssertEqual(KafkaError(code: code, context: "test").disposition, .permanent, String(cString: rd_kafka_err2name(code)))
        }
        for code in [RD_KAFKA_RESP_ERR__MSG_TIMED_OUT, RD_KAFKA_RESP_ERR__TRANSPORT, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                     RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC, RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART, RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN] {
            XCTAssertEqual(KafkaError(code: code, context: "test").disposition, .transient, String(cString: rd_kafka_err2name(code)))
        }
        for code in [RD_KAFKA_RESP_ERR__FATAL, RD_KAFKA_RESP_ERR__FENCED, RD_KAFKA_RESP_ERR_PRODUCER_FENCED, RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID] {
            XCTAssertEqual(KafkaError(code: code, context: "test").disposition, .fatal, String(cString: rd_kafka_err2name(code)))
        }
    }

    func testTheEffectiveMessageSizeLimitFollowsTheRawProperty() throws {
        let producer = try KafkaProducer(configuration: KafkaConfiguration(bootstrapServers: Self.deadBroker, properties: ["message.max.bytes": "2000000"]))
        XCTAssertEqual(producer.messageMaxBytes, 2_000_000)
    }

    func testTheWorkersConsumerAndProducerFollowTheConfiguration() {
        var config = BlendConfiguration()
        config.workerId = "host-w3"
        XCTAssertNil(KafkaConsumer.Options(config).groupInstanceId, "dynamic membership by default")
        config.kafka.staticMembership = true
        config.kafka.sessionTimeoutMilliseconds = 9000
        config.kafka.heartbeatIntervalMilliseconds = 2000
        config.kafka.deliveryTimeoutMilliseconds = 7000
        let options = KafkaConsumer.Options(config)
        XCTAssertEqual(options.groupInstanceId, "host-w3")
        XCTAssertEqual(options.sessionTimeout, .seconds(9))
        XCTAssertEqual(options.heartbeatInterval, .seconds(2))
        XCTAssertEqual(options.topics, [config.kafka.jobsTopic])
        XCTAssertEqual(KafkaProducer.Options(config).deliveryTimeout, .seconds(7))
        XCTAssertEqual(KafkaConfiguration.problems(in: config), [])
        config.kafka.properties["acks"] = "1"
        XCTAssertEqual(KafkaConfiguration.problems(in: config).count, 1, "acks=1 conflicts with the idempotent producer")
    }

    func testTypedSecurityFieldsBecomeLibrdkafkaPropertiesAndTheirSecretsAreMasked() throws {
        let configuration = KafkaConfiguration(bootstrapServers: "k:9093", securityProtocol: .saslSSL,
                                               sasl: .init(mechanism: .scramSHA512, username: "svc", password: "hunter2"),
                                               tls: .init(caLocation: "/etc/ca.pem", keyPassword: "keypass"),
                                               properties: ["client.rack": "a"])
        XCTAssertEqual(configuration.librdkafkaProperties, [
            "bootstrap.servers": "k:9093", "security.protocol": "sasl_ssl", "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": "svc", "sasl.password": "hunter2", "ssl.ca.location": "/etc/ca.pem", "ssl.key.password": "keypass",
            "client.rack": "a",
        ])
        XCTAssertFalse(configuration.description.contains("hunter2") || configuration.description.contains("keypass"), configuration.description)
        XCTAssertThrowsError(try KafkaProducer(configuration: KafkaConfiguration(bootstrapServers: "k:1", properties: ["sasl.password": "hunter2", "security.protocol": "carrier-pigeon"]))) { error in
            XCTAssertFalse("\(error)".contains("hunter2"), "\(error)")
            XCTAssertTrue("\(error)".contains("security.protocol=carrier-pigeon refused"), "\(error)")
        }
    }
}

/// The first event `match` accepts, or nil after `within`.
func firstEvent<Event: Sendable, T: Sendable>(_ events: AsyncStream<Event>, within: Duration,
                                              _ match: @escaping @Sendable (Event) -> T?) async -> T? {
    await withTaskGroup(of: T?.self) { group in
        group.addTask {
            for await event in events { if let m = match(event) { return m } }
            return nil
        }
        group.addTask {
            try? await Task.sleep(for: within)
            return nil
        }
        let first = await group.next() ?? nil
        group.cancelAll()
        return first
    }
}

final class LogRecords: @unchecked Sendable {
    private let lock = NSLock()
    private var records: [String] = []
    func append(_ r: String) { lock.withLock { records.append(r) } }
    var all: [String] { lock.withLock { records } }
}

struct CapturingLogHandler: LogHandler {
    let records: LogRecords
    var logLevel: Logger.Level = .trace
    var metadata: Logger.Metadata = [:]
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(event: LogEvent) { records.append("\(event.level): \(event.message)") }
}
