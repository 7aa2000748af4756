import Foundation
import XCTest

/// `blendd eval` as a user runs it: reports against the reference's values, resuming after an interruption
/// (a torn progress line, a SIGKILL mid-run), and reward-model directories in `eval` and `rank`.
final class EvalCommandTests: XCTestCase {
    static let sample = "samples/mixinstruct-sample.jsonl"
    var scratch: URL!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("blendd-eval-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: scratch)
    }

    func blendd(_ arguments: [String]) throws -> Process {
        let process = Process()
        process.executableURL = CommandLineTests.blenddURL
        process.arguments = arguments
        process.currentDirectoryURL = CommandLineTests.repositoryRoot
        process.standardInput = FileHandle.nullDevice
        return process
    }

    func run(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        let process = try blendd(arguments)
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: stdout, as: UTF8.self), String(decoding: stderr, as: UTF8.self))
    }

    func report(_ arguments: [String]) throws -> [String: Any] {
        let r = try run(["eval", Self.sample, "--json"] + arguments)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stderr, "", "no progress bar when standard error is not a terminal")
        return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], r.stdout)
    }

    func rankers(_ report: [String: Any]) -> [[String: Any]] { report["rankers"] as? [[String: Any]] ?? [] }

    func progressLines(_ path: URL) throws -> [String] {
        try String(contentsOf: path, encoding: .utf8).split(separator: "\n").map(String.init)
    }

    func testScoreRankerReportsEqualTheReferenceScriptsValues() throws {
        let fixture = CommandLineTests.repositoryRoot.appendingPathComponent("Tests/Fixtures/eval/reference.json")
        let reference = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: fixture)) as? [String: Any])
        let expected = try XCTUnwrap(reference["sample_reports"] as? [[String: Any]])
        for limit in [nil, 7] as [Int?] {
            var arguments = ["--score-ranker", "bleu", "--score-ranker", "rouge2", "--score-ranker", "rougeL"]
            if let limit { arguments += ["--limit", "\(limit)"] }
            let ours = try report(arguments)
            XCTAssertEqual(ours["evaluated"] as? Int, limit ?? 18)
            XCTAssertEqual(ours["without_cmp_results"] as? Int, 2)
            XCTAssertEqual((ours["models"] as? [String])?.count, 12)
            let rows = rankers(ours)
            XCTAssertEqual(rows.map { $0["ranker"] as? String }, ["consensus-chrf", "scores.bleu", "scores.rouge2", "scores.rougeL"])
            for row in rows.dropFirst() {
                let theirs = try XCTUnwrap(expected.first {
                    ($0["limit"] as? Int) == limit && (($0["report"] as? [String: Any])?["ranker"] as? String) == row["ranker"] as? String
                }?["report"] as? [String: Any])
                for key in ["pearson", "spearman", "spearman_footrule", "set_based", "gpt_rank", "top1", "top3"] {
                    let a = try XCTUnwrap(row[key] as? Double, key), b = try XCTUnwrap(theirs[key] as? Double, key)
                    XCTAssertEqual(a, b, accuracy: 1e-9, "\(row["ranker"]!) \(key) limit \(String(describing: limit))")
                }
                let ourScores = try XCTUnwrap(row["scores"] as? [String: Double]), theirScores = try XCTUnwrap(theirs["scores"] as? [String: Double])
                XCTAssertEqual(Set(ourScores.keys), Set(theirScores.keys))
                for (k, v) in theirScores { XCTAssertEqual(ourScores[k]!, v, accuracy: 1e-9, k) }
            }
        }
    }

    func testAResumedRunSkipsFinishedRecordsAndReportsWhatAFreshRunReports() throws {
        let fresh = try report([])
        let progress = scratch.appendingPathComponent("progress.jsonl")
        _ = try report(["--limit", "5", "--resume", progress.path])
        XCTAssertEqual(try progressLines(progress).count, 5)
        let resumed = try report(["--resume", progress.path])
        XCTAssertEqual(try progressLines(progress).count, 18, "only the 13 missing records were ranked and appended")
        XCTAssertEqual(NSDictionary(dictionary: rankers(resumed)[0]), NSDictionary(dictionary: rankers(fresh)[0]))

        // A crash in the middle of an append leaves a torn line: it is cut and its record ranked again.
        var lines = try progressLines(progress)
        let torn = String(lines.removeLast().prefix(40))
        try (lines.joined(separator: "\n") + "\n" + torn).write(to: progress, atomically: true, encoding: .utf8)
        let afterTear = try report(["--resume", progress.path])
        XCTAssertEqual(try progressLines(progress).count, 18)
        XCTAssertEqual(NSDictionary(dictionary: rankers(afterTear)[0]), NSDictionary(dictionary: rankers(fresh)[0]))

        // Ranks made in another rank mode are not reused.
        _ = try report(["--resume", progress.path, "--mode", "bubble", "--limit", "4"])
        XCTAssertEqual(try progressLines(progress).count, 22)
    }

    func testAKilledRunResumesToTheSameReport() throws {
        // One record per ranking call in both runs: a record's packed batch, and so its last bits, stay the same.
        let model = "Tests/Fixtures/oasst-rm-tiny"
        let expected = try report(["--model", model, "--batch", "1"])
        let progress = scratch.appendingPathComponent("killed.jsonl")
        let process = try blendd(["eval", Self.sample, "--model", model, "--batch", "1", "--resume", progress.path])
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        var seen = 0
        let deadline = Date().addingTimeInterval(60)
        while seen < 2 && process.isRunning && Date() < deadline {
            usleep(2_000)
            seen = (try? progressLines(progress).count) ?? 0
        }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        let atKill = try progressLines(progress).count
        XCTAssertEqual(process.terminationReason, .uncaughtSignal, "killed before it finished (\(atKill) of 18 ranked)")
        XCTAssertLessThan(atKill, 18)
        let resumed = try report(["--model", model, "--batch", "1", "--resume", progress.path])
        XCTAssertEqual(try progressLines(progress).count, 18)
        XCTAssertEqual(NSDictionary(dictionary: rankers(resumed)[0]), NSDictionary(dictionary: rankers(expected)[0]))
    }

    func testAChangedRecordIsNotMixedWithItsOldRanks() throws {
        let progress = scratch.appendingPathComponent("p.jsonl")
        _ = try report(["--limit", "3", "--resume", progress.path])
        let original = try String(contentsOf: CommandLineTests.repositoryRoot.appendingPathComponent(Self.sample), encoding: .utf8)
        let edited = scratch.appendingPathComponent("edited.jsonl")
        try original.replacingOccurrences(of: "Canberra is the capital of Australia.", with: "Canberra, of course.")
            .write(to: edited, atomically: true, encoding: .utf8)
        let r = try run(["eval", edited.path, "--resume", progress.path])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.hasPrefix("error: progress file \(progress.path): record dolly_15k/open_qa/212 differs from the one consensus-chrf ranked"), r.stderr)
    }

    func testTheTableAndTheOutputFileWithItsDefaultProgressFile() throws {
        let output = scratch.appendingPathComponent("report.txt")
        let r = try run(["eval", Self.sample, "--score-ranker", "bleu", "--output", output.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = r.stdout.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.first, "18 records of \(Self.sample) with ChatGPT comparisons, 12 candidates each (2 without comparisons left out)")
        XCTAssertEqual(lines[1].split(separator: " ").map(String.init),
                       ["ranker", "pearson", "spearman", "footrule", "set-based", "GPT-Rank", "top-1", "top-3", "bleu", "rouge1", "rouge2", "rougeL", "rougeLsum"])
        XCTAssertTrue(lines[3].hasPrefix("scores.bleu"), lines[3])
        XCTAssertEqual(lines[3].split(separator: " ").prefix(8).map(String.init),
                       ["scores.bleu", "0.3415", "0.2712", "27.611", "0.6362", "2.889", "27.8%", "66.7%"])
        XCTAssertEqual(try String(contentsOf: output, encoding: .utf8), r.stdout)
        XCTAssertEqual(try progressLines(URL(fileURLWithPath: output.path + ".progress.jsonl")).count, 18)
    }

    func testUnusableInputFailsWithTheRecordAndTheReason() throws {
        let bad = scratch.appendingPathComponent("bad.jsonl")
        try #"{"id": "a", "candidates": [{"model": "m", "text": "t"}], "cmp_results": 3}"#.write(to: bad, atomically: true, encoding: .utf8)
        var r = try run(["eval", bad.path])
        XCTAssertEqual(r.status, 1)
        XCTAssertEqual(r.stderr, "error: \(bad.path):1: not a MixInstruct record: cmp_results: cmp_results must be an object of verdict strings, a string holding one, or null\n")
        r = try run(["eval", Self.sample, "--score-ranker", "bertscore"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains(#"--score-ranker bertscore: record unified_chip2/69962: candidate oasst-sft-4-pythia-12b-epoch-3.5 has no score "bertscore""#), r.stderr)
        r = try run(["eval", Self.sample, "--limit", "0"])
        XCTAssertEqual(r.status, 2)
    }

    func testARewardModelDirectoryRanksInRankAndEval() throws {
        let model = "Tests/Fixtures/oasst-rm-tiny"
        let jobs = scratch.appendingPathComponent("jobs.jsonl")
        let sampleJobs = try String(contentsOf: CommandLineTests.repositoryRoot.appendingPathComponent("samples/jobs.jsonl"), encoding: .utf8)
        try String(sampleJobs.split(separator: "\n")[0]).write(to: jobs, atomically: true, encoding: .utf8)
        let ranked = try run(["rank", jobs.path, "--model", model, "--json"])
        XCTAssertEqual(ranked.status, 0, ranked.stderr)
        let first = try XCTUnwrap(ranked.stdout.split(separator: "\n").first)
        let job = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(first.utf8)) as? [String: Any])
        XCTAssertTrue((job["ranker"] as? String)?.hasPrefix("reward-model:oasst-rm-tiny@") == true, "\(job)")
        XCTAssertNil(job["matrix"])
        let evaluated = try report(["--model", model, "--limit", "4"])
        XCTAssertEqual(rankers(evaluated).first?["ranker"] as? String, job["ranker"] as? String)
        XCTAssertEqual(rankers(evaluated).first?["examples"] as? Int, 4)
    }
}
