import BlendCore
import Foundation
import XCTest

/// The JSON Schemas in `schemas/` must judge the examples as the Swift validator does, and the
/// events we emit must satisfy the event schema. Checked with Python's `jsonschema` (on the
/// build machines); skipped with a message where it is not installed.
final class SchemaAgreementTests: XCTestCase {
    /// Rules JSON Schema cannot state: raw bytes that are not a JSON document, byte sizes of the
    /// whole message or of the metadata, top_k against the candidate count, and what a JSON
    /// parser decides before a schema sees the document (lone surrogates, duplicate keys, nesting
    /// depth; the schema states the depth limit in its description).
    static let beyondSchema: Set<String> = [
        "not_json--truncated.json", "invalid_utf8--latin1-bytes.json", "job_too_large--many-large-candidates.json",
        "metadata_too_large--big-metadata.json", "top_k_out_of_range--more-than-candidates.json",
        "lone_surrogate--instruction.json", "duplicate_field--job-id.json", "nesting_too_deep--metadata.json",
        // Conversations the flattening refuses: turns compared with each other, which JSON Schema cannot do.
        "conversation_empty_turn--assistant.json", "conversation_not_alternating--starts-with-assistant.json",
        "conversation_turn_counts_differ--short-b.json", "conversation_user_turns_differ--second-question.json",
    ]

    private func schemaVerdicts(schema: String, documents: [URL]) throws -> [String: Bool] {
        let script = """
        import json, sys
        try:
            import jsonschema
        except ImportError:
            print("NO-JSONSCHEMA"); sys.exit(0)
        schema = json.load(open(sys.argv[1]))
        validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
        print(json.dumps({p: validator.is_valid(json.load(open(p, encoding="utf-8"))) for p in sys.argv[2:]}))
        """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script, RepositoryPaths.schemas.appendingPathComponent(schema).path] + documents.map(\.path)
        let pipe = Pipe()
        process.standardOutput = pipe
        do { try process.run() } catch { throw XCTSkip("python3 is not available: \(error)") }
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        if String(decoding: output, as: UTF8.self).hasPrefix("NO-JSONSCHEMA") { throw XCTSkip("python3 has no jsonschema module") }
        XCTAssertEqual(process.terminationStatus, 0)
        return try JSONDecoder().decode([String: Bool].self, from: output)
    }

    func testJobSchemaJudgesTheExamplesAsTheValidatorDoes() throws {
        let valid = try RepositoryPaths.files(in: "valid")
        let invalid = try RepositoryPaths.files(in: "invalid").filter { !Self.beyondSchema.contains($0.lastPathComponent) }
        let verdicts = try schemaVerdicts(schema: "job.schema.json", documents: valid + invalid)
        for file in valid { XCTAssertEqual(verdicts[file.path], true, "schema rejects \(file.lastPathComponent)") }
        for file in invalid { XCTAssertEqual(verdicts[file.path], false, "schema accepts \(file.lastPathComponent)") }
    }

    func testEmittedEventsSatisfyTheEventSchema() throws {
        let completed = EventData(
            jobId: "req-1", status: .completed,
            ranking: [.init(index: 0, model: "a", rank: 2, score: -0.5), .init(index: 1, model: "b", rank: 1, score: 0.5)],
            fused: .init(text: "fused", fuser: "top1", topK: 1, sourceIndexes: [1], generatedTokens: 0),
            timingsMs: ["rank": 1.5, "store": 0.3], models: ["ranker": "consensus-chrf", "fuser": "top1"],
            metadata: .object([.init("tenant", .string("a"))]), kafka: .init(topic: "blend.jobs", partition: 3, offset: 42))
        let rejected = EventData(jobId: "req-2", status: .rejected, violations: [Violation(.tooFewCandidates, at: "candidates", "a job needs at least 2 candidates, found 1")])
        let failed = EventData(jobId: "req-3", status: .failed, error: "inference failed")
        var compare = EventData(jobId: "cmp-1", status: .completed, models: ["ranker": "pairrm"])
        compare.task = .compare
        compare.compare = .init(mode: .reverse, pairs: [.init(index: 0, .pairwise(ab: nil, ba: 0.5, mode: .reverse)),
                                                       .init(index: 1, .pairwise(ab: nil, ba: 0, mode: .reverse))], forwardPasses: 2)
        var best = EventData(jobId: "bon-1", status: .completed)
        best.task = .bestOfN
        best.selection = .init(goal: .best, method: .bubble, index: 2, model: "c", eliminationOrder: [2, 0, 1], scores: nil, forwardPasses: 4)
        var worst = EventData(jobId: "won-1", status: .completed)
        worst.task = .worstOfN
        worst.selection = .init(goal: .worst, method: .full, index: 0, model: "a", eliminationOrder: nil, scores: [-1, 0.5, 0.5], forwardPasses: 6)
        var reward = EventData(jobId: "rwd-1", status: .completed)
        reward.task = .reward
        reward.reward = .init(reference: .init(mode: .longest, index: 1), candidates: [.init(index: 0, model: "a", reward: -0.25), .init(index: 1, model: "b", reward: 0)], forwardPasses: 4)
        var rewardText = reward
        rewardText.jobId = "rwd-2"
        rewardText.reward?.reference = .init(text: "Paris.")
        var failedKind = EventData(jobId: "cmp-3", status: .failed, error: "ranking job cmp-3 failed: cannot tokenize")
        failedKind.task = .compare
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("blendd-events-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var files: [URL] = []
        for (i, data) in [completed, rejected, failed, compare, best, worst, reward, rewardText, failedKind].enumerated() {
            let event = CompletionEvent(data: data, workerId: "host-1-123", time: Date(timeIntervalSince1970: 1_795_000_000.25))
            XCTAssertEqual(event.id, "\(data.jobId)/\(data.status.rawValue)")
            XCTAssertEqual(event.time, "2026-11-18T11:06:40.250Z")
            let file = dir.appendingPathComponent("event\(i).json")
            try Data(try event.jsonBytes()).write(to: file)
            files.append(file)
        }
        let examples = try FileManager.default.contentsOfDirectory(at: RepositoryPaths.examples.appendingPathComponent("events"), includingPropertiesForKeys: nil)
        XCTAssertGreaterThanOrEqual(examples.count, 5, "an example event per job kind")
        let verdicts = try schemaVerdicts(schema: "event.schema.json", documents: files + examples)
        for file in files + examples { XCTAssertEqual(verdicts[file.path], true, "schema rejects \(file.lastPathComponent)") }
        // Types follow the kind for completed jobs only.
        XCTAssertEqual(CompletionEvent(data: compare, workerId: "w", time: Date()).type, "blend.job.compare.completed")
        XCTAssertEqual(CompletionEvent(data: failedKind, workerId: "w", time: Date()).type, "blend.job.failed")
    }
}
