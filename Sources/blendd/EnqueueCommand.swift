import ArgumentParser
import BlendCore
import Foundation
import Kafka

struct EnqueueCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "enqueue",
        abstract: "Send blend jobs to Kafka.",
        discussion: """
        FILE holds one job, a JSON array of jobs, or JSON Lines (`-` for standard input). Each \
        job is validated first; invalid jobs are reported with every violation and not sent \
        (unless --no-validate). Valid jobs are sent with key = job_id through the idempotent \
        producer; one line per job reports its partition and offset. A job not acknowledged \
        within --timeout (default: kafka.delivery_timeout_ms) is reported as not delivered, \
        with the last broker error (e.g. connection refused). Exit status 1 when any job was \
        invalid or not delivered.
        """
    )

    @Argument(help: "Job file (`-` for standard input).")
    var file: String

    @Option(help: ArgumentHelp("Kafka bootstrap servers (default: kafka.bootstrap_servers, or $BLENDD_KAFKA_BOOTSTRAP).", valueName: "host:port"))
    var bootstrapServers: String?

    @Option(help: ArgumentHelp("Topic (default: kafka.topics.jobs).", valueName: "topic"))
    var topic: String?

    @Option(name: .customShort("X"), help: ArgumentHelp("A librdkafka property, e.g. -X security.protocol=SSL (repeatable).", valueName: "key=value"))
    var properties: [String] = []

    @Option(help: ArgumentHelp("Seconds a job may take to be acknowledged before it counts as not delivered.", valueName: "seconds"))
    var timeout: Double?

    @Flag(help: "Send jobs without validating them (to test how workers reject bad input).")
    var noValidate = false

    @Flag(name: .shortAndLong, help: "Print only the summary.")
    var quiet = false

    @OptionGroup var options: ConfigurationOptions

    func run() async throws {
        let config = try options.loadOrFail()
        var kafkaProperties = config.kafka.properties
        for p in properties {
            guard let eq = p.firstIndex(of: "="), eq != p.startIndex else { throw ValidationError("-X expects key=value, got \(p)") }
            kafkaProperties[String(p[..<eq])] = String(p[p.index(after: eq)...])
        }
        if let timeout, !(timeout >= 1 && timeout <= 3600) { throw ValidationError("--timeout must be between 1 and 3600 seconds") }
        let deliveryTimeout = timeout.map { Duration.milliseconds(Int($0 * 1000)) } ?? .milliseconds(config.kafka.deliveryTimeoutMilliseconds)
        let topic = self.topic ?? config.kafka.jobsTopic
        let validator = JobValidator(limits: config.limits)
        var messages: [ProducerMessage] = []
        var labels: [String] = []
        var invalid = 0
        for record in JobFileReader.records(in: try readInput(file)) {
            let location = "\(file == "-" ? "<stdin>" : file):\(record.line)"
            switch validator.validate(record.bytes) {
            case .success(let job):
                messages.append(ProducerMessage(topic: topic, key: Array(job.jobId.utf8), value: record.bytes))
                labels.append(job.jobId)
            case .failure(let rejection):
                if noValidate {
                    let key = rejection.jobId ?? location
                    messages.append(ProducerMessage(topic: topic, key: Array(key.utf8), value: record.bytes))
                    labels.append(key)
                } else {
                    invalid += 1
                    print("\(location): not sent, \(rejection)")
                }
            }
        }
        var delivered = 0, failed = 0
        if !messages.isEmpty {
            let producer = try KafkaProducer(configuration: KafkaConfiguration(
                bootstrapServers: bootstrapServers ?? config.kafka.bootstrapServers, properties: kafkaProperties),
                options: .init(deliveryTimeout: deliveryTimeout))
            let results = try await producer.send(messages)
            for (label, result) in zip(labels, results) {
                switch result {
                case .success(let report):
                    delivered += 1
                    if !quiet { print("\(label) -> \(report.topic)[\(report.partition)]@\(report.offset)") }
                case .failure(let error):
                    failed += 1
                    print("\(label): not delivered: \(error)")
                }
            }
            await producer.flush(timeout: .seconds(10))
        }
        print("\(delivered) sent, \(invalid) invalid, \(failed) failed")
        if invalid + failed > 0 { throw ExitCode.failure }
    }
}
