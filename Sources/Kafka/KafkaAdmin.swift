import CRdKafka
import Foundation
import Logging

/// Topic creation, metadata and consumer-group lag. Blocking librdkafka calls run on a
/// dispatch thread, never on Swift's cooperative pool; the client is polled like every other,
/// so broker failures (say, a readiness check against a dead cluster) are logged as they happen.
public final class KafkaAdmin: @unchecked Sendable {
    public struct NewTopic: Sendable {
        public var name: String
        public var partitions: Int32
        public var replicationFactor: Int32
        public var config: [String: String]

        public init(name: String, partitions: Int32, replicationFactor: Int32 = -1, config: [String: String] = [:]) {
            self.name = name
            self.partitions = partitions
            self.replicationFactor = replicationFactor
            self.config = config
        }
    }

    public struct PartitionLag: Sendable, Equatable {
        public var partition: Int32
        /// The group's committed offset; nil when the group never committed here.
        public var committed: Int64?
        public var highWatermark: Int64
        /// Messages not yet committed by the group (everything since the low watermark when nothing is committed).
        public var lag: Int64
    }

    private let configuration: KafkaConfiguration
    private let client: RDKafkaClient
    private let logger: Logger
    private let timeoutMilliseconds: Int32
    private var handle: OpaquePointer { client.handle }

    public init(configuration: KafkaConfiguration, timeout: Duration = .seconds(10), logger: Logger = Logger(label: "blendd.kafka.admin")) throws {
        self.configuration = configuration
        self.logger = logger
        self.timeoutMilliseconds = timeout.milliseconds
        client = try RDKafkaClient(role: .producer, properties: configuration.librdkafkaProperties, name: "admin client", logger: logger)
        client.startPolling()
    }

    /// Broker-level failures this client has seen (each logged once).
    public var brokerErrorCount: Int { client.brokerErrorCount }

    /// Creates the topics; a topic that already exists is not an error.
    public func createTopics(_ topics: [NewTopic]) async throws {
        nonisolated(unsafe) let rk = handle
        let timeout = timeoutMilliseconds
        try await runBlocking {
            var errstr = [CChar](repeating: 0, count: 512)
            var natives: [OpaquePointer?] = []
            defer { natives.forEach { rd_kafka_NewTopic_destroy($0) } }
            for t in topics {
                guard let nt = rd_kafka_NewTopic_new(t.name, t.partitions, t.replicationFactor, &errstr, errstr.count) else {
                    throw KafkaError(configuration: cString(errstr), context: "creating topic \(t.name)")
                }
                for (k, v) in t.config { rd_kafka_NewTopic_set_config(nt, k, v) }
                natives.append(nt)
            }
            let queue = rd_kafka_queue_new(rk)
            defer { rd_kafka_queue_destroy(queue) }
            natives.withUnsafeMutableBufferPointer { rd_kafka_CreateTopics(rk, $0.baseAddress, $0.count, nil, queue) }
            guard let event = rd_kafka_queue_poll(queue, timeout + 1000) else {
                throw KafkaError(code: RD_KAFKA_RESP_ERR__TIMED_OUT, context: "creating topics \(topics.map(\.name).joined(separator: ", "))")
            }
            defer { rd_kafka_event_destroy(event) }
            let err = rd_kafka_event_error(event)
            guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
                throw KafkaError(code: err, message: String(cString: rd_kafka_event_error_string(event)),
                                 context: "creating topics \(topics.map(\.name).joined(separator: ", "))")
            }
            var count = 0
            let results = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(event), &count)
            for i in 0..<count {
                let r = results![i]
                let topicErr = rd_kafka_topic_result_error(r)
                if topicErr != RD_KAFKA_RESP_ERR_NO_ERROR && topicErr != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS {
                    throw KafkaError(code: topicErr, message: rd_kafka_topic_result_error_string(r).map { String(cString: $0) },
                                     context: "creating topic \(String(cString: rd_kafka_topic_result_name(r)))")
                }
            }
        }
    }

    /// Per-partition lag of a consumer group on a topic: high watermark minus committed offset.
    public func consumerGroupLag(groupId: String, topic: String) async throws -> [PartitionLag] {
        let configuration = self.configuration
        let timeout = timeoutMilliseconds
        let logger = self.logger
        nonisolated(unsafe) let rk = handle
        return try await runBlocking {
            let partitions = try Self.partitionIds(rk: rk, topic: topic, timeout: timeout)
            // Committed offsets are read through a group-member handle that never joins.
            var properties = configuration.librdkafkaProperties
            properties["group.id"] = groupId
            properties["enable.auto.commit"] = "false"
            let member = try RDKafkaClient(role: .consumer, properties: properties, name: "offset reader of \(groupId)", logger: logger)
            let consumer = member.handle!
            let list = TopicPartition.nativeList(partitions.map { TopicPartition(topic: topic, partition: $0) })
            defer { rd_kafka_topic_partition_list_destroy(list) }
            let err = rd_kafka_committed(consumer, list, timeout)
            guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(code: err, context: "reading offsets of group \(groupId)") }
            var lags: [PartitionLag] = []
            for i in 0..<Int(list.pointee.cnt) {
                let e = list.pointee.elems[i]
                var low: Int64 = 0, high: Int64 = 0
                let werr = rd_kafka_query_watermark_offsets(rk, topic, e.partition, &low, &high, timeout)
                guard werr == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(code: werr, context: "reading watermarks of \(topic)[\(e.partition)]") }
                let committed: Int64? = e.offset >= 0 ? e.offset : nil
                lags.append(PartitionLag(partition: e.partition, committed: committed, highWatermark: high, lag: max(0, high - (committed ?? low))))
            }
            return lags.sorted { $0.partition < $1.partition }
        }
    }

    /// Partitions of a topic from the cluster's metadata.
    public func partitions(of topic: String) async throws -> [Int32] {
        nonisolated(unsafe) let rk = handle
        let timeout = timeoutMilliseconds
        return try await runBlocking { try Self.partitionIds(rk: rk, topic: topic, timeout: timeout) }
    }

    private static func partitionIds(rk: OpaquePointer, topic: String, timeout: Int32) throws -> [Int32] {
        let rkt = rd_kafka_topic_new(rk, topic, nil)
        defer { rd_kafka_topic_destroy(rkt) }
        var metadata: UnsafePointer<rd_kafka_metadata>?
        let err = rd_kafka_metadata(rk, 0, rkt, &metadata, timeout)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata else { throw KafkaError(code: err, context: "reading metadata of \(topic)") }
        defer { rd_kafka_metadata_destroy(metadata) }
        guard metadata.pointee.topic_cnt == 1 else { throw KafkaError(code: RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC, context: "reading metadata of \(topic)") }
        let t = metadata.pointee.topics[0]
        if t.err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(code: t.err, context: "reading metadata of \(topic)") }
        return (0..<Int(t.partition_cnt)).map { t.partitions[$0].id }.sorted()
    }
}

/// Runs blocking work on a dispatch thread and resumes with its result.
func runBlocking<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async { continuation.resume(with: Result { try work() }) }
    }
}
