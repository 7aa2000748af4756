import BlendCore
import Logging

// The Kafka clients of a blendd process, from its configuration.

extension KafkaConfiguration {
    /// The cluster connection: bootstrap servers and every `kafka.properties` entry.
    public init(_ kafka: BlendConfiguration.Kafka) {
        self.init(bootstrapServers: kafka.bootstrapServers, properties: kafka.properties)
    }
}

extension KafkaProducer.Options {
    public init(_ config: BlendConfiguration) {
        self.init(deliveryTimeout: .milliseconds(config.kafka.deliveryTimeoutMilliseconds))
    }
}

extension KafkaConsumer.Options {
    /// The worker's membership of the jobs group; static (`group.instance.id` = worker id)
    /// when `kafka.static_membership` is set.
    public init(_ config: BlendConfiguration) {
        self.init(groupId: config.kafka.groupId, topics: [config.kafka.jobsTopic], maxBuffered: config.kafka.maxBufferedMessages,
                  maxBufferedBytes: config.kafka.maxBufferedMegabytes << 20)
        sessionTimeout = .milliseconds(config.kafka.sessionTimeoutMilliseconds)
        heartbeatInterval = .milliseconds(config.kafka.heartbeatIntervalMilliseconds)
        groupInstanceId = config.kafka.staticMembership ? config.workerId : nil
    }
}

extension KafkaConfiguration {
    /// What librdkafka refuses in the producer and consumer a worker would create from `config`
    /// (unknown properties, bad values, conflicts such as `acks=1` with idempotence), found by
    /// creating both handles without connecting. Empty when both can be created.
    public static func problems(in config: BlendConfiguration) -> [String] {
        let connection = KafkaConfiguration(config.kafka)
        var problems: [String] = []
        do {
            _ = try RDKafkaClient(role: .producer, properties: KafkaProducer.properties(connection, .init(config)),
                                  name: "producer", logger: Logger(label: "blendd.kafka.check"))
        } catch {
            problems.append("\(error)")
        }
        do {
            _ = try RDKafkaClient(role: .consumer, properties: KafkaConsumer.properties(connection, .init(config)),
                                  name: "consumer", logger: Logger(label: "blendd.kafka.check"))
        } catch {
            problems.append("\(error)")
        }
        return problems
    }
}
