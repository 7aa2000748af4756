import BlendCore
import Foundation
import XCTest

/// The evaluation measures against values computed by LLM-Blender's own gpt_eval/cor_eval.py and
/// gpt_eval/utils.py (scripts/fixtures/eval_metrics.py ran them; see Tests/Fixtures/eval/README.md).
final class EvaluationMetricsTests: XCTestCase {
    struct CorrelationCase: Decodable {
        var name: String
        var hypo: [[Int]]
        var ref: [[Int]]
        var pearson: Double?
        var spearman: Double?
        var spearman_footrule: Double?
        var set_based: Double?
    }

    struct OracleCase: Decodable {
        var models: [String]
        var cmp_results: [String: String]
        var matrix: [[Double]]
        var ranks: [Int]
    }

    struct SampleOracle: Decodable {
        var id: String
        var ranks: [Int]
        var matrix: [[Double]]
    }

    struct Report: Decodable {
        var ranker: String
        var examples: Int
        var pearson: Double?
        var spearman: Double?
        var spearman_footrule: Double?
        var set_based: Double?
        var gpt_rank: Double
        var top1: Double
        var top3: Double
        var scores: [String: Double]
    }

    struct SampleReport: Decodable {
        var limit: Int?
        var report: Report
        var hypo_ranks: [[Int]]
    }

    struct Reference: Decodable {
        var correlation_cases: [CorrelationCase]
        var oracle_cases: [OracleCase]
        var sample_oracle: [SampleOracle]
        var sample_reports: [SampleReport]
    }

    static let reference: Reference = {
        let url = RepositoryPaths.root.appendingPathComponent("Tests/Fixtures/eval/reference.json")
        return try! JSONDecoder().decode(Reference.self, from: Data(contentsOf: url))
    }()

    static func sampleRecords() throws -> [MixInstructRecord] {
        let data = try Data(contentsOf: RepositoryPaths.root.appendingPathComponent("samples/mixinstruct-sample.jsonl"))
        return try JobFileReader.records(in: data).map { try JSONDecoder().decode(MixInstructRecord.self, from: Data($0.bytes)) }
    }

    /// NaN in Swift where the reference produced NaN (stored as null), otherwise within 1e-12.
    func assertSame(_ ours: Double, _ theirs: Double?, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        guard let theirs else { return XCTAssertTrue(ours.isNaN, "\(what): \(ours), reference NaN", file: file, line: line) }
        XCTAssertEqual(ours, theirs, accuracy: 1e-12, what, file: file, line: line)
    }

    func testCorrelationsEqualCorEvalOnTiesConstantColumnsAndTinyShapes() {
        let cases = Self.reference.correlation_cases
        XCTAssertGreaterThanOrEqual(cases.count, 10)
        XCTAssertTrue(cases.contains { $0.pearson == nil }, "the fixture covers a NaN coefficient")
        for c in cases {
            assertSame(RankCorrelation.pearson(c.hypo, c.ref), c.pearson, "\(c.name) pearson")
            assertSame(RankCorrelation.spearman(c.hypo, c.ref), c.spearman, "\(c.name) spearman")
            assertSame(RankCorrelation.spearmanFootrule(c.hypo, c.ref), c.spearman_footrule, "\(c.name) footrule")
            assertSame(RankCorrelation.setBased(c.hypo, c.ref), c.set_based, "\(c.name) set_based")
        }
    }

    func testOracleRanksEqualGetRanksFromChatGPTCmps() throws {
        for (k, c) in Self.reference.oracle_cases.enumerated() {
            let record = MixInstructRecord(id: "case-\(k)", instruction: "", input: "", output: "",
                                           candidates: c.models.map { .init(model: $0, text: $0) }, comparisons: c.cmp_results)
            XCTAssertEqual(try OracleRanking.matrix(record), c.matrix, "case \(k)")
            XCTAssertEqual(try OracleRanking.ranks(record), c.ranks, "case \(k)")
        }
        let set = try EvaluationSet(try Self.sampleRecords())
        XCTAssertEqual(set.records.map(\.id), Self.reference.sample_oracle.map(\.id))
        XCTAssertEqual(set.oracleRanks, Self.reference.sample_oracle.map(\.ranks))
        for (record, expected) in zip(set.records, Self.reference.sample_oracle) {
            XCTAssertEqual(try OracleRanking.matrix(record), expected.matrix, record.id)
        }
    }

    func testReportsOfAutoMetricRankersEqualTheReferenceOnTheSampleAndUnderALimit() throws {
        let records = try Self.sampleRecords()
        XCTAssertEqual(records.count, 20)
        for expected in Self.reference.sample_reports {
            let set = try EvaluationSet(records, limit: expected.limit)
            let metric = String(expected.report.ranker.dropFirst("scores.".count))
            let ranks = try set.ranks(byScore: metric)
            XCTAssertEqual(ranks, expected.hypo_ranks, "get_ranks_from_scores on \(metric)")
            let ours = set.evaluate(ranker: expected.report.ranker, ranks: ranks)
            let theirs = expected.report
            let what = "\(theirs.ranker) limit \(expected.limit.map(String.init) ?? "none")"
            XCTAssertEqual(ours.examples, theirs.examples, what)
            assertSame(ours.pearson, theirs.pearson, "\(what) pearson")
            assertSame(ours.spearman, theirs.spearman, "\(what) spearman")
            assertSame(ours.spearmanFootrule, theirs.spearman_footrule, "\(what) footrule")
            assertSame(ours.setBased, theirs.set_based, "\(what) set_based")
            assertSame(ours.gptRank, theirs.gpt_rank, "\(what) GPT-Rank")
            assertSame(ours.top1, theirs.top1, "\(what) top-1")
            assertSame(ours.top3, theirs.top3, "\(what) top-3")
            XCTAssertEqual(Set(ours.scores.keys), Set(theirs.scores.keys), what)
            for (name, value) in theirs.scores { assertSame(ours.scores[name] ?? .nan, value, "\(what) \(name)") }
        }
    }

    func testAPerfectRankerScoresOneAndItsChoiceIsAlwaysTheOraclesBest() throws {
        let set = try EvaluationSet(try Self.sampleRecords())
        let perfect = set.evaluate(ranker: "oracle", ranks: set.oracleRanks)
        XCTAssertEqual(perfect.pearson, 1, accuracy: 1e-12)
        XCTAssertEqual(perfect.spearman, 1, accuracy: 1e-12)
        XCTAssertEqual(perfect.spearmanFootrule, 0)
        XCTAssertEqual(perfect.setBased, 1)
        XCTAssertEqual(perfect.gptRank, 1)
        XCTAssertEqual(perfect.top1, 1)
        XCTAssertEqual(perfect.top3, 1)
        // Reversing every ranking flips both correlations exactly.
        let reversed = set.oracleRanks.map { row in row.map { 13 - $0 } }
        let worst = set.evaluate(ranker: "reversed", ranks: reversed)
        XCTAssertEqual(worst.pearson, -1, accuracy: 1e-12)
        XCTAssertEqual(worst.top1, 0)
    }

    func testSpearmanIsPearsonOfAverageRanksOnRandomMatrices() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<50 {
            let n = Int.random(in: 2...12, using: &rng), c = Int.random(in: 2...6, using: &rng)
            let h = (0..<n).map { _ in (0..<c).map { _ in Int.random(in: 1...c, using: &rng) } }
            let r = (0..<n).map { _ in (0..<c).map { _ in Int.random(in: 1...c, using: &rng) } }
            let direct = RankCorrelation.spearman(h, r)
            // Spearman is invariant under any strictly increasing transform of either input.
            let squashed = RankCorrelation.spearman(h.map { $0.map { $0 * $0 * 3 + 1 } }, r)
            XCTAssertTrue(direct.isNaN ? squashed.isNaN : abs(direct - squashed) < 1e-12, "\(h) \(r)")
            let footrule = RankCorrelation.spearmanFootrule(h, r)
            var total = 0
            for (a, b) in zip(h, r) { for (x, y) in zip(a, b) { total += abs(x - y) } }
            XCTAssertEqual(footrule, Double(total) / Double(n), accuracy: 1e-12)
            let set = RankCorrelation.setBased(h, r)
            XCTAssertTrue(set > 0 && set <= 1, "\(set)")
        }
    }
}
