import BlendCore

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
        self.init(groupId: config.kafka.groupId, topics: [config.kafka.jobsTopic], maxBuffered: config.kafka.maxBufferedMessages)
        sessionTimeout = .milliseconds(config.kafka.sessionTimeoutMilliseconds)
        heartbeatInterval = .milliseconds(config.kafka.heartbeatIntervalMilliseconds)
        groupInstanceId = config.kafka.staticMembership ? config.workerId : nil
    }
}
