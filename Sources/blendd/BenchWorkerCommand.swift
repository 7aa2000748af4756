import ArgumentParser
import BlendCore
import Foundation
import Inference
import Kafka
import Postgres
import Worker

/// Jobs/hour of the whole worker on a backlog of fuse jobs, with continuous fusion and with the
/// micro-batch path, in one run.
struct BenchWorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Fuse jobs/hour through Kafka → worker → PostgreSQL on random-weight GenFuser models: continuous fusion vs micro-batches.",
        discussion: """
        For each --shapes entry builds GenFuser with random weights of that Flan-T5 shape (bf16 values, \
        as bench fuse) and the tokenizer of --tokenizer, then, for each batching mode, creates a scratch \
        database on the server of --database-url (dropped afterwards) and fresh topics on an embedded \
        Kafka broker, starts a worker in this process, waits for one warm-up job, sends a backlog of \
        --jobs fuse jobs (mixed prompt lengths, max_new_tokens, beams and sampling, the same backlog for \
        both modes) and times it from the send until every outcome is stored. Ranking is the weight-free \
        consensus ranker, so the figures are the fusion stage's. Each job's min_new_tokens equals its \
        max_new_tokens: random weights rarely produce EOS, and so both modes do exactly the same work.
        """
    )

    @Option(help: ArgumentHelp("PostgreSQL URL of a server where scratch databases may be created.", valueName: "url"))
    var databaseURL: String?
    @Option(help: "Comma-separated shapes: small, base, large, xl.") var shapes = "small"
    @Option(help: "Fuse jobs in the backlog.") var jobs = 48
    @Option(help: "Jobs per micro-batch (batching.max_jobs).") var batch = 8
    @Option(help: "Unfinished fusions before consuming pauses (batching.max_fusing_jobs).") var maxFusing = 32
    @Option(help: "Comma-separated max_new_tokens values the jobs draw from.") var newTokens = "8,16,32,64"
    @Option(help: "Comma-separated num_beams values the jobs draw from (1 also samples every other time).") var beams = "1,2,4"
    @Option(help: "Compute threads (0: one per core).") var threads = 0
    @Option(help: "Times each mode runs, alternating (micro-batch first).") var rounds = 1
    @Option(help: ArgumentHelp("A T5 tokenizer directory (default: Tests/Fixtures/t5-tiny from the working directory).", valueName: "dir"))
    var tokenizer = "Tests/Fixtures/t5-tiny"
    @Option(help: "Arithmetic of the model: fp32, bf16 or int8 (models.fuser_precision).") var precision = ModelPrecision.fp32

    @Flag(help: "Measure the decoder alone, without the worker.") var decoderOnly = false
    @Option(help: "Rows of the decoder-alone continuous session (default: 4 × --batch, as the worker).") var maxRows: Int?
    @Option(help: "Prompt tokens the decoder-alone continuous session encodes per step.") var encodeTokens = 2048

    @OptionGroup var options: ConfigurationOptions

    func run() async throws {
        let base = try options.loadOrFail()
        NumericsThreading.configure(threads: threads)
        let tokenLengths = try Self.integers(newTokens, "--new-tokens"), beamCounts = try Self.integers(beams, "--beams")
        let adminURL = databaseURL ?? base.postgres.url
        let words = try Tokenizer.load(directory: tokenizer)
        for shape in shapes.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) {
            guard let t5 = T5Configuration.flanT5(shape) else { throw ValidationError("unknown shape \(shape); use small, base, large or xl") }
            let built = Date()
            let model = try T5Model(configuration: t5, store: RandomWeights.store(shapes: BenchFuseCommand.weightShapes(t5), bfloat16: true),
                                    precision: precision)
            let fuser = try GenFuser(model: model, tokenizer: words, label: "genfuser:random-flan-t5-\(shape)", maxJobsPerBatch: batch)
            let backlog = Self.backlog(count: jobs, tokenLengths: tokenLengths, beamCounts: beamCounts)
            let promptTokens = try backlog.map { job -> Int in
                let request = try Self.request(job)
                return try fuser.prepare(request).get().ids.count
            }
            print("blendd bench worker: flan-t5-\(shape) shape (d_model \(t5.modelSize), \(t5.encoderLayers)+\(t5.decoderLayers) layers), random bf16-valued weights built in \(String(format: "%.1f", Date().timeIntervalSince(built))) s, precision \(precision.rawValue), \(NumericsThreading.threads) threads")
            print("  backlog: \(jobs) fuse jobs, prompts of \(promptTokens.min() ?? 0)…\(promptTokens.max() ?? 0) tokens (mean \(promptTokens.reduce(0, +) / max(1, promptTokens.count))), max_new_tokens from {\(newTokens)}, num_beams from {\(beams)}; batches of \(batch), up to \(maxFusing) fusions in flight")
            let requests = try backlog.map(Self.request)
            let alone = decodeAlone(fuser: fuser, requests: requests)
            print(String(format: "  fusion alone (no worker, encoder included): micro-batches of %d %.1f s, continuous %.1f s: %.2f× the throughput",
                         batch, alone.micro, alone.continuous, alone.micro / alone.continuous))
            if decoderOnly { continue }
            var rates: [Bool: [Double]] = [:]
            for round in 0..<rounds {
                for continuous in [false, true] {
                    var config = base
                    config.batching.maxJobs = batch
                    config.batching.maxFusingJobs = maxFusing
                    config.batching.continuousFusion = continuous
                    let seconds = try await measure(config: config, adminURL: adminURL, fuser: fuser, backlog: backlog, tag: "\(round)\(continuous ? "c" : "m")")
                    let perHour = Double(jobs) / seconds * 3600
                    rates[continuous, default: []].append(perHour)
                    print(String(format: "  %@ round %d: %6.1f s  %9.0f jobs/hour", continuous ? "continuous fusion " : "micro-batch fusion", round + 1, seconds, perHour))
                }
            }
            let micro = rates[false]!.reduce(0, +) / Double(rounds), continuous = rates[true]!.reduce(0, +) / Double(rounds)
            print(String(format: "  mean: micro-batch %.0f jobs/hour, continuous %.0f jobs/hour: %.2f× the throughput", micro, continuous, continuous / micro))
        }
    }

    /// Seconds from sending the backlog until every outcome is stored, on a fresh database and topics.
    private func measure(config: BlendConfiguration, adminURL: String, fuser: GenFuser, backlog: [String], tag: String) async throws -> Double {
        let scratch = "blendd_bench_worker_\(getpid())_\(tag)"
        let admin = try await PostgresConnection.connect(adminURL, applicationName: "blendd bench worker")
        try await admin.execute("CREATE DATABASE \(identifier: scratch)")
        let result: Result<Double, Error>
        do {
            result = .success(try await measure(config: config, url: PostgresURL.replacingDatabase(in: adminURL, with: scratch), fuser: fuser,
                                                backlog: backlog, tag: tag))
        } catch {
            result = .failure(error)
        }
        _ = try? await admin.execute("DROP DATABASE IF EXISTS \(identifier: scratch) WITH (FORCE)")
        await admin.close()
        return try result.get()
    }

    private func measure(config base: BlendConfiguration, url: String, fuser: GenFuser, backlog: [String], tag: String) async throws -> Double {
        var config = base
        config.postgres.url = url
        let conn = try await PostgresConnection.connect(url, applicationName: "blendd bench worker")
        _ = try await MigrationRunner(directory: try MigrateCommand.migrationsDirectory(explicit: nil)).run(on: conn)

        let broker = try EmbeddedKafkaBroker(brokers: 1)
        for t in [config.kafka.jobsTopic, config.kafka.eventsTopic, config.kafka.dlqTopic] { try broker.createTopic(t, partitions: 4) }
        config.kafka.bootstrapServers = broker.bootstrapServers
        config.workerId = "bench-\(tag)"
        let producer = try KafkaProducer(configuration: broker.configuration)
        func send(_ payloads: [String], prefix: String) async throws {
            let messages = payloads.enumerated().map { i, p in
                ProducerMessage(topic: config.kafka.jobsTopic, key: Array("\(prefix)\(i)".utf8), value: Array(p.utf8))
            }
            for r in try await producer.send(messages) { _ = try r.get() }
        }
        func stored() async throws -> Int { try await conn.query("SELECT count(*) AS n FROM jobs")[0].decode("n") }

        let service = try WorkerService(config: config, ranker: ConsensusRanker(), fuser: fuser)
        let worker = Task { try await service.run() }
        // Warm-up: the group join and the first batch happen before the clock starts.
        try await send([Self.job(id: "warm-up", words: 12, newTokens: 2, beams: 1, sample: false)], prefix: "w")
        while try await stored() < 1 { try await Task.sleep(for: .milliseconds(10)) }
        let start = Date()
        try await send(backlog, prefix: "b")
        while try await stored() < backlog.count + 1 { try await Task.sleep(for: .milliseconds(10)) }
        let seconds = Date().timeIntervalSince(start)
        let failed = try await conn.query("SELECT count(*) AS n FROM jobs WHERE status <> 'completed'")[0].decode("n", as: Int.self)
        await service.stop()
        _ = try await worker.value
        await conn.close()
        if failed > 0 { throw CLIError("\(failed) bench jobs did not complete") }
        return seconds
    }

    /// The backlog's fusions without Kafka or the database: `fuseNow` over successive batches, then one continuous session.
    private func decodeAlone(fuser: GenFuser, requests: [FuseRequest]) -> (micro: Double, continuous: Double) {
        let microStart = Date()
        for start in stride(from: 0, to: requests.count, by: batch) {
            _ = fuser.fuseNow(Array(requests[start..<min(start + batch, requests.count)]))
        }
        let micro = Date().timeIntervalSince(microStart)
        let continuousStart = Date()
        let session = GenFuserSession(fuser: fuser, maxRows: maxRows ?? 4 * batch, encodeTokensPerStep: encodeTokens)
        for (i, request) in requests.enumerated() { session.submit(tag: i, request: request) }
        while session.unfinishedCount > 0 { _ = session.step() }
        let elapsed = Date().timeIntervalSince(continuousStart)
        let d = session.decoder
        print(String(format: "  continuous session: %d steps, %.1f rows per step; encoder %.1f s, decoder passes %.1f s, token choice %.1f s", d.steps, Double(d.rowSteps) / Double(max(1, d.steps)), d.encodeSeconds, d.decodeSeconds, d.chooseSeconds))
        return (micro, elapsed)
    }

    /// The same backlog for both modes: a seeded mix of prompt lengths, token limits, beams and sampling.
    static func backlog(count: Int, tokenLengths: [Int], beamCounts: [Int]) -> [String] {
        var state: UInt64 = 0x5EED
        func draw(_ n: Int) -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((state >> 33) % UInt64(n))
        }
        return (0..<count).map { i in
            let beams = beamCounts[draw(beamCounts.count)]
            return job(id: "bench-\(i)", words: 4 + draw(60), newTokens: tokenLengths[draw(tokenLengths.count)], beams: beams,
                       sample: beams == 1 && draw(2) == 0)
        }
    }

    static func job(id: String, words: Int, newTokens: Int, beams: Int, sample: Bool) -> String {
        let vocabulary = ["the", "answer", "is", "probably", "because", "river", "Paris", "seven", "however", "model", "quickly", "blue"]
        var state = FNV1a.hash(id.utf8)
        func text(_ n: Int) -> String {
            (0..<n).map { _ -> String in
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                return vocabulary[Int((state >> 33) % UInt64(vocabulary.count))]
            }.joined(separator: " ")
        }
        let candidates = (0..<3).map { c in #"{"model":"m\#(c)","text":"\#(text(words))"}"# }.joined(separator: ",")
        let sampling = sample ? #","do_sample":true,"top_p":0.9,"temperature":0.8"# : ""
        return #"{"job_id":"\#(id)","instruction":"\#(text(3 + words / 6))?","candidates":[\#(candidates)],"fuse":{"top_k":2,"max_new_tokens":\#(newTokens),"min_new_tokens":\#(newTokens),"num_beams":\#(beams)\#(sampling)}}"#
    }

    /// The fusion request a job makes with its first two candidates (for the prompt-length summary).
    static func request(_ payload: String) throws -> FuseRequest {
        guard case .success(let job) = JobValidator().validate(Array(payload.utf8)), let fuse = job.fuse else {
            throw CLIError("a generated bench job is invalid: \(payload)")
        }
        return FuseRequest(jobId: job.jobId, instruction: job.instruction, input: job.input,
                           candidates: job.candidates.prefix(fuse.topK).map(\.text), options: fuse)
    }

    static func integers(_ list: String, _ option: String) throws -> [Int] {
        let values = list.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !values.isEmpty, values.allSatisfy({ $0 >= 1 }) else { throw ValidationError("\(option) needs positive integers, e.g. 8,16") }
        return values
    }
}
