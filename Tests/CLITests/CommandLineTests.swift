import Foundation
import XCTest

/// Runs the built `blendd` binary as a user would and checks output and exit status.
final class CommandLineTests: XCTestCase {
    struct Outcome {
        let status: Int32
        let stdout: String
        let stderr: String
    }

    static var blenddURL: URL {
        // The test bundle sits next to the executables in the build products directory.
        var dir = Bundle(for: CommandLineTests.self).bundleURL
        while dir.pathExtension == "xctest" || dir.lastPathComponent == "Contents" || dir.lastPathComponent == "MacOS" {
            dir.deleteLastPathComponent()
        }
        return dir.appendingPathComponent("blendd")
    }

    static var repositoryRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    func run(_ arguments: [String], stdin: Data? = nil) throws -> Outcome { try Self.runBlendd(arguments, stdin: stdin) }

    /// Runs `blendd` with `arguments` in the repository root, `stdin` written to its standard input.
    static func runBlendd(_ arguments: [String], stdin: Data? = nil) throws -> Outcome {
        let process = Process()
        process.executableURL = Self.blenddURL
        process.arguments = arguments
        process.currentDirectoryURL = Self.repositoryRoot
        let out = Pipe(), err = Pipe(), input = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = input
        try process.run()
        if let stdin { input.fileHandleForWriting.write(stdin) }
        try input.fileHandleForWriting.close()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Outcome(status: process.terminationStatus,
                       stdout: String(decoding: stdout, as: UTF8.self),
                       stderr: String(decoding: stderr, as: UTF8.self))
    }

    func testHelpListsCommandsAndExitsZero() throws {
        let r = try run(["--help"])
        XCTAssertEqual(r.status, 0)
        XCTAssertTrue(r.stdout.contains("USAGE: blendd <subcommand>"), r.stdout)
        XCTAssertTrue(r.stdout.contains("validate"), r.stdout)
    }

    func testUsageErrorExitsTwo() throws {
        let r = try run(["validate", "jobs.json", "--no-such-flag"])
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains("--no-such-flag"), r.stderr)
    }

    func testMissingFileIsAOneLineFailure() throws {
        let r = try run(["validate", "/nonexistent/jobs.jsonl"])
        XCTAssertEqual(r.status, 1)
        XCTAssertEqual(r.stderr, "error: cannot read /nonexistent/jobs.jsonl: no such file\n")
    }

    func testValidateAcceptsEveryValidExample() throws {
        let dir = Self.repositoryRoot.appendingPathComponent("schemas/examples/valid")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".json") }.sorted()
        XCTAssertFalse(files.isEmpty)
        let r = try run(["validate", "--quiet"] + files.map { "schemas/examples/valid/\($0)" })
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertEqual(r.stdout, "\(files.count) job(s): \(files.count) valid, 0 invalid\n")
    }

    func testValidateReportsEveryViolationOfEachJobInJSONLines() throws {
        let jsonl = """
        {"job_id":"ok-1","instruction":"Say hi","candidates":[{"model":"a","text":"hi"},{"model":"b","text":"hello"}]}
        {"job_id":"bad id!","instruction":"Say hi","candidates":[{"model":"a","text":""}],"rank":{"mode":"median"}}
        not json at all
        """
        let r = try run(["validate", "--json", "-"], stdin: Data(jsonl.utf8))
        XCTAssertEqual(r.status, 1)
        let lines = r.stdout.split(separator: "\n").map { try! JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        XCTAssertEqual(lines.count, 3)
        XCTAssertEqual(lines[0]["valid"] as? Bool, true)
        XCTAssertEqual(lines[0]["location"] as? String, "<stdin>:1")
        let codes = (lines[1]["violations"] as! [[String: Any]]).compactMap { $0["code"] as? String }
        XCTAssertEqual(Set(codes), ["invalid_job_id", "too_few_candidates", "empty_text", "unknown_rank_mode"])
        XCTAssertEqual(((lines[2]["violations"] as! [[String: Any]]).first?["code"]) as? String, "not_json")
        XCTAssertEqual(lines[2]["location"] as? String, "<stdin>:3")
    }

    func testRankPrintsRanksScoresAndTheMatrixWithTheConsensusRanker() throws {
        let jobs = """
        {"job_id":"r1","instruction":"Capital of France?","candidates":[{"model":"a","text":"Paris is the capital of France."},{"model":"b","text":"Bananas are yellow."},{"model":"c","text":"The capital of France is Paris."}]}
        """
        let r = try run(["rank", "--json", "--matrix", "-"], stdin: Data(jobs.utf8))
        XCTAssertEqual(r.status, 0, r.stderr)
        let object = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
        XCTAssertEqual(object["ranker"] as? String, "consensus-chrf")
        XCTAssertEqual((object["ranks"] as? [Int])?[1], 3, "the off-topic answer ranks last")
        XCTAssertEqual((object["matrix"] as? [[Double]])?.count, 3)

        let table = try run(["rank", "--mode", "bubble", "-"], stdin: Data(jobs.utf8))
        XCTAssertEqual(table.status, 0, table.stderr)
        XCTAssertTrue(table.stdout.hasPrefix("r1  mode bubble  ranker consensus-chrf\n"), table.stdout)

        let bad = try run(["rank", "--mode", "median", "-"], stdin: Data(jobs.utf8))
        XCTAssertEqual(bad.status, 2)
    }

    func testRankWithAPairRMCheckpointPrintsTheReferenceMatrix() throws {
        let fixtures = Self.repositoryRoot.appendingPathComponent("Tests/Fixtures")
        let reference = try JSONSerialization.jsonObject(with: Data(contentsOf: fixtures.appendingPathComponent("reference/reference.json"))) as! [String: Any]
        let job = (reference["pairrm_jobs"] as! [[String: Any]])[1]
        let candidates = (job["candidates"] as! [String]).enumerated().map { ["model": "m\($0)", "text": $1] }
        let line = try JSONSerialization.data(withJSONObject: ["job_id": "p1", "instruction": job["source"]!, "candidates": candidates])
        let r = try run(["rank", "--model", fixtures.appendingPathComponent("pairrm-tiny").path, "--json", "--matrix", "-"], stdin: line)
        XCTAssertEqual(r.status, 0, r.stderr)
        let object = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
        XCTAssertTrue((object["ranker"] as? String)?.hasPrefix("pairrm:pairrm-tiny@") == true, r.stdout)
        let matrix = try XCTUnwrap(object["matrix"] as? [[Double]])
        for (ours, theirs) in zip(matrix.joined(), (job["matrix"] as! [[Double]]).joined()) {
            XCTAssertEqual(ours, theirs, accuracy: 1e-4)
        }

        let missing = try run(["rank", "--model", "/nonexistent/pairrm", "-"], stdin: line)
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.contains("/nonexistent/pairrm"), missing.stderr)
    }

    func testFuseWithAGenFuserCheckpointAndStreaming() throws {
        let fixtures = Self.repositoryRoot.appendingPathComponent("Tests/Fixtures")
        let model = fixtures.appendingPathComponent("t5-tiny").path
        let job = #"{"job_id":"f1","instruction":"Answer kindly.","input":"I love you!","candidates":[{"model":"a","text":"I love you too!"},{"model":"b","text":"I hate you!"}],"fuse":{"max_new_tokens":12}}"#
        let greedy = try run(["fuse", "--model", model, "--beams", "1", "--json", "-"], stdin: Data(job.utf8))
        XCTAssertEqual(greedy.status, 0, greedy.stderr)
        let object = try JSONSerialization.jsonObject(with: Data(greedy.stdout.utf8)) as! [String: Any]
        XCTAssertTrue((object["fuser"] as? String)?.hasPrefix("genfuser:t5-tiny@") == true, greedy.stdout)
        XCTAssertLessThanOrEqual(object["generated_tokens"] as? Int ?? 99, 12)
        let text = try XCTUnwrap(object["text"] as? String)
        XCTAssertFalse(text.isEmpty)

        let streamed = try run(["fuse", "--model", model, "--stream", "-"], stdin: Data(job.utf8))
        XCTAssertEqual(streamed.status, 0, streamed.stderr)
        XCTAssertEqual(streamed.stdout, "f1: \(text)\n", "streaming prints the greedy text as it grows")

        let beams = try run(["fuse", "--model", model, "-"], stdin: Data(job.utf8))
        XCTAssertEqual(beams.status, 0, beams.stderr)
        XCTAssertTrue(beams.stdout.hasPrefix("f1  fuser genfuser:t5-tiny@"), beams.stdout)

        let none = try run(["fuse", "-"], stdin: Data(job.utf8))
        XCTAssertEqual(none.status, 1)
        XCTAssertTrue(none.stderr.contains("--model"), none.stderr)
    }
}
