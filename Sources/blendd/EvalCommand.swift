import ArgumentParser
import BlendCore
import Foundation
import Inference

struct EvalCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Rank MixInstruct-format records and measure the rankers against ChatGPT's comparisons.",
        discussion: """
        FILE holds MixInstruct records (a JSON array, JSON Lines or concatenated objects; `-` for stdin): \
        id, instruction, input, output, candidates [{model, text, scores}] and cmp_results. Records without \
        cmp_results are left out. Each record is ranked by the ranker of --model (repeatable; default \
        models.ranker, or the weight-free consensus ranker) and by the auto metrics named with --score-ranker. \
        For each ranker it reports the measures of LLM-Blender's gpt_eval/cor_eval.py against the oracle \
        ranking of cmp_results (Pearson and Spearman per candidate index averaged over records, the Spearman \
        footrule, the set-based Jaccard measure), the oracle rank of its top choice (GPT-Rank), how often that \
        choice is the oracle's best or among its best three, and the mean of each auto metric of its choices. \
        Ranked records are appended to a progress file (--resume FILE, or OUTPUT.progress.jsonl with --output), \
        so an interrupted run started again skips the records already ranked.
        """
    )

    @Argument(help: "MixInstruct file (`-` for standard input).")
    var file: String

    @Option(name: .customLong("model"), help: ArgumentHelp("Ranker checkpoint directory: PairRM or a reward model (repeatable; overrides models.ranker).", valueName: "dir"))
    var models: [String] = []

    @Option(name: .customLong("score-ranker"), help: ArgumentHelp("Also rank by this auto metric of the candidates, e.g. bleu (repeatable).", valueName: "metric"))
    var scoreRankers: [String] = []

    @Option(help: ArgumentHelp("Rank mode for pairwise rankers: \(RankMode.allCases.map(\.rawValue).joined(separator: ", ")).", valueName: "mode"))
    var mode: String = RankMode.maxLogits.rawValue

    @Option(help: ArgumentHelp("Evaluate only the first N records that have comparisons.", valueName: "n"))
    var limit: Int?

    @Option(help: ArgumentHelp("Records per ranking call (default: batching.max_jobs).", valueName: "n"))
    var batch: Int?

    @Option(help: ArgumentHelp("Also write the report to this file; progress goes to FILE.progress.jsonl unless --resume names another.", valueName: "file"))
    var output: String?

    @Option(help: ArgumentHelp("Progress file: ranked records are appended here and skipped when the run is started again.", valueName: "file"))
    var resume: String?

    @Flag(help: "Print the report as JSON.")
    var json = false

    @OptionGroup var options: ConfigurationOptions

    func validate() throws {
        if let limit, limit < 1 { throw ValidationError("--limit must be at least 1 (is \(limit))") }
        if let batch, batch < 1 { throw ValidationError("--batch must be at least 1 (is \(batch))") }
        if RankMode(rawValue: mode) == nil {
            throw ValidationError("unknown rank mode \(mode); expected one of \(RankMode.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    func run() async throws {
        let config = try options.loadOrFail()
        let set = try readSet()
        guard !set.records.isEmpty else {
            throw CLIError("\(file): no record has cmp_results (\(set.withoutComparisons) without), nothing to evaluate")
        }
        var rankers: [any CandidateRanker] = []
        if models.isEmpty {
            // Every configured ranker (models.ranker and models.rankers), the default first.
            let set = try ModelFactory.rankers(for: config)
            rankers = ([set.defaultName] + set.names.filter { $0 != set.defaultName }).map { set.rankers[$0]! }
        }
        for directory in models {
            var c = config
            c.models.ranker = directory
            c.models.rankers = [:]
            c.models.defaultRanker = ""
            rankers.append(try ModelFactory.ranker(for: c))
        }
        var progress = try ProgressFile(path: resume ?? output.map { $0 + ".progress.jsonl" }, set: set)
        var evaluations: [RankerEvaluation] = []
        for ranker in rankers {
            let ranks = try await rankAll(set, with: ranker, progress: &progress,
                                          batchSize: batch ?? config.batching.maxJobs)
            evaluations.append(set.evaluate(ranker: ranker.label, ranks: ranks))
        }
        for metric in scoreRankers {
            do {
                evaluations.append(set.evaluate(ranker: "scores." + metric, ranks: try set.ranks(byScore: metric)))
            } catch let error as EvaluationError {
                throw CLIError("\(file): --score-ranker \(metric): \(error)")
            }
        }
        let report = json ? jsonReport(set, evaluations) : table(set, evaluations)
        print(report)
        if let output {
            do { try Data((report + "\n").utf8).write(to: URL(fileURLWithPath: output)) } catch {
                throw CLIError("cannot write the report to \(output): \(error.localizedDescription)")
            }
        }
    }

    private func readSet() throws -> EvaluationSet {
        var records: [MixInstructRecord] = []
        let decoder = JSONDecoder()
        for record in JobFileReader.records(in: try readInput(file)) {
            do { records.append(try decoder.decode(MixInstructRecord.self, from: Data(record.bytes))) } catch {
                throw CLIError("\(file):\(record.line): not a MixInstruct record: \(Self.describe(error))")
            }
        }
        do { return try EvaluationSet(records, limit: limit) } catch let error as EvaluationError {
            throw CLIError("\(file): \(error)")
        }
    }

    /// The ranks of every record of the set by `ranker`: those in the progress file, then the rest, ranked in
    /// batches whose results are appended to the progress file as each batch finishes.
    private func rankAll(_ set: EvaluationSet, with ranker: any CandidateRanker, progress: inout ProgressFile,
                         batchSize: Int) async throws -> [[Int]] {
        let rankMode = RankMode(rawValue: mode)!
        let pending = set.records.filter { progress.ranks(ranker: ranker.label, mode: mode, id: $0.id) == nil }
        let bar = ProgressBar(total: set.records.count, title: ranker.label)
        var done = set.records.count - pending.count
        bar.show(done)
        var start = 0
        while start < pending.count {
            let chunk = Array(pending[start..<min(start + batchSize, pending.count)])
            let requests = chunk.map {
                RankRequest(jobId: $0.id, instruction: $0.instruction, input: $0.input, candidates: $0.candidates.map(\.text),
                            mode: rankMode, seed: FNV1a.hash($0.id.utf8))
            }
            var entries: [EvaluationCheckpoint.Entry] = []
            var failure: RankingError?
            for (record, result) in zip(chunk, await ranker.rank(requests)) {
                switch result {
                case .success(let outcome):
                    entries.append(EvaluationCheckpoint.Entry(ranker: ranker.label, mode: mode, id: record.id, fingerprint: record.fingerprint,
                                                              ranks: outcome.ranks, scores: outcome.scores.map { $0.isNaN ? nil : Double($0) }))
                case .failure(let error):
                    failure = failure ?? error
                }
            }
            try progress.append(entries)
            if let failure {
                bar.finish()
                throw CLIError("\(ranker.label): \(failure)")
            }
            done += chunk.count
            start += chunk.count
            bar.show(done)
        }
        bar.finish()
        return set.records.map { progress.ranks(ranker: ranker.label, mode: mode, id: $0.id)! }
    }

    // MARK: Output

    private func metricNames(_ evaluations: [RankerEvaluation]) -> [String] {
        Set(evaluations.flatMap(\.scores.keys)).sorted()
    }

    private func table(_ set: EvaluationSet, _ evaluations: [RankerEvaluation]) -> String {
        func cell(_ value: Double, _ format: String) -> String { value.isNaN ? "nan" : String(format: format, value) }
        let metrics = metricNames(evaluations)
        let width = max(6, evaluations.map(\.ranker.count).max() ?? 0)
        let header = ["pearson", "spearman", "footrule", "set-based", "GPT-Rank", "top-1", "top-3"] + metrics
        var lines = ["\(set.records.count) records of \(file) with ChatGPT comparisons, \(set.models.count) candidates each"
            + (set.withoutComparisons > 0 ? " (\(set.withoutComparisons) without comparisons left out)" : "")]
        lines.append("ranker".padding(toLength: width, withPad: " ", startingAt: 0) + header.map { $0.leftPadded(10) }.joined())
        for e in evaluations {
            var cells = [cell(e.pearson, "%.4f"), cell(e.spearman, "%.4f"), cell(e.spearmanFootrule, "%.3f"), cell(e.setBased, "%.4f"),
                         cell(e.gptRank, "%.3f"), cell(100 * e.top1, "%.1f%%"), cell(100 * e.top3, "%.1f%%")]
            cells += metrics.map { e.scores[$0].map { cell($0, "%.4f") } ?? "-" }
            lines.append(e.ranker.padding(toLength: width, withPad: " ", startingAt: 0) + cells.map { $0.leftPadded(10) }.joined())
        }
        return lines.joined(separator: "\n")
    }

    private func jsonReport(_ set: EvaluationSet, _ evaluations: [RankerEvaluation]) -> String {
        func number(_ value: Double) -> JSONValue { value.isNaN ? .null : .number(value) }
        let rankers: [JSONValue] = evaluations.map { e in
            .object([
                "ranker": .string(e.ranker), "examples": .number(Double(e.examples)),
                "pearson": number(e.pearson), "spearman": number(e.spearman),
                "spearman_footrule": number(e.spearmanFootrule), "set_based": number(e.setBased),
                "gpt_rank": number(e.gptRank), "top1": number(e.top1), "top3": number(e.top3),
                "scores": .object(e.scores.mapValues(number)),
            ])
        }
        let object: JSONValue = .object([
            "file": .string(file), "evaluated": .number(Double(set.records.count)),
            "without_cmp_results": .number(Double(set.withoutComparisons)),
            "models": .array(set.models.map { .string($0) }), "rankers": .array(rankers),
        ])
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: (try? encoder.encode(object)) ?? Data(), as: UTF8.self)
    }

    private static func describe(_ error: Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, let context):
            "\(key.stringValue) is missing" + (context.codingPath.isEmpty ? "" : " in \(context.codingPath.map(\.stringValue).joined(separator: "."))")
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context), DecodingError.dataCorrupted(let context):
            (context.codingPath.isEmpty ? "" : "\(context.codingPath.map(\.stringValue).joined(separator: ".")): ") + context.debugDescription
        default:
            "\(error)"
        }
    }
}

/// The `--resume` file: entries already on disk by (ranker, rank mode, id), and appends made durable batch by batch.
private struct ProgressFile {
    let path: String?
    private var known: [String: [String: EvaluationCheckpoint.Entry]] = [:]

    init(path: String?, set: EvaluationSet) throws {
        self.path = path
        guard let path, FileManager.default.fileExists(atPath: path) else { return }
        guard let data = FileManager.default.contents(atPath: path) else { throw CLIError("cannot read the progress file \(path)") }
        let contents: EvaluationCheckpoint.Contents
        do { contents = try EvaluationCheckpoint.parse(data) } catch { throw CLIError("progress file \(path): \(error)") }
        if contents.validLength < data.count {
            // A torn last line from an interrupted append: cut it, its record is ranked again.
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
            try handle.truncate(atOffset: UInt64(contents.validLength))
            try handle.close()
        }
        let fingerprints = Dictionary(uniqueKeysWithValues: set.records.map { ($0.id, $0.fingerprint) })
        let width = set.models.count
        for entry in contents.entries {
            guard let expected = fingerprints[entry.id] else { continue }
            guard entry.fingerprint == expected, entry.ranks.count == width else {
                throw CLIError("progress file \(path): record \(entry.id) differs from the one \(entry.ranker) ranked (fingerprint \(entry.fingerprint), now \(expected)); delete the file or name another with --resume")
            }
            known[Self.key(entry.ranker, entry.mode), default: [:]][entry.id] = entry
        }
    }

    private static func key(_ ranker: String, _ mode: String) -> String { ranker + " " + mode }

    func ranks(ranker: String, mode: String, id: String) -> [Int]? { known[Self.key(ranker, mode)]?[id]?.ranks }

    mutating func append(_ entries: [EvaluationCheckpoint.Entry]) throws {
        for entry in entries { known[Self.key(entry.ranker, entry.mode), default: [:]][entry.id] = entry }
        guard let path, !entries.isEmpty else { return }
        var data = Data()
        for entry in entries { data.append(try EvaluationCheckpoint.line(entry)) }
        do {
            if !FileManager.default.fileExists(atPath: path) {
                guard FileManager.default.createFile(atPath: path, contents: nil) else { throw CLIError("cannot create it") }
            }
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
            defer { try? handle.close() }
            try handle.seekToEnd()
            try handle.write(contentsOf: data)
            try handle.synchronize()
        } catch {
            throw CLIError("cannot append to the progress file \(path): \(error)")
        }
    }
}

/// A one-line progress bar on standard error, drawn only when it is a terminal.
private struct ProgressBar {
    let total: Int
    let title: String
    let enabled = isatty(STDERR_FILENO) == 1

    func show(_ done: Int) {
        guard enabled, total > 0 else { return }
        let width = 30, filled = done * width / total
        let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
        FileHandle.standardError.write(Data("\r\(title) [\(bar)] \(done)/\(total)".utf8))
    }

    func finish() {
        guard enabled else { return }
        FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
    }
}

private extension String {
    func leftPadded(_ width: Int) -> String {
        count >= width ? " " + self : String(repeating: " ", count: width - count) + self
    }
}
