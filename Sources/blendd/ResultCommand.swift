import ArgumentParser
import BlendCore
import Foundation
import Postgres

struct ResultCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "result",
        abstract: "Print a job's stored outcome: ranking and fused text.",
        discussion: "Reads the blend_results view. Exit status 1 when the job has no stored outcome."
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
