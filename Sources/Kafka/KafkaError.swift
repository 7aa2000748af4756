import CRdKafka

/// A Kafka failure with librdkafka's error name (e.g. `_MSG_TIMED_OUT`, `TOPIC_AUTHORIZATION_FAILED`),
/// its message, and where it happened.
public struct KafkaError: Error, Sendable, CustomStringConvertible {
    public var code: Int32
    /// librdkafka's symbolic name without the `RD_KAFKA_RESP_ERR_` prefix.
    public var name: String
    public var message: String
    /// What we were doing: "producing to blend.events [3]", "creating topic blend.jobs", …
    public var context: String
    /// Fatal errors leave the client unusable (e.g. a fenced idempotent producer): restart it.
    public var isFatal: Bool
    /// librdkafka's own judgement that retrying may succeed.
    public var isRetriable: Bool

    public init(code: rd_kafka_resp_err_t, message: String? = nil, context: String, isFatal: Bool = false, isRetriable: Bool? = nil) {
        self.code = code.rawValue
        self.name = String(cString: rd_kafka_err2name(code))
        self.message = message ?? String(cString: rd_kafka_err2str(code))
        self.context = context
        self.isFatal = isFatal
        self.isRetriable = isRetriable ?? Self.retriableCodes.contains(code.rawValue)
    }

    public init(configuration message: String, context: String) {
        self.code = RD_KAFKA_RESP_ERR__INVALID_ARG.rawValue
        self.name = "_INVALID_ARG"
        self.message = message
        self.context = context
        self.isFatal = false
        self.isRetriable = false
    }

    init(error: OpaquePointer, context: String) {
        self.init(code: rd_kafka_error_code(error), message: String(cString: rd_kafka_error_string(error)), context: context,
                  isFatal: rd_kafka_error_is_fatal(error) != 0, isRetriable: rd_kafka_error_is_retriable(error) != 0)
    }

    private static let retriableCodes: Set<Int32> = [
        RD_KAFKA_RESP_ERR__TRANSPORT, RD_KAFKA_RESP_ERR__TIMED_OUT, RD_KAFKA_RESP_ERR__MSG_TIMED_OUT,
        RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN, RD_KAFKA_RESP_ERR__QUEUE_FULL, RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
        RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS, RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
        RD_KAFKA_RESP_ERR_NOT_COORDINATOR, RD_KAFKA_RESP_ERR__WAIT_COORD,
    ].reduce(into: Set<Int32>()) { $0.insert($1.rawValue) }

    public var description: String { "kafka error \(name) while \(context): \(message)\(isFatal ? " (fatal)" : "")" }
}

/// Text of a NUL-terminated C buffer.
func cString(_ buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
