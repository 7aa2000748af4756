import ArgumentParser
import BlendCore
import Foundation
import Postgres

struct ResultCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "result",
        abstract: "Print a job's stored outcome: ranking and fused text, pair verdicts, the selected candidate, or rewards.",
        discussion: """
        Reads the view of the job's kind: blend_results, compare_results, best_of_n_results, \
        worst_of_n_results or reward_results. Exit status 1 when the job has no stored outcome.
        """
    )

    @Argument(help: "The job_id.")
    var jobId: String

    @Flag(help: "Print the row as JSON.")
    var json = false

    @Option(help: ArgumentHelp("PostgreSQL URL (default: postgres.url from the configuration).", valueName: "url"))
    var databaseURL: String?

    @OptionGroup var options: ConfigurationOptions

    func run() async throws {
        let url = try databaseURL ?? options.loadOrFail().postgres.url
        let connection = try await PostgresConnection.connect(url, applicationName: "blendd result")
        let kinds = try await connection.query("SELECT task FROM jobs WHERE job_id = \(jobId)")
        guard let kindRow = kinds.first else { throw CLIError("no stored outcome for job \(jobId)") }
        let taskName = try kindRow.decode("task", as: String.self)
        guard let task = JobTask(rawValue: taskName) else { throw CLIError("job \(jobId) has a task this blendd does not know: \(taskName)") }
        if task != .blend { return try await printTask(task, on: connection) }
        let rows = try await connection.query("""
            SELECT r.job_id, r.status, r.error, r.instruction, r.ranker, r.fuser, r.fused_text, r.fused_from,
                   r.ranking, r.metadata, r.finished_at, j.violations, j.worker_id, j.timings_ms
              FROM blend_results r JOIN jobs j USING (job_id)
             WHERE r.job_id = \(jobId)
            """)
        guard let row = rows.first else { throw CLIError("no stored outcome for job \(jobId)") }
        let ranking = try row.decode("ranking", as: PostgresJSON?.self)?.decoded(as: [RankedRow].self) ?? []
        if json {
            var object: [String: ExactJSON] = [
                "job_id": .string(jobId),
                "status": .string(try row.decode("status")),
                "ranking": .array(ranking.map { ExactJSON($0.json) }),
                "finished_at": .string(CompletionEvent.timestamp(try row.decode("finished_at", as: Date.self))),
                "worker_id": .string(try row.decode("worker_id")),
            ]
            for column in ["error", "ranker", "fuser", "fused_text"] {
                if let v = try row.decode(column, as: String?.self) { object[column] = .string(v) }
            }
            // Parsed exactly, so metadata numbers print as written (18446744073709551617, 1e400).
            for column in ["violations", "metadata", "timings_ms"] {
                if let v = try row.decode(column, as: PostgresJSON?.self) {
                    do {
                        object[column] = try JSONParser.parse(Array(v.text.utf8)).value
                    } catch {
                        throw CLIError("job \(jobId): the stored \(column) is not JSON (\(error))")
                    }
                }
            }
            if let from = try row.decode("fused_from", as: [Int]?.self) { object["fused_from"] = .array(from.map { .number(String($0)) }) }
            print(ExactJSON.object(object.keys.sorted().map { ExactJSON.Member($0, object[$0]!) }).serialized())
            return
        }
        print("job       \(jobId)")
        print("status    \(try row.decode("status", as: String.self))  (worker \(try row.decode("worker_id", as: String.self)), finished \(CompletionEvent.timestamp(try row.decode("finished_at", as: Date.self))))")
        if let error = try row.decode("error", as: String?.self) { print("error     \(error)") }
        if let ranker = try row.decode("ranker", as: String?.self) { print("ranker    \(ranker)") }
        if !ranking.isEmpty {
            let width = max(5, ranking.map(\.model.count).max() ?? 0)
            print("")
            print("  rank  index  " + "model".padding(toLength: width, withPad: " ", startingAt: 0) + "  score       text")
            for r in ranking {
                let text = r.text.replacingOccurrences(of: "\n", with: " ")
                let shown = text.count > 60 ? String(text.prefix(57)) + "..." : text
                let rank = r.rank.map { String(format: "%4d", $0) } ?? "   -"
                let score = r.score.map { String(format: "%10.6f", $0) } ?? "         -"
                print("  \(rank)  \(String(format: "%5d", r.index))  \(r.model.padding(toLength: width, withPad: " ", startingAt: 0))  \(score)  \(shown)")
            }
        }
        if let fused = try row.decode("fused_text", as: String?.self) {
            let from = try row.decode("fused_from", as: [Int]?.self) ?? []
            print("")
            print("fused by \(try row.decode("fuser", as: String?.self) ?? "?") from candidates \(from.map(String.init).joined(separator: ", ")):")
            print(fused)
        }
    }

    /// The common columns every kind's view has, as JSON members.
    private func commonMembers(_ row: PostgresRow, task: JobTask) throws -> [String: ExactJSON] {
        var object: [String: ExactJSON] = [
            "job_id": .string(jobId), "task": .string(task.rawValue), "status": .string(try row.decode("status")),
            "finished_at": .string(CompletionEvent.timestamp(try row.decode("finished_at", as: Date.self))),
        ]
        for column in ["error", "ranker"] { if let v = try row.decode(column, as: String?.self) { object[column] = .string(v) } }
        if let v = try row.decode("metadata", as: PostgresJSON?.self) {
            do { object["metadata"] = try JSONParser.parse(Array(v.text.utf8)).value } catch {
                throw CLIError("job \(jobId): the stored metadata is not JSON (\(error))")
            }
        }
        return object
    }

    private func printHeader(_ row: PostgresRow, task: JobTask) throws {
        print("job       \(jobId)")
        print("task      \(task.rawValue)")
        print("status    \(try row.decode("status", as: String.self))  (finished \(CompletionEvent.timestamp(try row.decode("finished_at", as: Date.self))))")
        if let error = try row.decode("error", as: String?.self) { print("error     \(error)") }
        if let ranker = try row.decode("ranker", as: String?.self) { print("ranker    \(ranker)") }
    }

    private static func number(_ v: Double?) -> ExactJSON { v.map { .number(Self.literal($0)) } ?? .null }
    private static func literal(_ v: Double) -> String { v.isFinite ? "\(v)" : "null" }
    private static func sorted(_ o: [String: ExactJSON]) -> ExactJSON { .object(o.keys.sorted().map { ExactJSON.Member($0, o[$0]!) }) }

    /// A compare, best/worst-of-n or reward job, from its kind's view.
    private func printTask(_ task: JobTask, on connection: PostgresConnection) async throws {
        switch task {
        case .blend:
            preconditionFailure("blend jobs print from blend_results")
        case .compare:
            let rows = try await connection.query("""
                SELECT job_id, status, error, ranker, metadata, finished_at, pair, mode, a, b, logit::float8 AS logit,
                       reference_logit::float8 AS reference_logit, probability, verdict
                  FROM compare_results WHERE job_id = \(jobId) ORDER BY pair
                """)
            guard let first = rows.first else { throw CLIError("no stored outcome for job \(jobId)") }
            var pairs: [(index: Int, verdict: String, logit: Double, reference: Double, probability: Double)] = []
            var texts: [(a: String, b: String)] = []
            for row in rows {
                guard let index = try row.decode("pair", as: Int?.self) else { continue }
                pairs.append((index, try row.decode("verdict"), try row.decode("logit"), try row.decode("reference_logit"), try row.decode("probability")))
                texts.append((try row.decode("a"), try row.decode("b")))
            }
            if json {
                var object = try commonMembers(first, task: task)
                if let mode = try first.decode("mode", as: String?.self) { object["mode"] = .string(mode) }
                object["pairs"] = .array(zip(pairs, texts).map { p, t in
                    Self.sorted(["index": .number(String(p.index)), "verdict": .string(p.verdict), "logit": Self.number(p.logit),
                                 "reference_logit": Self.number(p.reference), "probability": Self.number(p.probability),
                                 "a": .string(t.a), "b": .string(t.b)])
                })
                print(Self.sorted(object).serialized())
                return
            }
            try printHeader(first, task: task)
            if !pairs.isEmpty {
                print("mode      \(try first.decode("mode", as: String?.self) ?? "?")")
                print("")
                // Texts are indexed by row, rows by pair: rebuild the row order as the pair order.
                TaskTables.compareRows(pairs.enumerated().map { ($0, $1.verdict, $1.logit, $1.reference, $1.probability) }, texts: texts)
            }
        case .bestOfN, .worstOfN:
            let rows = try await connection.query("""
                SELECT job_id, status, error, ranker, metadata, finished_at, method, selected, selected_model, selected_text,
                       elimination_order, scores, forward_passes
                  FROM \(identifier: task == .bestOfN ? "best_of_n_results" : "worst_of_n_results") WHERE job_id = \(jobId)
                """)
            guard let row = rows.first else { throw CLIError("no stored outcome for job \(jobId)") }
            let selected = try row.decode("selected", as: Int?.self)
            let order = try row.decode("elimination_order", as: [Int]?.self)
            let scores = try row.decode("scores", as: [Double]?.self)
            if json {
                var object = try commonMembers(row, task: task)
                if let selected {
                    var s: [String: ExactJSON] = [
                        "index": .number(String(selected)), "method": .string(try row.decode("method")),
                        "model": .string(try row.decode("selected_model")), "text": .string(try row.decode("selected_text")),
                        "forward_passes": .number(String(try row.decode("forward_passes", as: Int.self))),
                    ]
                    if let order { s["elimination_order"] = .array(order.map { .number(String($0)) }) }
                    if let scores { s["scores"] = .array(scores.map { Self.number($0) }) }
                    object["selection"] = Self.sorted(s)
                }
                print(Self.sorted(object).serialized())
                return
            }
            try printHeader(row, task: task)
            if let selected {
                print("method    \(try row.decode("method", as: String.self))  (forward passes \(try row.decode("forward_passes", as: Int.self)))")
                print("")
                TaskTables.selectionRows(goal: task == .bestOfN ? "best" : "worst", index: selected, model: try row.decode("selected_model"),
                                         text: try row.decode("selected_text"), eliminationOrder: order, scores: scores)
            }
        case .reward:
            let rows = try await connection.query("""
                SELECT job_id, status, error, ranker, metadata, finished_at, idx, model, text, reward,
                       reference_mode, reference_index, reference_text, forward_passes
                  FROM reward_results WHERE job_id = \(jobId) ORDER BY idx
                """)
            guard let first = rows.first else { throw CLIError("no stored outcome for job \(jobId)") }
            var candidates: [(index: Int, model: String, reward: Double?, text: String)] = []
            for row in rows {
                guard let index = try row.decode("idx", as: Int?.self) else { continue }
                candidates.append((index, try row.decode("model"), try row.decode("reward", as: Double?.self), try row.decode("text")))
            }
            let mode = try first.decode("reference_mode", as: String?.self)
            let refIndex = try first.decode("reference_index", as: Int?.self)
            let refText = try first.decode("reference_text", as: String?.self)
            if json {
                var object = try commonMembers(first, task: task)
                var reference: [String: ExactJSON] = [:]
                if let mode { reference["mode"] = .string(mode) }
                if let refIndex { reference["index"] = .number(String(refIndex)) }
                if let refText { reference["text"] = .string(refText) }
                if !reference.isEmpty { object["reference"] = Self.sorted(reference) }
                object["candidates"] = .array(candidates.map { c in
                    Self.sorted(["index": .number(String(c.index)), "model": .string(c.model), "reward": Self.number(c.reward), "text": .string(c.text)])
                })
                print(Self.sorted(object).serialized())
                return
            }
            try printHeader(first, task: task)
            if mode != nil || refText != nil {
                let reference = EventData.RewardResult.Reference(mode: mode.flatMap(ReferenceMode.init(rawValue:)), index: refIndex, text: refText)
                print("")
                TaskTables.rewardRows(reference: TaskTables.referenceText(reference), rows: candidates)
            }
        }
    }

    struct RankedRow: Decodable {
        let index: Int
        let model: String
        let rank: Int?
        let score: Double?
        let text: String

        var json: JSONValue {
            .object(["index": .number(Double(index)), "model": .string(model), "rank": rank.map { .number(Double($0)) } ?? .null,
                     "score": score.map(JSONValue.number) ?? .null, "text": .string(text)])
        }
    }
}
