import Foundation
import Kafka

/// Every message of a topic from the start: reads until `expecting` arrived, then a moment
/// longer, so a duplicate beyond the expected count shows up too. `nextBatch` waits for a first
/// message without end, so the consumer is closed on a timer to end the last wait.
func readTopic(_ topic: String, from broker: EmbeddedKafkaBroker, expecting count: Int, timeout: Double = 30,
               quietSeconds: Double = 1) async -> [KafkaMessage] {
    let consumer = try! KafkaConsumer(configuration: broker.configuration,
                                      options: .init(groupId: "reader-\(topic)-\(UUID().uuidString)", topics: [topic]))
    let closer = Task {
        try? await Task.sleep(for: .seconds(timeout))
        await consumer.close()
    }
    var messages: [KafkaMessage] = []
    while messages.count < count {
        let batch = await consumer.nextBatch(maxCount: 500, maxWait: .milliseconds(100))
        if batch.isEmpty { break }
        messages += batch
    }
    closer.cancel()
    let quiet = Task {
        try? await Task.sleep(for: .seconds(quietSeconds))
        await consumer.close()
    }
    while true {
        let batch = await consumer.nextBatch(maxCount: 500, maxWait: .milliseconds(100))
        if batch.isEmpty { break }
        messages += batch
    }
    quiet.cancel()
    await consumer.close()
    return messages
}
