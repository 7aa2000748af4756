import CRdKafka

/// librdkafka properties for one client. blendd sets what its delivery guarantees depend on;
/// anything else (security.protocol, sasl.*, ssl.*, client.rack, …) passes through unchanged.
public struct KafkaConfiguration: Sendable, CustomStringConvertible {
    public var bootstrapServers: String
    public var properties: [String: String]

    public init(bootstrapServers: String, properties: [String: String] = [:]) {
        self.bootstrapServers = bootstrapServers
        self.properties = properties
    }

    /// Property names whose values never appear in logs or messages.
    public static func isSecret(_ key: String) -> Bool {
        let k = key.lowercased()
        return ["password", "secret", "sasl.oauthbearer.config", "token", "ssl.key.pem", "ssl_key", "private"].contains { k.contains($0) }
    }

    /// The properties with secrets masked, for logs.
    public var description: String {
        let all = properties.merging(["bootstrap.servers": bootstrapServers]) { a, _ in a }
        return all.keys.sorted().map { "\($0)=\(Self.isSecret($0) ? "****" : all[$0]!)" }.joined(separator: " ")
    }

    /// A librdkafka configuration object with `overrides` applied last; a refused property is
    /// reported by name (its value only when it is not a secret).
    func makeNative(overrides: [String: String], context: String) throws -> OpaquePointer {
        let conf = rd_kafka_conf_new()!
        var all = properties
        all["bootstrap.servers"] = bootstrapServers
        for (k, v) in overrides { all[k] = v }
        var errstr = [CChar](repeating: 0, count: 512)
        for key in all.keys.sorted() {
            let value = all[key]!
            if rd_kafka_conf_set(conf, key, value, &errstr, errstr.count) != RD_KAFKA_CONF_OK {
                rd_kafka_conf_destroy(conf)
                let shown = Self.isSecret(key) ? "****" : value
                throw KafkaError(configuration: "property \(key)=\(shown) refused: \(cString(errstr))", context: context)
            }
        }
        return conf
    }
}

/// A topic and partition.
public struct TopicPartition: Sendable, Hashable, CustomStringConvertible {
    public var topic: String
    public var partition: Int32

    public init(topic: String, partition: Int32) {
        self.topic = topic
        self.partition = partition
    }

    public var description: String { "\(topic)[\(partition)]" }
}

extension TopicPartition {
    /// Reads a librdkafka partition list.
    static func list(_ native: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?) -> [TopicPartition] {
        guard let native else { return [] }
        return (0..<Int(native.pointee.cnt)).map { i in
            let e = native.pointee.elems[i]
            return TopicPartition(topic: String(cString: e.topic), partition: e.partition)
        }
    }

    /// A new librdkafka partition list; the caller destroys it.
    static func nativeList(_ partitions: [TopicPartition], offsets: [Int64]? = nil) -> UnsafeMutablePointer<rd_kafka_topic_partition_list_t> {
        let list = rd_kafka_topic_partition_list_new(Int32(max(partitions.count, 1)))!
        for (i, tp) in partitions.enumerated() {
            let element = rd_kafka_topic_partition_list_add(list, tp.topic, tp.partition)!
            if let offsets { element.pointee.offset = offsets[i] }
        }
        return list
    }
}
