import ArgumentParser
import BlendCore
import Foundation
import Kafka
import Postgres
import Worker

/// `blendd dev run`: everything on one machine — an embedded Kafka broker, the migrations, a
/// worker, and sample jobs — then prints what was stored.
struct DevRunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run blendd end to end on one machine: embedded Kafka, migrations, a worker, sample jobs.",
        discussion: """
        Needs a PostgreSQL database (postgres.url or --database-url; scripts/dev.sh starts a \
        throwaway one). Starts an embedded Kafka broker, applies the migrations, runs a worker \
        in this process, sends the jobs of --jobs (default: the valid examples in \
        schemas/examples/valid plus one invalid job), waits until each has a stored outcome and \
        prints it. With --serve it keeps running (and prints the broker address) until Ctrl-C.
        """
    )

    @Option(help: ArgumentHelp("PostgreSQL URL (default: postgres.url).", valueName: "url"))
    var databaseURL: String?

    @Option(help: ArgumentHelp("A job file (JSON, array or JSONL) to send instead of the examples.", valueName: "file"))
    var jobs: String?

    @Option(help: "Partitions of the jobs topic.")
    var partitions: Int32 = 4

    @Flag(help: "Keep running after the sample jobs until interrupted.")
    var serve = false

    @Option(help: "Seconds to wait for the sample jobs' outcomes.")
    var timeout: Double = 120

    @OptionGroup var options: ConfigurationOptions

    func run() async throws {
        var config = try options.loadOrFail()
        if let databaseURL { config.postgres.url = databaseURL }
        let signals = SignalListener.terminationSignals()

        let broker = try EmbeddedKafkaBroker(brokers: 1)
        try broker.createTopic(config.kafka.jobsTopic, partitions: partitions)
        try broker.createTopic(config.kafka.eventsTopic, partitions: partitions)
        try broker.createTopic(config.kafka.dlqTopic, partitions: 1)
        config.kafka.bootstrapServers = broker.bootstrapServers
        say("embedded Kafka at \(broker.bootstrapServers)")

        let connection = try await PostgresConnection.connect(config.postgres.url, applicationName: "blendd dev")
        let applied = try await MigrationRunner(directory: try MigrateCommand.migrationsDirectory(explicit: nil)).run(on: connection)
        say("database \(ConfigurationLoader.mask(config.postgres.url)): \(applied.filter { if case .applied = $0 { true } else { false } }.count) migration(s) applied")

        let service = try WorkerService(config: config, ranker: try ModelFactory.ranker(for: config), fuser: try ModelFactory.fuser(for: config))
        let worker = Task { try await service.run() }

        let (messages, ids) = try sampleJobs(topic: config.kafka.jobsTopic)
        let producer = try KafkaProducer(configuration: broker.configuration)
        for result in try await producer.send(messages) { _ = try result.get() }
        say("sent \(messages.count) jobs; waiting for their outcomes")

        let deadline = Date().addingTimeInterval(timeout)
        var done: [(String, String)] = []
        while Date() < deadline {
            done = try await connection.query("SELECT job_id, status FROM jobs WHERE job_id = ANY(\(PostgresTextArray(ids))::text[]) ORDER BY job_id")
                .map { (try $0.decode("job_id"), try $0.decode("status")) }
            if done.count == Set(ids).count { break }
            try await Task.sleep(for: .milliseconds(250))
        }
        for (id, status) in done {
            let best = try await connection.query("SELECT best_model, left(coalesce(fused_text, ''), 70) AS fused FROM blend_results WHERE job_id = \(id)")
            let model: String? = try best.first?.decode("best_model")
            let fused: String = try best.first?.decode("fused") ?? ""
            print("\(id): \(status)\(model.map { ", best \($0)" } ?? "")\(fused.isEmpty ? "" : ", fused: \(fused.replacingOccurrences(of: "\n", with: " "))")")
        }
        let missing = Set(ids).subtracting(done.map(\.0))
        if !missing.isEmpty { say("no outcome within \(Int(timeout)) s for: \(missing.sorted().joined(separator: ", "))") }
        if serve && missing.isEmpty {
            say("inspect a job with: blendd result \(ids.first ?? "JOB_ID") --database-url '\(ConfigurationLoader.mask(config.postgres.url))'")
            say("serving: send jobs with `blendd enqueue FILE --bootstrap-servers \(broker.bootstrapServers)`; Ctrl-C stops")
            _ = await signals.first()
        }
        await service.stop()
        _ = await worker.result
        await connection.close()
        withExtendedLifetime(broker) {}
        if !missing.isEmpty { throw ExitCode.failure }
    }

    private func say(_ line: String) {
        FileHandle.standardError.write(Data("dev: \(line)\n".utf8))
    }

    private func sampleJobs(topic: String) throws -> ([ProducerMessage], [String]) {
        var records: [[UInt8]] = []
        if let jobs {
            records = JobFileReader.records(in: try readInput(jobs)).map(\.bytes)
        } else {
            let dir = "schemas/examples/valid"
            let files = (try? FileManager.default.contentsOfDirectory(atPath: dir))?.filter { $0.hasSuffix(".json") }.sorted() ?? []
            guard !files.isEmpty else { throw CLIError("no example jobs in \(dir); pass --jobs FILE") }
            for file in files { records += JobFileReader.records(in: try readInput("\(dir)/\(file)")).map(\.bytes) }
            // One job breaking the contract, to show a rejection.
            records.append(Array(#"{"job_id":"dev-rejected-1","instruction":"Pick one","candidates":[{"model":"only","text":"alone"}]}"#.utf8))
        }
        let validator = JobValidator()
        var messages: [ProducerMessage] = []
        var ids: [String] = []
        for (i, bytes) in records.enumerated() {
            let id: String
            switch validator.validate(bytes) {
            case .success(let job): id = job.jobId
            case .failure(let rejection): id = rejection.jobId ?? "kafka:\(topic):?:\(i)"
            }
            if !id.hasPrefix("kafka:") { ids.append(id) }
            messages.append(ProducerMessage(topic: topic, key: Array(id.utf8), value: bytes))
        }
        return (messages, Array(Set(ids)).sorted())
    }
}
