import BlendCore
import Foundation
import XCTest

/// Reading MixInstruct records, choosing the evaluable ones, and the progress file of `blendd eval`.
final class EvaluationInputTests: XCTestCase {
    func decode(_ json: String) throws -> MixInstructRecord {
        try JSONDecoder().decode(MixInstructRecord.self, from: Data(json.utf8))
    }

    func record(_ cmp: String) -> String {
        """
        {"id": "r1", "instruction": "Say hi", "input": "", "output": "hi",
         "candidates": [{"model": "a", "text": "hi", "scores": {"bleu": 12.5, "bertscore": null}},
                        {"model": "b", "text": "hello", "scores": {"bleu": 3}}]\(cmp)}
        """
    }

    func testCmpResultsAreReadInEveryLayoutTheDatasetUses() throws {
        let verdict = ["a,b": "A is better"]
        XCTAssertEqual(try decode(record(#", "cmp_results": {"a,b": "A is better"}"#)).comparisons, verdict, "object (raw files)")
        XCTAssertEqual(try decode(record(#", "cmp_results": "{\"a,b\": \"A is better\"}""#)).comparisons, verdict, "JSON string (HF dataset)")
        XCTAssertEqual(try decode(record(#", "cmp_results": "null""#)).comparisons, [:], "the string null")
        XCTAssertEqual(try decode(record(#", "cmp_results": null"#)).comparisons, [:])
        XCTAssertEqual(try decode(record("")).comparisons, [:], "absent")
        let r = try decode(record(""))
        XCTAssertEqual(r.candidates[0].scores, ["bleu": 12.5], "a null metric is left out")
        XCTAssertEqual(r.candidates[1].scores, ["bleu": 3])
        for bad in [#", "cmp_results": "not json""#, #", "cmp_results": 7"#, #", "cmp_results": {"a,b": 1}"#,
                    #", "cmp_results": "[1, 2]""#] {
            XCTAssertThrowsError(try decode(record(bad)), bad)
        }
        XCTAssertThrowsError(try decode(#"{"id": "x", "candidates": [{"model": "a"}]}"#), "a candidate without text")
    }

    func testTheFingerprintChangesWithWhatARankerSeesOnly() throws {
        let base = try decode(record(""))
        var other = base
        other.output = "a different reference"
        other.comparisons = ["a,b": "Same good"]
        other.candidates[0].scores = [:]
        XCTAssertEqual(base.fingerprint, other.fingerprint)
        let changes: [(inout MixInstructRecord) -> Void] = [
            { $0.candidates[1].text += "!" }, { $0.instruction = "Say hello" }, { $0.input = "x" },
            { $0.candidates[0].model = "c" }, { $0.candidates.swapAt(0, 1) },
        ]
        for change in changes {
            var changed = base
            change(&changed)
            XCTAssertNotEqual(changed.fingerprint, base.fingerprint)
        }
        // Field boundaries count: moving text between instruction and input is a different record.
        var moved = base
        moved.instruction = "Say"
        moved.input = " hi"
        XCTAssertNotEqual(moved.fingerprint, base.fingerprint)
    }

    func testOracleErrorsNameTheRecordTheKeyAndTheValue() {
        func attempt(_ cmp: [String: String]) -> String {
            let r = MixInstructRecord(id: "rec-9", instruction: "", input: "", output: "",
                                      candidates: [.init(model: "a", text: ""), .init(model: "b", text: "")], comparisons: cmp)
            do { _ = try OracleRanking.ranks(r) } catch { return "\(error)" }
            return "ranked"
        }
        XCTAssertEqual(attempt(["a,b": "Same bad"]), "ranked")
        XCTAssertEqual(attempt(["a,b": "A is worse"]),
                       #"record rec-9: cmp_results["a,b"] is "A is worse", not one of "A is better", "B is better", "Same good", "Same bad""#)
        XCTAssertEqual(attempt(["a,z": "A is better"]), #"record rec-9: cmp_results key "a,z" names z, which is not among the candidates"#)
        XCTAssertEqual(attempt(["a,b,c": "A is better"]), #"record rec-9: cmp_results key "a,b,c" is not "modelA,modelB""#)
    }

    func testOnlyRecordsWithComparisonsAreKeptAndTheyMustListTheSameModels() throws {
        func make(_ id: String, _ models: [String], cmp: Bool) -> MixInstructRecord {
            MixInstructRecord(id: id, instruction: "", input: "", output: "", candidates: models.map { .init(model: $0, text: $0) },
                              comparisons: cmp ? ["\(models[0]),\(models[1])": "A is better"] : [:])
        }
        let set = try EvaluationSet([make("1", ["a", "b"], cmp: true), make("2", ["x"], cmp: false), make("3", ["a", "b"], cmp: true),
                                     make("4", ["a", "b"], cmp: true)], limit: 2)
        XCTAssertEqual(set.records.map(\.id), ["1", "3"])
        XCTAssertEqual(set.withoutComparisons, 1)
        XCTAssertEqual(set.oracleRanks, [[1, 2], [1, 2]])
        XCTAssertThrowsError(try EvaluationSet([make("1", ["a", "b"], cmp: true), make("2", ["b", "a"], cmp: true)])) { error in
            XCTAssertTrue("\(error)".hasPrefix("record 2: lists the candidates [\"b\", \"a\"] but record 1 lists [\"a\", \"b\"]"), "\(error)")
        }
        XCTAssertThrowsError(try EvaluationSet([make("1", ["a", "b"], cmp: true), make("1", ["a", "b"], cmp: true)])) { error in
            XCTAssertEqual("\(error)", "record 1: the id occurs twice; results are kept per id")
        }
        XCTAssertThrowsError(try set.ranks(byScore: "bleu")) { error in
            XCTAssertEqual("\(error)", #"record 1: candidate a has no score "bleu""#)
        }
    }

    func entries(_ n: Int) -> [EvaluationCheckpoint.Entry] {
        (0..<n).map { i in
            EvaluationCheckpoint.Entry(ranker: "pairrm:x@1", mode: "max_logits", id: "id/\(i) é", fingerprint: "0000000\(i % 10)",
                                       ranks: [i % 3 + 1, 1, 2], scores: [0.5, i % 2 == 0 ? nil : -1.25, 3])
        }
    }

    func testTheProgressFileSurvivesATearAtEveryByte() throws {
        let all = entries(6)
        var data = Data()
        var ends: [Int] = []
        for e in all {
            data.append(try EvaluationCheckpoint.line(e))
            ends.append(data.count)
        }
        XCTAssertEqual(try EvaluationCheckpoint.parse(data), .init(entries: all, validLength: data.count))
        // Cut anywhere: what is kept is exactly the complete lines before the cut.
        for cut in 0...data.count {
            let parsed = try EvaluationCheckpoint.parse(data.prefix(cut))
            let complete = ends.filter { $0 <= cut }.count
            XCTAssertEqual(parsed.entries, Array(all.prefix(complete)), "cut at \(cut)")
            XCTAssertEqual(parsed.validLength, complete == 0 ? 0 : ends[complete - 1], "cut at \(cut)")
        }
        // A torn last line that happens to end in a newline (garbage, then the next write's newline) is dropped too.
        var torn = data
        torn.append(Data(#"{"ranker":"pairrm:x@1","id":"#.utf8) + Data("\n".utf8))
        XCTAssertEqual(try EvaluationCheckpoint.parse(torn), .init(entries: all, validLength: data.count))
    }

    func testAnUnreadableLineBeforeTheEndIsAnErrorNotASkippedRecord() throws {
        var data = try EvaluationCheckpoint.line(entries(1)[0])
        data.append(Data("this is not json\n".utf8))
        data.append(try EvaluationCheckpoint.line(entries(2)[1]))
        XCTAssertThrowsError(try EvaluationCheckpoint.parse(data)) { error in
            XCTAssertEqual(error as? EvaluationCheckpoint.CorruptLine, .init(line: 2))
            XCTAssertEqual("\(error)", "line 2 is not a checkpoint entry (only a torn last line is tolerated)")
        }
        // Blank lines are harmless.
        var blank = try EvaluationCheckpoint.line(entries(1)[0])
        blank.append(Data("\n\n".utf8))
        XCTAssertEqual(try EvaluationCheckpoint.parse(blank).entries.count, 1)
    }
}
