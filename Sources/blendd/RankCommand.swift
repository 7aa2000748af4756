import ArgumentParser
import BlendCore
import Foundation
import Inference

struct RankCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rank",
        abstract: "Rank the candidates of jobs in a file and print ranks and scores.",
        discussion: """
        FILE holds jobs as for `blendd validate` (JSON, JSON array or JSON Lines; `-` for stdin). \
        Each job is ranked with its own rank mode unless --mode is given. The ranker is the PairRM \
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
    }

    func run() async throws {
        var config = try options.loadOrFail()
        if let model { config.models.ranker = model }
        let forcedMode = mode.flatMap(RankMode.init(rawValue:))
        let ranker = try ModelFactory.ranker(for: config)
        let validator = JobValidator(limits: config.limits)
        var jobs: [BlendJob] = []
        var invalid = 0
        for record in JobFileReader.records(in: try readInput(file)) {
            switch validator.validate(record.bytes) {
            case .success(var job):
                if let forcedMode { job.rank.mode = forcedMode }
                jobs.append(job)
            case .failure(let rejection):
                invalid += 1
                FileHandle.standardError.write(Data("\(file):\(record.line): skipped, \(rejection)\n".utf8))
            }
        }
        let results = await ranker.rank(jobs.map(RankRequest.init(job:)))
        var failed = 0
        for (job, result) in zip(jobs, results) {
            switch result {
            case .failure(let error):
                failed += 1
                FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            case .success(let outcome):
                if json { printJSON(job: job, outcome: outcome, ranker: ranker.label) } else { printTable(job: job, outcome: outcome, ranker: ranker.label) }
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
                return RewardModelRanker(model: try RewardModel(directory: directory), planner: planner)
            }
            return PairRMRanker(model: try PairRMModel(directory: directory, precision: config.models.rankerPrecision), planner: planner)
        } catch {
            throw CLIError("cannot load the \(pointwise ? "reward model" : "PairRM") checkpoint in \(directory) (\(setting)): \(error)")
        }
    }

    static func fuser(for config: BlendConfiguration) throws -> any CandidateFuser {
        guard !config.models.fuser.isEmpty else { return TopCandidateFuser() }
        NumericsThreading.configure(threads: config.models.threads)
        do {
            return try GenFuser(directory: config.models.fuser, maxJobsPerBatch: config.batching.maxJobs, precision: config.models.fuserPrecision)
        } catch {
            throw CLIError("cannot load the GenFuser checkpoint in \(config.models.fuser) (models.fuser): \(error)")
        }
    }
}
