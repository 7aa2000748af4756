import BlendCore
import CRdKafka

/// A Kafka failure with librdkafka's error name (e.g. `_MSG_TIMED_OUT`, `TOPIC_AUTHORIZATION_FAILED`),
/// its message, where it happened, and what retrying it can achieve.
public struct KafkaError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What retrying can achieve.
    public enum Disposition: String, Sendable {
        /// The cluster may accept it later (a broker down, a leader moving, a timeout): retry with backoff.
        case transient
        /// This message or request will never be accepted as it is (too large, invalid record or
        /// topic, not authorized, refused by policy): record it and go on with the others.
        case permanent
        /// The client itself is unusable (fenced or fatal idempotent producer, fatal consumer
        /// error): the process must exit and be restarted.
        case fatal
    }

    public var code: Int32
    /// librdkafka's symbolic name without the `RD_KAFKA_RESP_ERR_` prefix.
    public var name: String
    public var message: String
    /// What we were doing: "delivering to blend.events", "creating topic blend.jobs", …
    public var context: String
    /// Fatal errors leave the client unusable (e.g. a fenced idempotent producer): restart it.
    public var isFatal: Bool
    /// librdkafka's own judgement that retrying may succeed.
    public var isRetriable: Bool
    /// The client's latest broker-level failure, when it explains this error (a delivery that
    /// timed out because no broker could be reached says why).
    public var brokerError: String?

    public init(code: rd_kafka_resp_err_t, message: String? = nil, context: String, isFatal: Bool = false, isRetriable: Bool? = nil) {
        self.code = code.rawValue
        self.name = String(cString: rd_kafka_err2name(code))
        self.message = ConfigurationLoader.mask(message ?? String(cString: rd_kafka_err2str(code)))
        self.context = context
        self.isFatal = isFatal || code == RD_KAFKA_RESP_ERR__FATAL
        self.isRetriable = isRetriable ?? Self.retriableCodes.contains(code.rawValue)
    }

    public init(configuration message: String, context: String) {
        self.code = RD_KAFKA_RESP_ERR__INVALID_ARG.rawValue
        self.name = "_INVALID_ARG"
        self.message = ConfigurationLoader.mask(message)
        self.context = context
        self.isFatal = false
        self.isRetriable = false
    }

    init(error: OpaquePointer, context: String) {
        self.init(code: rd_kafka_error_code(error), message: String(cString: rd_kafka_error_string(error)), context: context,
                  isFatal: rd_kafka_error_is_fatal(error) != 0, isRetriable: rd_kafka_error_is_retriable(error) != 0)
    }

    public var disposition: Disposition {
        if isFatal || Self.fatalCodes.contains(code) { return .fatal }
        return Self.permanentCodes.contains(code) ? .permanent : .transient
    }

    /// The message or request will never succeed as it is; retrying it only repeats the failure.
    public var isPermanent: Bool { disposition == .permanent }

    /// Errors no retry fixes for this message or request. A topic that does not exist (yet) is
    /// not among them: it is a deployment fault that creating the topic repairs, so waiting helps.
    static let permanentCodes: Set<Int32> = [
        RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE, RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE,
        RD_KAFKA_RESP_ERR_INVALID_MSG, RD_KAFKA_RESP_ERR_INVALID_RECORD, RD_KAFKA_RESP_ERR__BAD_MSG,
        RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION, RD_KAFKA_RESP_ERR__INVALID_ARG, RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION,
        RD_KAFKA_RESP_ERR_UNSUPPORTED_FOR_MESSAGE_FORMAT, RD_KAFKA_RESP_ERR_INVALID_REQUIRED_ACKS,
        RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED, RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED,
        RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED, RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        RD_KAFKA_RESP_ERR_POLICY_VIOLATION,
    ].reduce(into: Set<Int32>()) { $0.insert($1.rawValue) }

    /// Errors that end the client whether or not librdkafka raised them through its fatal path.
    static let fatalCodes: Set<Int32> = [
        RD_KAFKA_RESP_ERR__FATAL, RD_KAFKA_RESP_ERR__FENCED, RD_KAFKA_RESP_ERR_PRODUCER_FENCED,
        RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID,
    ].reduce(into: Set<Int32>()) { $0.insert($1.rawValue) }

    private static let retriableCodes: Set<Int32> = [
        RD_KAFKA_RESP_ERR__TRANSPORT, RD_KAFKA_RESP_ERR__TIMED_OUT, RD_KAFKA_RESP_ERR__MSG_TIMED_OUT,
        RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN, RD_KAFKA_RESP_ERR__QUEUE_FULL, RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
        RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS, RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
        RD_KAFKA_RESP_ERR_NOT_COORDINATOR, RD_KAFKA_RESP_ERR__WAIT_COORD,
    ].reduce(into: Set<Int32>()) { $0.insert($1.rawValue) }

    public var description: String {
        let cause = brokerError.map { " (last broker error: \($0))" } ?? ""
        return "kafka error \(name) while \(context): \(message)\(cause)\(isFatal ? " (fatal)" : "")"
    }
}
