import BlendCore
import CRdKafka

/// How a client reaches and authenticates to the cluster, shared by producers, consumers and
/// the admin client. Typed fields for what blendd and its operators commonly set; `properties`
/// is the escape hatch for any other librdkafka property and is applied after the typed fields.
public struct KafkaConfiguration: Sendable, CustomStringConvertible {
    public enum SecurityProtocol: String, Sendable, CaseIterable {
        case plaintext, ssl
        case saslPlaintext = "sasl_plaintext"
        case saslSSL = "sasl_ssl"
    }

    public struct SASL: Sendable {
        public enum Mechanism: String, Sendable, CaseIterable {
            case plain = "PLAIN"
            case scramSHA256 = "SCRAM-SHA-256"
            case scramSHA512 = "SCRAM-SHA-512"
            case oauthBearer = "OAUTHBEARER"
        }

        public var mechanism: Mechanism
        public var username: String?
        public var password: String?

        public init(mechanism: Mechanism, username: String? = nil, password: String? = nil) {
            self.mechanism = mechanism
            self.username = username
            self.password = password
        }
    }

    public struct TLS: Sendable {
        /// CA certificates to verify the brokers with (a file or directory); nil: the system's.
        public var caLocation: String?
        public var certificateLocation: String?
        public var keyLocation: String?
        public var keyPassword: String?

        public init(caLocation: String? = nil, certificateLocation: String? = nil, keyLocation: String? = nil, keyPassword: String? = nil) {
            self.caLocation = caLocation
            self.certificateLocation = certificateLocation
            self.keyLocation = keyLocation
            self.keyPassword = keyPassword
        }
    }

    /// `host:port[,host:port…]`.
    public var bootstrapServers: String
    public var securityProtocol: SecurityProtocol?
    public var sasl: SASL?
    public var tls: TLS?
    public var clientId: String?
    /// Statistics JSON is emitted as an event at this interval; nil: none.
    public var statisticsInterval: Duration?
    /// Any librdkafka property, applied after the typed fields.
    public var properties: [String: String]

    public init(bootstrapServers: String, securityProtocol: SecurityProtocol? = nil, sasl: SASL? = nil, tls: TLS? = nil,
                clientId: String? = nil, statisticsInterval: Duration? = nil, properties: [String: String] = [:]) {
        self.bootstrapServers = bootstrapServers
        self.securityProtocol = securityProtocol
        self.sasl = sasl
        self.tls = tls
        self.clientId = clientId
        self.statisticsInterval = statisticsInterval
        self.properties = properties
    }

    /// Property names whose values never appear in logs or messages (the one list in BlendCore).
    public static func isSecret(_ key: String) -> Bool { ConfigurationLoader.isSecretKafkaProperty(key) }

    /// Every property this configuration sets, typed fields first, then `properties`.
    public var librdkafkaProperties: [String: String] {
        var all: [String: String] = ["bootstrap.servers": bootstrapServers]
        if let securityProtocol { all["security.protocol"] = securityProtocol.rawValue }
        if let sasl {
            all["sasl.mechanism"] = sasl.mechanism.rawValue
            if let u = sasl.username { all["sasl.username"] = u }
            if let p = sasl.password { all["sasl.password"] = p }
        }
        if let tls {
            if let v = tls.caLocation { all["ssl.ca.location"] = v }
            if let v = tls.certificateLocation { all["ssl.certificate.location"] = v }
            if let v = tls.keyLocation { all["ssl.key.location"] = v }
            if let v = tls.keyPassword { all["ssl.key.password"] = v }
        }
        if let clientId { all["client.id"] = clientId }
        if let statisticsInterval { all["statistics.interval.ms"] = String(statisticsInterval.milliseconds) }
        for (k, v) in properties { all[k] = v }
        return all
    }

    /// The properties with secrets masked, for logs.
    public var description: String {
        let all = librdkafkaProperties
        return all.keys.sorted().map { "\($0)=\(Self.isSecret($0) ? ConfigurationLoader.masked : all[$0]!)" }.joined(separator: " ")
    }
}

extension Duration {
    /// Whole milliseconds, clamped to what librdkafka's `int` properties hold.
    var milliseconds: Int32 {
        Int32(clamping: components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000)
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
