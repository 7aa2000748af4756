import ArgumentParser
import BlendCore
import Foundation
import Inference
import Kafka
import Postgres
import Worker

extension BlendConfiguration.ModelPrecision: ExpressibleByArgument {}

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure throughput on this machine.",
        subcommands: [BenchPipelineCommand.self, BenchKernelsCommand.self, BenchRankCommand.self, BenchFuseCommand.self, BenchWorkerCommand.self, BenchMemoryCommand.self]
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

        // Baseline 2: one row per job, one transaction per batch; measured before and after the
        // pipeline (a short burst is at the mercy of a busy machine), and the better one is the baseline.
        try await conn.execute("CREATE TABLE bench_raw (job_id text PRIMARY KEY, payload bytea NOT NULL)")
        func rawInsertRate(_ round: Int) async throws -> Double {
            let start = Date()
            for chunk in stride(from: 0, to: jobs, by: batch) {
                try await conn.transaction { tx in
                    for i in chunk..<min(chunk + batch, jobs) {
                        try await tx.execute("INSERT INTO bench_raw (job_id, payload) VALUES (\("bench-\(round)-\(i)"), \(PostgresBytes(payloads[i])))")
                    }
                }
            }
            return Double(jobs) / Date().timeIntervalSince(start)
        }
        let insertBefore = try await rawInsertRate(0)

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
        let insertAfter = try await rawInsertRate(1)
        let insertRate = max(insertBefore, insertAfter)
        await conn.close()

        print("blendd bench pipeline: \(jobs) jobs × \(candidates) candidates, batches of \(batch), \(ProcessInfo.processInfo.activeProcessorCount) cores")
        print(String(format: "  raw Kafka consume          %9.0f messages/s", consumeRate))
        print(String(format: "  raw PostgreSQL insert      %9.0f rows/s (one row per job, one transaction per batch; best of %.0f before and %.0f after the pipeline)",
                     insertRate, insertBefore, insertAfter))
        print(String(format: "  pipeline end to end        %9.0f jobs/s (validate, consensus rank, top-1, store with comparisons and outbox)", pipelineRate))
        print(String(format: "  pipeline / raw consume     %9.3f", pipelineRate / consumeRate))
        print(String(format: "  pipeline / raw insert      %9.3f", pipelineRate / insertRate))
        // Where a batch's time goes, every stage the worker times, per occurrence and in total, so a change
        // to one shows through the machine's noise: consume (waiting for a batch; the first one waits through
        // the group join), validate, lookup (of stored jobs), process (rank and events; rank is the ranker's
        // part), store_wait (waiting for room in the store queue),
        // store (one statement, for one or more batches), and the relay's outbox_claim, outbox_publish and
        // outbox_settle per round.
        let stages = service.metrics.snapshot().first { $0.name == MetricNames.stageDuration }?.samples ?? []
        for s in stages.sorted(by: { ($0.labels["stage"] ?? "") < ($1.labels["stage"] ?? "") }) {
            guard let stage = s.labels["stage"], let n = s.count, n > 0 else { continue }
            let name = stage.padding(toLength: 18, withPad: " ", startingAt: 0)
            print("  stage \(name) " + String(format: "%9.2f ms mean, %8.1f ms total (%.0f)", s.value / n * 1000, s.value * 1000, n))
        }
    }
}

/// The machine's numeric ceiling: sgemm GFLOP/s and the row kernels' throughput, each beside a
/// plain single-threaded loop measured in the same run.
struct BenchKernelsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernels",
        abstract: "sgemm GFLOP/s and LayerNorm/softmax/GELU throughput against naive loops.",
        discussion: "Set OPENBLAS_CORETYPE before starting on CPUs Debian's OpenBLAS misdetects (scripts/dev.sh and the image do)."
    )

    @Option(help: "Seconds to spend per measurement.") var seconds = 1.0

    func run() throws {
        NumericsThreading.configure(threads: 0)
        print("blendd bench kernels: \(NumericsThreading.threads) cores, OPENBLAS_CORETYPE=\(ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] ?? "unset")")
        for (m, k, n) in [(512, 512, 512), (1024, 1024, 1024), (512, 1024, 4096), (2048, 1024, 1024)] {
            let a = Tensor(shape: [m, k], storage: (0..<(m * k)).map { Float($0 % 13) * 0.01 })
            let b = Tensor(shape: [n, k], storage: (0..<(n * k)).map { Float($0 % 7) * 0.01 })
            let blas = rate(seconds) { _ = Kernels.matmul(a, b, transposeB: true) } * 2 * Double(m * k * n) / 1e9
            // The naive loop is measured on a slice of rows and scaled: it is far too slow for full sizes.
            let rows = max(1, 32 * 512 / m)
            let naive = rate(seconds) { naiveMatmul(a, b, rows: rows) } * 2 * Double(rows * k * n) / 1e9
            print(String(format: "  sgemm %4d×%4d×%4d  %8.1f GFLOP/s   naive loop %6.2f GFLOP/s   ratio %7.1f×", m, k, n, blas, naive, blas / naive))
        }
        let x = Tensor(shape: [512, 1024], storage: (0..<(512 * 1024)).map { Float($0 % 101) * 0.02 - 1 })
        let g = Tensor(shape: [1024], storage: [Float](repeating: 1, count: 1024)), z = Tensor(zeros: [1024])
        let elements = Double(x.count)
        for (name, kernel, naive) in [
            ("layerNorm", { _ = Kernels.layerNorm(x, gamma: g, beta: z, eps: 1e-7) }, { naiveLayerNorm(x) }),
            ("softmax  ", { _ = Kernels.softmax(x) }, { naiveSoftmax(x) }),
            ("gelu erf ", { _ = Kernels.geluErf(x) }, { _ = x.storage.map { v in 0.5 * v * (1 + erff(v * 0.70710678)) } }),
        ] as [(String, () -> Void, () -> Void)] {
            let fast = rate(seconds, kernel) * elements / 1e6, slow = rate(seconds, naive) * elements / 1e6
            print(String(format: "  %@ %8.1f M elements/s   naive loop %8.1f M/s   ratio %5.1f×", name, fast, slow, fast / slow))
        }
    }

    private func rate(_ seconds: Double, _ work: () -> Void) -> Double {
        work()
        var runs = 0
        let start = Date()
        while Date().timeIntervalSince(start) < seconds { work(); runs += 1 }
        return Double(runs) / Date().timeIntervalSince(start)
    }

    private func naiveMatmul(_ a: Tensor, _ b: Tensor, rows: Int) {
        let k = a.columns, n = b.rows
        var c = [Float](repeating: 0, count: rows * n)
        for i in 0..<rows { for j in 0..<n { var s: Float = 0; for p in 0..<k { s += a.storage[i * k + p] * b.storage[j * k + p] }; c[i * n + j] = s } }
        withExtendedLifetime(c) {}
    }

    private func naiveLayerNorm(_ x: Tensor) {
        var out = x.storage
        let n = x.columns
        for r in 0..<x.rows {
            var mean: Float = 0
            for i in 0..<n { mean += x.storage[r * n + i] }
            mean /= Float(n)
            var v: Float = 0
            for i in 0..<n { v += (x.storage[r * n + i] - mean) * (x.storage[r * n + i] - mean) }
            let inv = 1 / (v / Float(n) + 1e-7).squareRoot()
            for i in 0..<n { out[r * n + i] = (x.storage[r * n + i] - mean) * inv }
        }
        withExtendedLifetime(out) {}
    }

    private func naiveSoftmax(_ x: Tensor) {
        var out = x.storage
        let n = x.columns
        for r in 0..<x.rows {
            var m = -Float.infinity
            for i in 0..<n { m = max(m, x.storage[r * n + i]) }
            var s: Float = 0
            for i in 0..<n { out[r * n + i] = expf(x.storage[r * n + i] - m); s += out[r * n + i] }
            for i in 0..<n { out[r * n + i] /= s }
        }
        withExtendedLifetime(out) {}
    }
}
