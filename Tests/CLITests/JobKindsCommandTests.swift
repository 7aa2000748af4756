import BlendTestSupport
import Foundation
import XCTest

/// `blendd rank` and `blendd result` for every job kind, run as a user runs them.
final class JobKindsCommandTests: XCTestCase {
    struct CLI {
        func run(_ arguments: [String], stdin: Data = Data()) throws -> (status: Int32, stdout: String, stderr: String) {
            let r = try CommandLineTests.runBlendd(arguments, stdin: stdin)
            return (r.status, r.stdout, r.stderr)
        }
    }
    let cli = CLI()
    static let examples = CommandLineTests.repositoryRoot.appendingPathComponent("schemas/examples/valid")
    static let kindExamples = ["compare-pairs", "compare-conversations", "best-of-n", "worst-of-n-full", "reward-longest", "reward-reference-text"]
    static var model: String { CommandLineTests.repositoryRoot.appendingPathComponent("Tests/Fixtures/pairrm-tiny").path }

    func lines(_ names: [String]) throws -> Data {
        var out = Data()
        for name in names {
            let object = try JSONSerialization.jsonObject(with: Data(contentsOf: Self.examples.appendingPathComponent("\(name).json")))
            out += try JSONSerialization.data(withJSONObject: object) + Data("\n".utf8)
        }
        return out
    }

    func testRankAnswersEveryKindInOneCallAndPrintsEachAsItsEventCarriesIt() throws {
        let input = try lines(["minimal"] + Self.kindExamples)
        let r = try cli.run(["rank", "--model", Self.model, "--json", "-"], stdin: input)
        XCTAssertEqual(r.status, 0, r.stderr)
        let objects = try r.stdout.split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        XCTAssertEqual(objects.count, 7)
        XCTAssertNotNil(objects[0]["ranks"], "a blend job prints as before")
        XCTAssertEqual(objects.dropFirst().map { $0["task"] as? String }, ["compare", "compare", "best_of_n", "worst_of_n", "reward", "reward"])
        let pairs = try XCTUnwrap((objects[1]["compare"] as? [String: Any])?["pairs"] as? [[String: Any]])
        XCTAssertEqual(pairs.count, 2)
        XCTAssertTrue(pairs.allSatisfy { ["a", "b", "tie"].contains($0["verdict"] as? String ?? "") })
        XCTAssertEqual(((objects[2]["compare"] as? [String: Any])?["mode"] as? String), "[A,B]")
        let selection = try XCTUnwrap(objects[3]["selection"] as? [String: Any])
        XCTAssertEqual((selection["elimination_order"] as? [Int])?.count, 3)
        XCTAssertEqual(selection["forward_passes"] as? Int, 4)
        XCTAssertEqual((objects[4]["selection"] as? [String: Any])?["method"] as? String, "full")
        XCTAssertEqual(((objects[6]["reward"] as? [String: Any])?["reference"] as? [String: Any])?["text"] as? String, "Paris.")

        let table = try cli.run(["rank", "--model", Self.model, "-"], stdin: input)
        XCTAssertEqual(table.status, 0, table.stderr)
        for fragment in ["task compare  mode [A,B]+[B,A]", "P(A better)", "task best_of_n  method bubble", "winner, then eliminated",
                         "task reward", "reference: candidate 1 (longest)", "reference: given text: Paris."] {
            XCTAssertTrue(table.stdout.contains(fragment), "\(fragment) in\n\(table.stdout)")
        }
    }

    func testTaskReadsEveryJobAsThatKindAndAFieldOfAnotherKindIsAnError() throws {
        let blend = try lines(["minimal"])
        let best = try cli.run(["rank", "--task", "worst_of_n", "--json", "-"], stdin: blend)
        XCTAssertEqual(best.status, 0, best.stderr)
        XCTAssertTrue(best.stdout.contains(#""task":"worst_of_n""#), best.stdout)
        XCTAssertTrue(best.stderr.contains("consensus") || best.stdout.contains("consensus-chrf"), "without a model the weight-free ranker answers")

        let compare = try cli.run(["rank", "--task", "compare", "-"], stdin: try lines(["full-options"]))
        XCTAssertEqual(compare.status, 1)
        XCTAssertTrue(compare.stderr.contains("field_not_for_task at candidates"), compare.stderr)
        XCTAssertTrue(compare.stderr.contains("no_pairs"), compare.stderr)

        let bad = try cli.run(["rank", "--task", "judge", "-"], stdin: blend)
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("unknown task judge"), bad.stderr)
        let mode = try cli.run(["rank", "--task", "reward", "--mode", "bubble", "-"], stdin: blend)
        XCTAssertNotEqual(mode.status, 0)
        XCTAssertTrue(mode.stderr.contains("--mode sets the rank mode of blend jobs"), mode.stderr)
    }

    /// Jobs of every kind through `blendd dev run` (embedded broker, worker, PostgreSQL), then `blendd result`.
    func testResultPrintsEveryKindFromItsView() async throws {
        guard TestDatabase.serverURL != nil else { throw XCTSkip(TestDatabase.skipMessage) }
        let db = try await TestDatabase.migrated()
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("kinds-\(UUID().uuidString).jsonl")
        try lines(["minimal"] + Self.kindExamples).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let dev = try cli.run(["dev", "run", "--database-url", db.url, "--jobs", file.path, "--timeout", "60"])
        XCTAssertEqual(dev.status, 0, dev.stderr)

        let expectations: [(String, [String])] = [
            ("cmp-2026-000001", ["task      compare", "mode      [A,B]+[B,A]", "P(A better)", "Paris is the capital of F... | Lyon."]),
            ("cmp-2026-000002", ["mode      [A,B]", "<Response 1>: Paris."]),
            ("bon-2026-000001", ["task      best_of_n", "method    bubble  (forward passes", "winner, then eliminated"]),
            ("won-2026-000001", ["task      worst_of_n", "method    full  (forward passes", "scores: 0="]),
            ("rwd-2026-000001", ["task      reward", "reference: candidate 1 (longest)", "koala-7b"]),
            ("rwd-2026-000002", ["reference: given text: Paris."]),
        ]
        for (id, fragments) in expectations {
            let r = try cli.run(["result", id, "--database-url", db.url])
            XCTAssertEqual(r.status, 0, r.stderr)
            for fragment in fragments { XCTAssertTrue(r.stdout.contains(fragment), "\(id): \(fragment) in\n\(r.stdout)") }
            let json = try cli.run(["result", id, "--json", "--database-url", db.url])
            XCTAssertEqual(json.status, 0, json.stderr)
            let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as! [String: Any]
            XCTAssertEqual(object["status"] as? String, "completed", json.stdout)
            XCTAssertEqual(object["job_id"] as? String, id)
        }
        let compare = try JSONSerialization.jsonObject(with: Data(try cli.run(["result", "cmp-2026-000001", "--json", "--database-url", db.url]).stdout.utf8)) as! [String: Any]
        XCTAssertEqual((compare["pairs"] as? [[String: Any]])?.count, 2)
        XCTAssertEqual((compare["metadata"] as? [String: Any])?["tenant"] as? String, "rlhf")
        let reward = try JSONSerialization.jsonObject(with: Data(try cli.run(["result", "rwd-2026-000001", "--json", "--database-url", db.url]).stdout.utf8)) as! [String: Any]
        XCTAssertEqual((reward["candidates"] as? [[String: Any]])?.count, 3)
        XCTAssertEqual((reward["reference"] as? [String: Any])?["index"] as? Int, 1)
        let blend = try cli.run(["result", "req-2026-000123", "--database-url", db.url])
        XCTAssertEqual(blend.status, 0, blend.stderr)
        XCTAssertTrue(blend.stdout.contains("rank  index"), blend.stdout)
        try await db.drop()
    }
}
