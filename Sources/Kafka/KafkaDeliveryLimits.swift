import CRdKafka
import Foundation

extension KafkaConfiguration {
    /// The producer's `message.max.bytes`: librdkafka refuses to enqueue a bigger record.
    /// librdkafka's default (1,000,000) when the property is not set.
    public var messageMaxBytes: Int {
        properties["message.max.bytes"].flatMap { Int($0.trimmingCharacters(in: .whitespaces)) } ?? 1_000_000
    }
}

extension ProducerMessage {
    /// What librdkafka counts against `message.max.bytes` for this record: key, value and
    /// headers plus the record framing (at most 64 bytes, and a few per header).
    public var wireSize: Int {
        64 + (key?.count ?? 0) + (value?.count ?? 0) + headers.reduce(0) { $0 + 12 + $1.0.utf8.count + $1.1.count }
    }
}

extension KafkaError {
    /// Whether publishing the same record again can succeed. Permanent: the record or topic is
    /// invalid, too large, or refused by authorization or policy; retrying only repeats the
    /// refusal. Everything else (timeouts, transport, leadership, queue full) is transient.
    public var isPermanentForRecord: Bool {
        Self.permanentRecordCodes.contains(code)
    }

    private static let permanentRecordCodes: Set<Int32> = [
        RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, RD_KAFKA_RESP_ERR_INVALID_MSG, RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE,
        RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE, RD_KAFKA_RESP_ERR_INVALID_RECORD, RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION,
        RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED, RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED,
        RD_KAFKA_RESP_ERR_POLICY_VIOLATION, RD_KAFKA_RESP_ERR_INVALID_REQUIRED_ACKS, RD_KAFKA_RESP_ERR__INVALID_ARG,
    ].reduce(into: Set<Int32>()) { $0.insert($1.rawValue) }

    /// The record is larger than the producer or the broker accepts.
    public var isRecordTooLarge: Bool {
        code == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE.rawValue || code == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE.rawValue
            || code == RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE.rawValue
    }
}
