import BlendCore
import Foundation
import XCTest
@testable import Inference

/// The pointwise reward model against transformers' `DebertaV2ForSequenceClassification` on the fixture of
/// scripts/fixtures/reward_model.py (OpenAssistant/reward-model-deberta-v3-large-v2's layout, random weights).
/// Tolerance: 1e-4 absolute on the logit in fp32; rank order exact.
final class RewardModelParityTests: XCTestCase {
    struct Pair: Decodable {
        var group: Int
        var question: String
        var answer: String
        var input_ids: [Int]
        var untruncated_length: Int
        var score: Double
    }

    struct Group: Decodable {
        struct Blender: Decodable {
            var scores: [Double]
            var same_ids: [Bool]
        }
        var members: [Int]
        var ranks: [Int]
        var llm_blender: Blender
    }

    struct Reference: Decodable {
        var max_length: Int
        var pairs: [Pair]
        var groups: [Group]
    }

    static let tolerance: Float = 1e-4
    static let directory = ReferenceFixtures.path("oasst-rm-tiny")
    static let model: RewardModel = try! RewardModel(directory: directory)
    static let reference: Reference = {
        let data = FileManager.default.contents(atPath: ReferenceFixtures.path("oasst-rm-tiny/reference.json"))!
        return try! JSONDecoder().decode(Reference.self, from: data)
    }()

    func testTheHubLayoutLoadsWithItsPoolerAndMaxLength() throws {
        XCTAssertTrue(RewardModelHead.declared(in: Self.directory))
        XCTAssertFalse(RewardModelHead.declared(in: ReferenceFixtures.path("pairrm-tiny")))
        let model = Self.model
        XCTAssertEqual(model.network.head, RewardModelHead(poolerHiddenSize: 32, activation: .gelu, maxLength: 512))
        XCTAssertEqual(model.configuration.vocabularySize, 512, "the embedding's rows, beyond the tokenizer's 501 ids")
        XCTAssertEqual(model.configuration.layers, 2)
        XCTAssertTrue(model.label.hasPrefix("reward-model:oasst-rm-tiny@"), model.label)
    }

    func testPairIdsEqualTheFastTokenizersTextPairWithLongestFirstTruncation() throws {
        let reference = Self.reference
        XCTAssertGreaterThanOrEqual(reference.pairs.count, 40)
        for (i, pair) in reference.pairs.enumerated() {
            let encoded = try Self.model.encoder.encode(question: pair.question, answer: pair.answer)
            XCTAssertEqual(encoded.ids, pair.input_ids, "pair \(i): \(pair.question.prefix(30)) / \(pair.answer.prefix(30))")
            XCTAssertEqual(encoded.truncated, pair.untruncated_length > reference.max_length, "pair \(i)")
        }
        // The cases the fixture covers: empty texts, cuts of the question, of the answer, and of both.
        XCTAssertTrue(reference.pairs.contains { $0.question.isEmpty && $0.answer.isEmpty })
        XCTAssertTrue(reference.pairs.contains { $0.untruncated_length > 2 * reference.max_length })
        XCTAssertEqual(reference.pairs.map(\.input_ids.count).max(), reference.max_length)
    }

    func testScoresMatchTransformersInOnePackedBatchAndAlone() throws {
        let sequences = Self.reference.pairs.map(\.input_ids)
        let together = Self.model.scores(sequences)
        for (i, pair) in Self.reference.pairs.enumerated() {
            XCTAssertEqual(together[i], Float(pair.score), accuracy: Self.tolerance, "pair \(i) (\(sequences[i].count) ids)")
        }
        // Packing is exact: a sequence alone gives the same score as among 44 others.
        for i in [0, 24, 26] {
            XCTAssertEqual(Self.model.scores([sequences[i]])[0], together[i], accuracy: 1e-6)
        }
    }

    func testTheRankerRanksEachQuestionsAnswersInTheReferenceOrderWithNForwardPasses() throws {
        let reference = Self.reference
        // A small budget spreads the 44 sequences over several batches and mixes jobs within them.
        let ranker = RewardModelRanker(model: Self.model, planner: TokenBudgetPlanner(maxSequences: 5, maxTokens: 1024))
        let requests = reference.groups.enumerated().map { g, group in
            RankRequest(jobId: "question-\(g)", instruction: reference.pairs[group.members[0]].question,
                        candidates: group.members.map { reference.pairs[$0].answer }, mode: .maxLogits)
        }
        let (results, report) = ranker.rankNow(requests)
        XCTAssertEqual(report.pairs, reference.pairs.count)
        XCTAssertGreaterThan(report.batches, 8)
        for (group, result) in zip(reference.groups, results) {
            let outcome = try result.get()
            XCTAssertEqual(outcome.ranks, group.ranks, "llm_blender's get_ranks_from_scores on transformers' logits")
            XCTAssertEqual(outcome.forwardPasses, group.members.count)
            XCTAssertNil(outcome.comparisons)
            for (score, member) in zip(outcome.scores, group.members) {
                XCTAssertEqual(score, Float(reference.pairs[member].score), accuracy: Self.tolerance)
            }
        }
        // Instruction and input are joined without a separator, as LLM-Blender builds the source.
        let q = reference.pairs[5].question
        let split = RankRequest(jobId: "split", instruction: String(q.prefix(8)), input: String(q.dropFirst(8)),
                                candidates: [reference.pairs[5].answer])
        XCTAssertEqual(try ranker.rankNow([split]).results[0].get().scores[0], Float(reference.pairs[5].score),
                       accuracy: Self.tolerance)
    }

    func testScoresEqualLLMBlendersOwnRewardModelRankingWhereItsTokenizationAgrees() throws {
        // Blender.rank re-encodes decoded text, which drops [UNK] pieces; where its ids are the model card's, the
        // scores must be ours.
        let ranker = RewardModelRanker(model: Self.model)
        var compared = 0
        for (g, group) in Self.reference.groups.enumerated() {
            let pairs = group.members.map { Self.reference.pairs[$0] }
            let outcome = try ranker.rankNow([RankRequest(jobId: "g\(g)", instruction: pairs[0].question, candidates: pairs.map(\.answer))])
                .results[0].get()
            for (k, same) in group.llm_blender.same_ids.enumerated() where same {
                XCTAssertEqual(outcome.scores[k], Float(group.llm_blender.scores[k]), accuracy: Self.tolerance, "group \(g) answer \(k)")
                compared += 1
            }
            if group.llm_blender.same_ids.allSatisfy({ $0 }) {
                XCTAssertEqual(outcome.ranks, RankAggregation.competitionRanks(group.llm_blender.scores.map(Float.init)), "group \(g)")
            }
        }
        XCTAssertGreaterThanOrEqual(compared, 4)
    }

    func testEveryModeRanksByScoreAndAJobDoesNotDependOnItsBatchMates() async throws {
        let reference = Self.reference
        let ranker = RewardModelRanker(model: Self.model)
        let group = reference.groups[1]
        let candidates = group.members.map { reference.pairs[$0].answer }
        let question = reference.pairs[group.members[0]].question
        var outcomes: [RankOutcome] = []
        for mode in RankMode.allCases {
            outcomes.append(try await ranker.rank([RankRequest(jobId: mode.rawValue, instruction: question, candidates: candidates,
                                                               mode: mode, seed: 3)])[0].get())
        }
        for outcome in outcomes {
            XCTAssertEqual(outcome.ranks, group.ranks)
            XCTAssertEqual(outcome.scores, outcomes[0].scores)
        }
        let longGroup = reference.groups[6]
        let mates = RankRequest(jobId: "mates", instruction: reference.pairs[longGroup.members[0]].question,
                                candidates: longGroup.members.map { reference.pairs[$0].answer })
        let together = await ranker.rank([mates, RankRequest(jobId: "again", instruction: question, candidates: candidates)])
        // Other packing changes the GEMMs' row blocking, hence the last bits (PairRM's tests allow the same).
        let again = try together[1].get()
        for (a, b) in zip(again.scores, outcomes[0].scores) { XCTAssertEqual(a, b, accuracy: 1e-6) }
        XCTAssertEqual(again.ranks, group.ranks)
        XCTAssertNotNil(ranker.lastPaddingAvoided)
    }

    func testIdenticalCandidatesShareOnePassAndTieAndAnEmptyJobFailsAlone() throws {
        let ranker = RewardModelRanker(model: Self.model)
        let answer = Self.reference.pairs[1].answer
        let (results, report) = ranker.rankNow([
            RankRequest(jobId: "ties", instruction: "Explain nuclear fusion like I am five", candidates: ["I don't know.", answer, answer]),
            RankRequest(jobId: "empty", instruction: "q", candidates: []),
        ])
        XCTAssertEqual(report.pairs, 2)
        let ties = try results[0].get()
        XCTAssertEqual(ties.forwardPasses, 2)
        XCTAssertEqual(ties.scores[1], ties.scores[2])
        XCTAssertEqual(ties.scores[1], Float(Self.reference.pairs[1].score), accuracy: Self.tolerance)
        XCTAssertEqual(ties.ranks, RankAggregation.competitionRanks(ties.scores))
        XCTAssertEqual(ties.ranks[1], ties.ranks[2])
        XCTAssertEqual(ties.ranks.sorted(), ties.ranks[0] == 1 ? [1, 2, 2] : [1, 1, 3])
        guard case .failure(let error) = results[1] else { return XCTFail("a job without candidates must fail") }
        XCTAssertEqual(error.jobId, "empty")
    }

    func testLongestFirstSplitsTheBudgetAsHuggingFaceTokenizersDoes() {
        // (first, second, budget) → kept, checked against the rule's three cases.
        XCTAssertTrue(RewardPairEncoder.longestFirst(10, 20, budget: 40) == (10, 20), "fits: nothing is cut")
        XCTAssertTrue(RewardPairEncoder.longestFirst(10, 600, budget: 509) == (10, 499), "only the longer is cut")
        XCTAssertTrue(RewardPairEncoder.longestFirst(600, 10, budget: 509) == (499, 10))
        XCTAssertTrue(RewardPairEncoder.longestFirst(300, 600, budget: 509) == (254, 255), "both are cut, the odd id to the longer")
        XCTAssertTrue(RewardPairEncoder.longestFirst(600, 300, budget: 509) == (255, 254))
        XCTAssertTrue(RewardPairEncoder.longestFirst(400, 400, budget: 509) == (254, 255), "a tie gives the odd id to the second")
        XCTAssertTrue(RewardPairEncoder.longestFirst(700, 600, budget: 509) == (255, 254))
        XCTAssertTrue(RewardPairEncoder.longestFirst(5, 5, budget: 0) == (0, 0))
        // Every split of every total up to 30 over budgets up to 12 keeps exactly min(total, budget) ids.
        for budget in 0...12 {
            for first in 0...15 {
                for second in 0...15 {
                    let (a, b) = RewardPairEncoder.longestFirst(first, second, budget: budget)
                    XCTAssertEqual(min(a, first) + min(b, second), min(first + second, budget), "\(first) \(second) \(budget)")
                }
            }
        }
    }

    func testAConfigThatIsNotAOneLabelRewardModelIsRefusedWithItsReason() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("oasst-rm-broken-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for f in ["spm.model", "tokenizer.json", "tokenizer_config.json", "added_tokens.json", "special_tokens_map.json", "model.safetensors"] {
            try FileManager.default.copyItem(atPath: Self.directory + "/" + f, toPath: dir + "/" + f)
        }
        let original = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Self.directory + "/config.json"))) as! [String: Any]
        func attempt(_ change: (inout [String: Any]) -> Void) throws -> String {
            var config = original
            change(&config)
            try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: dir + "/config.json"))
            do { _ = try RewardModel(directory: dir) } catch { return "\(error)" }
            return "loaded"
        }
        XCTAssertEqual(try attempt { _ in }, "loaded")
        XCTAssertTrue(try attempt { $0["id2label"] = ["0": "NEG", "1": "POS"] }.contains("num_labels is 2"))
        XCTAssertTrue(try attempt { $0["pooler_hidden_act"] = "swish" }.contains("pooler_hidden_act swish is not supported"))
        XCTAssertTrue(try attempt { $0["type_vocab_size"] = 2 }.contains("token type embeddings are not supported"))
        let wider = try attempt { $0["pooler_hidden_size"] = 48 }
        XCTAssertTrue(wider.contains("pooler_hidden_size 48 differs from hidden_size 32"), wider)
        let shapes = try attempt { $0["intermediate_size"] = 48 }
        XCTAssertTrue(shapes.contains("deberta.encoder.layer.0.intermediate.dense.weight has shape [64, 32], expected [48, 32]"), shapes)
    }
}
