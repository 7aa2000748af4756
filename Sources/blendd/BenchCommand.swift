import ArgumentParser
import BlendCore
import Foundation
import Inference
import Kafka
import Postgres
import Worker

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure throughput on this machine.",
        subcommands: [BenchPipelineCommand.self]
    )
}

/// End-to-end jobs/s of the worker without models, beside raw Kafka consumption and raw
/// PostgreSQL inserts measured in the same run, so the pipeline's own cost is a ratio.
struct BenchPipelineCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pipeline",
        abstract: "Jobs/s through Kafka → worker (weight-free ranker, top-1 fusion) → PostgreSQL, against raw baselines.",
        discussion: """
        Uses an embedded Kafka broker and a scratch database created on the server of \
        --database-url (dropped afterwards). Baselines: consuming the same number of messages \
        with the same consumer, and inserting one row per job in transactions of the batch size.
        """
    )

    @Option(help: ArgumentHelp("PostgreSQL URL of a server where a scratch database may be created.", valueName: "url"))
    var databaseURL: String?

    @Option(help: "Jobs to send.") var jobs = 2000
    @Option(help: "Candidates per job.") var candidates = 6
    @Option(help: "Jobs per micro-batch.") var batch = 32

    @OptionGroup var options: ConfigurationOptions

    func run() async throws {
        var config = try options.loadOrFail()
        let adminURL = databaseURL ?? config.postgres.url
        let scratch = "blendd_bench_\(getpid())"
        let admin = try await PostgresConnection.connect(adminURL, applicationName: "blendd bench")
        try await admin.execute("CREATE DATABASE \(identifier: scratch)")
        do {
            try await measure(config: &config, url: PostgresURL.replacingDatabase(in: adminURL, with: scratch))
        } catch {
            _ = try? await admin.execute("DROP DATABASE IF EXISTS \(identifier: scratch) WITH (FORCE)")
            throw error
        }
        _ = try? await admin.execute("DROP DATABASE IF EXISTS \(identifier: scratch) WITH (FORCE)")
        await admin.close()
    }

    private func measure(config: inout BlendConfiguration, url: String) async throws {
        let conn = try await PostgresConnection.connect(url, applicationName: "blendd bench")
        _ = try await MigrationRunner(directory: try MigrateCommand.migrationsDirectory(explicit: nil)).run(on: conn)

        let broker = try EmbeddedKafkaBroker(brokers: 1)
        for t in [config.kafka.jobsTopic, config.kafka.eventsTopic, config.kafka.dlqTopic, "bench.raw"] { try broker.createTopic(t, partitions: 4) }
        let payloads = (0..<jobs).map { i -> [UInt8] in
            let cs = (0..<candidates).map { c in #"{"model":"m\#(c)","text":"Answer \#(c) to question \#(i): the value is \#((i * c) % 97), because of reason \#((i + c) % 13), with a few more words."}"# }
            return Array(#"{"job_id":"bench-\#(i)","instruction":"Question \#(i)?","candidates":[\#(cs.joined(separator: ","))],"fuse":{"top_k":2}}"#.utf8)
        }
        let producer = try KafkaProducer(configuration: broker.configuration)

        // Baseline 1: the same consumer reading the same number of messages.
        for r in try await producer.send(payloads.enumerated().map { ProducerMessage(topic: "bench.raw", key: Array("bench-\($0.offset)".utf8), value: $0.element) }) { _ = try r.get() }
        let consumer = try KafkaConsumer(configuration: broker.configuration, options: .init(groupId: "bench-raw", topics: ["bench.raw"]))
        guard let first = await consumer.next() else { throw CLIError("no message consumed") }
        consumer.markDone(first)
        let consumeStart = Date()
        var consumed = 1
        while consumed < jobs {
            for m in await consumer.nextBatch(maxCount: batch, maxWait: .milliseconds(50)) { consumer.markDone(m); consumed += 1 }
        }
        let consumeRate = Double(jobs - 1) / Date().timeIntervalSince(consumeStart)
        await consumer.close()

        // Baseline 2: one row per job, one transaction per batch.
        try await conn.execute("CREATE TABLE bench_raw (job_id text PRIMARY KEY, payload bytea NOT NULL)")
        let insertStart = Date()
        for chunk in stride(from: 0, to: jobs, by: batch) {
            try await conn.transaction { tx in
                for i in chunk..<min(chunk + batch, jobs) {
                    try await tx.execute("INSERT INTO bench_raw (job_id, payload) VALUES (\("bench-\(i)"), \(PostgresBytes(payloads[i])))")
                }
            }
        }
        let insertRate = Double(jobs) / Date().timeIntervalSince(insertStart)

        // The pipeline: measured from the first stored job (after the group join) to the last.
        for r in try await producer.send(payloads.enumerated().map { ProducerMessage(topic: config.kafka.jobsTopic, key: Array("bench-\($0.offset)".utf8), value: $0.element) }) { _ = try r.get() }
        config.postgres.url = url
        config.kafka.bootstrapServers = broker.bootstrapServers
        config.batching.maxJobs = batch
        let service = try WorkerService(config: config, ranker: ConsensusRanker(), fuser: TopCandidateFuser())
        let worker = Task { try await service.run() }
        func stored() async throws -> Int { try await conn.query("SELECT count(*) AS n FROM jobs")[0].decode("n") }
        while try await stored() == 0 { try await Task.sleep(for: .milliseconds(5)) }
        let pipelineStart = Date()
        let startCount = try await stored()
        while try await stored() < jobs { try await Task.sleep(for: .milliseconds(20)) }
        let pipelineRate = Double(jobs - startCount) / Date().timeIntervalSince(pipelineStart)
        await service.stop()
        _ = await worker.result
        await conn.close()

        print("blendd bench pipeline: \(jobs) jobs × \(candidates) candidates, batches of \(batch), \(ProcessInfo.processInfo.activeProcessorCount) cores")
        print(String(format: "  raw Kafka consume          %9.0f messages/s", consumeRate))
        print(String(format: "  raw PostgreSQL insert      %9.0f rows/s (one row per job, one transaction per batch)", insertRate))
        print(String(format: "  pipeline end to end        %9.0f jobs/s (validate, consensus rank, top-1, store with comparisons and outbox)", pipelineRate))
        print(String(format: "  pipeline / raw consume     %9.3f", pipelineRate / consumeRate))
        print(String(format: "  pipeline / raw insert      %9.3f", pipelineRate / insertRate))
    }
}
