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
        in this process, sends the jobs of --jobs (default: samples/jobs.jsonl), waits until \
        each has a stored outcome, and prints the outcomes and the model leaderboard. With --serve it keeps running (and prints the broker address) until Ctrl-C.
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

        let service = try WorkerService(config: config, rankers: try ModelFactory.rankers(for: config), fuser: try ModelFactory.fuser(for: config))
        let worker = Task { try await service.run() }

        let (messages, ids) = try sampleJobs(topic: config.kafka.jobsTopic)
        let producer = try KafkaProducer(configuration: broker.configuration)
        for result in try await producer.send(messages) { _ = try result.get() }
        say("sent \(messages.count) jobs; waiting for their outcomes")

        let deadline = Date().addingTimeInterval(timeout)
        var done: [(String, String)] = []
        var shown = -1
        while Date() < deadline {
            done = try await connection.query("SELECT job_id, status FROM jobs WHERE job_id = ANY(\(PostgresTextArray(ids))::text[]) ORDER BY job_id")
                .map { (try $0.decode("job_id"), try $0.decode("status")) }
            if done.count != shown {
                say("progress: \(done.count)/\(ids.count) jobs stored")
                shown = done.count
            }
            if done.count == ids.count { break }
            try await Task.sleep(for: .milliseconds(250))
        }
        try await printResults(ids: ids, on: connection)
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

    /// The outcome of each job and the leaderboard, read back from the views users query.
    private func printResults(ids: [String], on connection: PostgresConnection) async throws {
        let rows = try await connection.query("""
            SELECT job_id, status, coalesce(best_model, '-') AS best, coalesce(fuser, '-') AS fuser,
                   coalesce(fused_text, error, '') AS answer
              FROM blend_results WHERE job_id = ANY(\(PostgresTextArray(ids))::text[]) ORDER BY job_id
            """)
        func cut(_ s: String, _ n: Int) -> String {
            let flat = s.replacingOccurrences(of: "\n", with: " ")
            return (flat.count > n ? String(flat.prefix(n - 1)) + "…" : flat).padding(toLength: n, withPad: " ", startingAt: 0)
        }
        print("")
        print(cut("job", 26) + "  " + cut("status", 9) + "  " + cut("best model", 15) + "  " + cut("fuser", 6) + "  answer (fused text or reason)")
        for r in rows {
            print(cut(try r.decode("job_id"), 26) + "  " + cut(try r.decode("status"), 9) + "  " + cut(try r.decode("best"), 15) + "  "
                  + cut(try r.decode("fuser"), 6) + "  " + cut(try r.decode("answer"), 70))
        }
        let board = try await connection.query("SELECT model, jobs, first_places, win_rate, mean_rank, pairwise_win_rate FROM model_leaderboard")
        print("")
        print(cut("model", 16) + "  jobs  first  win rate  mean rank  pairwise win rate")
        for r in board {
            let model: String = try r.decode("model")
            let jobs: Int = try r.decode("jobs"), first: Int = try r.decode("first_places")
            let win: Double = try r.decode("win_rate"), mean: Double = try r.decode("mean_rank")
            let pair: Double? = try r.decode("pairwise_win_rate")
            print(cut(model, 16) + String(format: "  %4d  %5d  %8.3f  %9.2f  %@", jobs, first, win, mean, pair.map { String(format: "%.3f", $0) } ?? "-"))
        }
        print("")
    }

    private func say(_ line: String) {
        FileHandle.standardError.write(Data("dev: \(line)\n".utf8))
    }

    private func sampleJobs(topic: String) throws -> ([ProducerMessage], [String]) {
        var records: [[UInt8]] = []
        let file = jobs ?? "samples/jobs.jsonl"
        guard FileManager.default.fileExists(atPath: file) || file == "-" else {
            throw CLIError("no job file at \(file); run from the repository or pass --jobs FILE")
        }
        records = JobFileReader.records(in: try readInput(file)).map(\.bytes)
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
