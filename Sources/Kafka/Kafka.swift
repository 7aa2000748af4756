// Kafka: a Swift API over librdkafka (producer, consumer, admin, embedded mock broker).
