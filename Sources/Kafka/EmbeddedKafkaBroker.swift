import CRdKafka
import Foundation
import Logging

/// A Kafka cluster inside this process, over librdkafka's mock cluster: real brokers on
/// loopback TCP ports that other processes can use (consumer groups, idempotent producers),
/// with the mock's fault injection. For `blendd dev` and tests; production uses a real cluster.
public final class EmbeddedKafkaBroker: @unchecked Sendable {
    /// The handle the mock cluster runs on; it is never used to produce.
    private let host: RDKafkaClient
    private let cluster: OpaquePointer
    /// `host:port,…` of the brokers.
    public let bootstrapServers: String
    public let brokerCount: Int32

    public init(brokers: Int32 = 1, logger: Logger = Logger(label: "blendd.kafka.embedded")) throws {
        precondition(brokers >= 1, "a cluster needs a broker")
        // This handle only hosts the cluster; its "no bootstrap.servers" warning is noise.
        host = try RDKafkaClient(role: .producer, properties: ["log_level": "3"], name: "embedded broker", logger: logger)
        guard let mc = rd_kafka_mock_cluster_new(host.handle, Int32(brokers)) else {
            throw KafkaError(configuration: "the mock cluster could not start", context: "starting the embedded broker")
        }
        cluster = mc
        brokerCount = brokers
        bootstrapServers = String(cString: rd_kafka_mock_cluster_bootstraps(mc))
    }

    deinit { rd_kafka_mock_cluster_destroy(cluster) }

    public var configuration: KafkaConfiguration { KafkaConfiguration(bootstrapServers: bootstrapServers) }

    /// Creates a topic (the mock does not implement the CreateTopics admin request).
    public func createTopic(_ name: String, partitions: Int32, replicationFactor: Int32 = 1) throws {
        let err = rd_kafka_mock_topic_create(cluster, name, partitions, min(replicationFactor, brokerCount))
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR || err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS else {
            throw KafkaError(code: err, context: "creating topic \(name) on the embedded broker")
        }
    }

    /// Kafka protocol request types that fault injection can target.
    public enum Request: Int16, Sendable {
        case produce = 0, fetch = 1, listOffsets = 2, metadata = 3, offsetCommit = 8, offsetFetch = 9
        case findCoordinator = 10, joinGroup = 11, heartbeat = 12, leaveGroup = 13, syncGroup = 14, initProducerId = 22
    }

    /// The next `errors.count` requests of this type fail with these errors, in order.
    public func injectErrors(_ errors: [rd_kafka_resp_err_t], on request: Request) {
        errors.withUnsafeBufferPointer { rd_kafka_mock_push_request_errors_array(cluster, request.rawValue, $0.count, $0.baseAddress) }
    }

    /// Takes a broker down (1-based id) or brings it back.
    public func setBroker(_ id: Int32, up: Bool) throws {
        let err = up ? rd_kafka_mock_broker_set_up(cluster, id) : rd_kafka_mock_broker_set_down(cluster, id)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(code: err, context: "setting broker \(id) \(up ? "up" : "down")") }
    }

    /// Adds round-trip latency to a broker's responses.
    public func setLatency(broker id: Int32, milliseconds: Int32) throws {
        let err = rd_kafka_mock_broker_set_rtt(cluster, id, milliseconds)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(code: err, context: "setting latency of broker \(id)") }
    }
}
