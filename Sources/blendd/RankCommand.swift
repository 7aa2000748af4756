import ArgumentParser
import BlendCore
import Foundation
import Inference

struct RankCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rank",
        abstract: "Run the jobs of a file (rank, compare, best/worst of n, reward) and print their answers.",
        discussion: """
        FILE holds jobs as for `blendd validate` (JSON, JSON array or JSON Lines; `-` for stdin). \
        Each job does what its `task` says (blend: rank the candidates; compare: judge its pairs or \
        conversations; best_of_n / worst_of_n: pick one candidate; reward: score each candidate against a \
        reference) unless --task is given, which reads every job as that kind. All jobs go to the ranker in \
        one call, so their pairs share forward batches. A blend job is ranked with its own rank mode unless \
        --mode is given. The ranker is the PairRM \
        checkpoint of --model (or models.ranker): a directory as published on the hub, \
        llm-blender/PairRM or llm-blender/PairRM-hf, or a pointwise reward model such as \
        OpenAssistant/reward-model-deberta-v3-large-v2. Without one the weight-free consensus ranker \
        is used, and the output says so.
        """
    )

    @Argument(help: "Job file (`-` for standard input).")
    var file: String

    @Option(help: ArgumentHelp("Override every job's rank mode: \(RankMode.allCases.map(\.rawValue).joined(separator: ", ")).", valueName: "mode"))
    var mode: String?

    @Option(help: ArgumentHelp("Read every job as this kind: \(JobTask.allCases.map(\.rawValue).joined(separator: ", ")).", valueName: "task"))
    var task: String?

    @Option(help: ArgumentHelp("PairRM or reward-model checkpoint directory (overrides models.ranker).", valueName: "dir"))
    var model: String?

    @Flag(help: "Also print each job's pairwise comparison matrix ℓ(row, column).")
    var matrix = false

    @Flag(help: "Print one JSON object per job.")
    var json = false

    @OptionGroup var options: ConfigurationOptions

    /// Runs while parsing, so a bad value is reported with `rank`'s usage.
    func validate() throws {
        if let mode, RankMode(rawValue: mode) == nil {
            throw ValidationError("unknown rank mode \(mode); expected one of \(RankMode.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if let task, JobTask(rawValue: task) == nil {
            throw ValidationError("unknown task \(task); expected one of \(JobTask.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if mode != nil, let task, task != JobTask.blend.rawValue {
            throw ValidationError("--mode sets the rank mode of blend jobs; a \(task) job has none")
        }
    }

    /// The record with its `task` set to `task`, so the kind's rules apply; as it is when it is not a
    /// clean JSON object (validation then reports why).
    static func withTask(_ task: JobTask, _ bytes: [UInt8]) -> [UInt8] {
        guard let parsed = try? JSONParser.parse(bytes), parsed.issues.isEmpty, case .object(var members) = parsed.value else { return bytes }
        members.removeAll { $0.key == "task" }
        members.insert(ExactJSON.Member("task", .string(task.rawValue)), at: min(1, members.count))
        return Array(ExactJSON.object(members).serialized().utf8)
    }

    func run() async throws {
        var config = try options.loadOrFail()
        if let model {
            // One checkpoint for every job: the named rankers do not apply.
            config.models.ranker = model
            config.models.rankers = [:]
            config.models.defaultRanker = ""
        }
        let forcedMode = mode.flatMap(RankMode.init(rawValue:))
        let forcedTask = task.flatMap(JobTask.init(rawValue:))
        let rankers = try ModelFactory.rankers(for: config)
        // Without --model, each job is ranked by the ranker it names (rank.model), as a worker does.
        let validator = JobValidator(limits: config.limits, rankers: model == nil ? Set(rankers.names) : nil)
        var jobs: [BlendJob] = []
        var invalid = 0
        for record in JobFileReader.records(in: try readInput(file)) {
            switch validator.validate(forcedTask.map { Self.withTask($0, record.bytes) } ?? record.bytes) {
            case .success(var job):
                if let forcedMode, job.task == .blend { job.rank.mode = forcedMode }
                jobs.append(job)
            case .failure(let rejection):
                invalid += 1
                FileHandle.standardError.write(Data("\(file):\(record.line): skipped, \(rejection)\n".utf8))
            }
        }
        let answers = await rankers.run(jobs.map { (model == nil ? $0.rank.model : nil, RankTask(job: $0)) })
        var failed = 0
        for (job, answer) in zip(jobs, answers) {
            let ranker = answer.servedBy
            switch answer.result {
            case .failure(let error):
                failed += 1
                FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            case .success(.rank(let outcome)):
                if json { printJSON(job: job, outcome: outcome, ranker: ranker) } else { printTable(job: job, outcome: outcome, ranker: ranker) }
            case .success(.compare(let outcome)):
                let result = outcome.result(for: job)
                if json { printJSON(job: job, ranker: ranker, "compare", result) } else { TaskTables.compare(job: job, result, ranker: ranker) }
            case .success(.select(let outcome)):
                let result = outcome.result(for: job)
                if json { printJSON(job: job, ranker: ranker, "selection", result) } else { TaskTables.selection(job: job, result, ranker: ranker) }
            case .success(.reward(let outcome)):
                let result = outcome.result(for: job)
                if json { printJSON(job: job, ranker: ranker, "reward", result) } else { TaskTables.reward(job: job, result, ranker: ranker) }
            }
        }
        if invalid + failed > 0 { throw ExitCode.failure }
    }

    private func printTable(job: BlendJob, outcome: RankOutcome, ranker: String) {
        print("\(job.jobId)  mode \(job.rank.mode.rawValue)  ranker \(ranker)")
        let order = outcome.ranks.indices.sorted { outcome.ranks[$0] != outcome.ranks[$1] ? outcome.ranks[$0] < outcome.ranks[$1] : $0 < $1 }
        let width = max(5, job.candidates.map(\.model.count).max() ?? 0)
        print("  rank  index  " + "model".padding(toLength: width, withPad: " ", startingAt: 0) + "  score")
        for i in order {
            let model = job.candidates[i].model.padding(toLength: width, withPad: " ", startingAt: 0)
            print(String(format: "  %4d  %5d  %@  %.6f", outcome.ranks[i], i, model, outcome.scores[i]))
        }
        if matrix, let m = outcome.comparisons {
            print("  comparison matrix ℓ(row, column):")
            for row in m.rows { print("   " + row.map { String(format: " %9.4f", $0) }.joined()) }
        }
    }

    /// One line per job: the kind's answer under `key`, as the job's event carries it.
    private func printJSON<T: Encodable>(job: BlendJob, ranker: String, _ key: String, _ answer: T) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let body = (try? JSONParser.parse(Array(encoder.encode(answer))).value) ?? .null
        let object = ExactJSON.object([
            .init("job_id", .string(job.jobId)), .init(key, body), .init("ranker", .string(ranker)), .init("task", .string(job.task.rawValue)),
        ])
        print(object.serialized())
    }

    private func printJSON(job: BlendJob, outcome: RankOutcome, ranker: String) {
        var object: [String: JSONValue] = [
            "job_id": .string(job.jobId), "mode": .string(job.rank.mode.rawValue), "ranker": .string(ranker),
            "ranks": .array(outcome.ranks.map { .number(Double($0)) }),
            "scores": .array(outcome.scores.map { .number(Double($0)) }),
        ]
        if matrix, let m = outcome.comparisons {
            object["matrix"] = .array(m.rows.map { .array($0.map { .number(Double($0)) }) })
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        print(String(decoding: (try? encoder.encode(JSONValue.object(object))) ?? Data(), as: UTF8.self))
    }
}

/// Builds the configured models, or the weight-free fallbacks when none are configured.
enum ModelFactory {
    /// The ranker of jobs that name none (`models.default_ranker`).
    static func ranker(for config: BlendConfiguration) throws -> any CandidateRanker {
        let name = try defaultRankerName(config)
        let directory = config.models.namedRankers.first { $0.name == name }?.directory ?? config.models.ranker
        return try ranker(directory: directory, setting: settingPath(of: name), config: config)
    }

    /// Every configured ranker by name (`models.ranker` as `default`, and `models.rankers`).
    static func rankers(for config: BlendConfiguration) throws -> RankerSet {
        var rankers: [String: any CandidateRanker] = [:]
        for (name, directory) in config.models.namedRankers {
            rankers[name] = try ranker(directory: directory, setting: settingPath(of: name), config: config)
        }
        return RankerSet(rankers, defaultName: try defaultRankerName(config))
    }

    private static func defaultRankerName(_ config: BlendConfiguration) throws -> String {
        switch config.models.resolvedDefaultRanker {
        case .ranker(let name): return name
        case .unresolved(let problem): throw CLIError("models.default_ranker \(problem)")
        }
    }

    private static func settingPath(of name: String) -> String {
        name == BlendConfiguration.Models.unnamedRanker ? "models.ranker" : "models.rankers.\(name)"
    }

    private static func ranker(directory: String, setting: String, config: BlendConfiguration) throws -> any CandidateRanker {
        guard !directory.isEmpty else { return ConsensusRanker() }
        NumericsThreading.configure(threads: config.models.threads)
        let planner = TokenBudgetPlanner(maxSequences: config.batching.maxPairs, maxTokens: config.batching.maxTokens)
        // config.json's architectures tells a pointwise reward model (DebertaV2ForSequenceClassification) from PairRM.
        let pointwise = RewardModelHead.declared(in: directory)
        do {
            if pointwise {
                return RewardModelRanker(model: try LoadingMemory.compact { try RewardModel(directory: directory) }, planner: planner)
            }
            return PairRMRanker(model: try LoadingMemory.compact { try PairRMModel(directory: directory, precision: config.models.rankerPrecision) },
                                planner: planner)
        } catch {
            throw CLIError("cannot load the \(pointwise ? "reward model" : "PairRM") checkpoint in \(directory) (\(setting)): \(error)")
        }
    }

    static func fuser(for config: BlendConfiguration) throws -> any CandidateFuser {
        guard !config.models.fuser.isEmpty else { return TopCandidateFuser() }
        NumericsThreading.configure(threads: config.models.threads)
        do {
            return try LoadingMemory.compact {
                try GenFuser(directory: config.models.fuser, maxJobsPerBatch: config.batching.maxJobs, precision: config.models.fuserPrecision)
            }
        } catch {
            throw CLIError("cannot load the GenFuser checkpoint in \(config.models.fuser) (models.fuser): \(error)")
        }
    }
}
