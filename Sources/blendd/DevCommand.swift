import ArgumentParser
import BlendCore
import Foundation
import Kafka

struct DevCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev",
        abstract: "Run pieces of blendd on one machine for development.",
        subcommands: [DevRunCommand.self, DevKafkaCommand.self, ConsumeProbeCommand.self],
        defaultSubcommand: DevRunCommand.self
    )
}

struct DevKafkaCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kafka",
        abstract: "Run an embedded Kafka broker in the foreground and print its address.",
        discussion: """
        Starts librdkafka's mock cluster on loopback ports, creates the jobs, events and \
        dead-letter topics, prints the bootstrap address as the first line of standard output, \
        and runs until interrupted (SIGINT or SIGTERM). Other processes connect to it like to \
        any Kafka cluster. Data lives in memory only.
        """
    )

    @Option(help: "Number of brokers.")
    var brokers: Int32 = 1

    @Option(help: "Partitions of each topic.")
    var partitions: Int32 = 4

    @Option(parsing: .upToNextOption, help: "Topics to create (default: the configured jobs, events and dlq topics).")
    var topics: [String] = []

    @OptionGroup var options: ConfigurationOptions

    func run() async throws {
        let config = try options.loadOrFail()
        let broker = try EmbeddedKafkaBroker(brokers: brokers)
        let names = topics.isEmpty ? [config.kafka.jobsTopic, config.kafka.eventsTopic, config.kafka.dlqTopic] : topics
        for name in names { try broker.createTopic(name, partitions: partitions) }
        print(broker.bootstrapServers)
        FileHandle.standardError.write(Data("embedded kafka: \(brokers) broker(s) at \(broker.bootstrapServers); topics \(names.joined(separator: ", ")) with \(partitions) partitions; stop with Ctrl-C\n".utf8))
        fflush(nil)
        _ = await SignalListener.terminationSignals().first()
        withExtendedLifetime(broker) {}
    }
}

/// A group member that records each message it finishes to a file before marking it done:
/// the child process of the multi-process consumer tests.
struct ConsumeProbeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "consume-probe",
        abstract: "Consume a topic, appending `partition offset` per finished message to a file (for tests).",
        shouldDisplay: false
    )

    @Option var bootstrapServers: String
    @Option var group: String
    @Option var topic: String
    @Option(help: "File that receives one `partition offset` line per finished message.") var output: String
    @Option(help: "Simulated work per message, in milliseconds.") var workMs: Int = 0
    @Option(name: .customShort("X"), help: "A librdkafka property, key=value (repeatable).") var properties: [String] = []

    func run() async throws {
        _ = FileManager.default.createFile(atPath: output, contents: nil)
        guard let file = FileHandle(forWritingAtPath: output) else { throw CLIError("cannot write \(output)") }
        var props: [String: String] = [:]
        for p in properties {
            guard let eq = p.firstIndex(of: "=") else { throw ValidationError("-X expects key=value, got \(p)") }
            props[String(p[..<eq])] = String(p[p.index(after: eq)...])
        }
        let consumer = try KafkaConsumer(configuration: KafkaConfiguration(bootstrapServers: bootstrapServers, properties: props),
                                         options: .init(groupId: group, topics: [topic], maxBuffered: 100))
        let signals = SignalListener.terminationSignals()
        let stop = Task { _ = await signals.first(); await consumer.close() }
        while let message = await consumer.next() {
            if workMs > 0 { try? await Task.sleep(for: .milliseconds(workMs)) }
            // Record first, then mark done: a committed offset always has its record.
            file.write(Data("\(message.partition) \(message.offset)\n".utf8))
            consumer.markDone(message)
        }
        stop.cancel()
    }
}
