import BlendCore
import Foundation
import XCTest
@testable import Inference

/// PairRM against the reference outputs of scripts/fixtures/generate.py (the reference's
/// `DebertaV2PairRM` on a tiny random-weight DeBERTa-v3 of the real structure). Tolerance: 1e-4
/// absolute in fp32 on hidden states and logits, as the issue states.
final class PairRMParityTests: XCTestCase {
    static let tolerance: Float = 1e-4
    static let model: PairRMModel = try! PairRMModel(directory: ReferenceFixtures.path("pairrm-tiny"))
    var reference: ReferenceFixtures.Reference { ReferenceFixtures.reference }

    func testBucketsMatchMakeLogBucketPositionForEveryDistanceOfA2048TokenPair() throws {
        let config = Self.model.configuration
        XCTAssertEqual(config.positionBuckets, 256)
        XCTAssertEqual(config.maxRelativePositions, 512)
        let ours = (-2047...2047).map(config.bucket)
        XCTAssertEqual(ours.count, reference.deberta_buckets.count)
        for (r, (a, b)) in zip(-2047...2047, zip(ours, reference.deberta_buckets)) where a != b {
            XCTFail("bucket(\(r)) = \(a), reference \(b)")
        }
    }

    func testMarkerIdsComeFromTheConfigAndAgreeWithTheTokenizer() {
        let c = Self.model.configuration
        XCTAssertEqual(c.sourcePrefixId, reference.deberta_marker_ids["<|source|>"])
        XCTAssertEqual(c.candidate1PrefixId, reference.deberta_marker_ids["<|candidate1|>"])
        XCTAssertEqual(c.candidate2PrefixId, reference.deberta_marker_ids["<|candidate2|>"])
        XCTAssertEqual(c.candidatePrefixId, reference.deberta_marker_ids["<|candidate|>"])
    }

    func testPairInputsEqualTheReferenceOnEveryTruncationBoundary() throws {
        let builder = Self.model.inputBuilder
        for (i, pair) in reference.pairs.enumerated() {
            let job = try builder.encode([(pair.source, [pair.left, pair.right])])[0]
            XCTAssertEqual(builder.pair(job, left: 0, right: 1).ids, pair.input_ids, "pair \(i)")
        }
        // The cases the fixture covers: > 512 tokens, a truncated source, the full 2048.
        let lengths = reference.pairs.map(\.input_ids.count)
        XCTAssertTrue(lengths.contains { $0 > 512 })
        XCTAssertEqual(lengths.max(), 2048)
    }

    func testHiddenStatesAndLogitsMatchTheReferenceInMixedLengthBatches() throws {
        let model = Self.model
        let inputs = try reference.pairs.map { pair -> PairInput in
            let job = try model.inputBuilder.encode([(pair.source, [pair.left, pair.right])])[0]
            return model.inputBuilder.pair(job, left: 0, right: 1)
        }
        // The reference ran [0..<5] and [5..<10] as padded batches; we pack them.
        for group in [Array(0..<5), Array(5..<10)] {
            let (hidden, offsets) = model.encoder.forward(group.map { inputs[$0].ids })
            let logits = model.logits(group.map { inputs[$0] })
            for (row, i) in group.enumerated() {
                let expected = try XCTUnwrap(try ReferenceFixtures.tensors.tensor("pair.\(i).hidden"))
                let n = expected.count
                let start = offsets[row] * model.configuration.hiddenSize
                let worst = zip(hidden.storage[start..<(start + n)], expected.storage).map { abs($0 - $1) }.max() ?? 0
                XCTAssertLessThanOrEqual(worst, Self.tolerance, "pair \(i) (\(inputs[i].ids.count) tokens): hidden states differ by \(worst)")
                XCTAssertEqual(logits[row], Float(reference.pairs[i].logit), accuracy: Self.tolerance, "pair \(i) logit")
            }
        }
        // Packing is exact: a pair alone gives the same logit as in its batch.
        let alone = model.logits([inputs[7]])[0]
        XCTAssertEqual(alone, Float(reference.pairs[7].logit), accuracy: Self.tolerance)
    }

    func testMarkerStringsInUserTextStayText() throws {
        // Pair 4's left candidate is "a <|source|> b": the reference would find two source markers.
        let pair = reference.pairs[4]
        XCTAssertTrue(pair.left.contains("<|source|>"))
        let builder = Self.model.inputBuilder
        let input = builder.pair(try builder.encode([(pair.source, [pair.left, pair.right])])[0], left: 0, right: 1)
        let markers = [Self.model.configuration.sourcePrefixId!, Self.model.configuration.candidate1PrefixId!,
                       Self.model.configuration.candidate2PrefixId!, Self.model.configuration.candidatePrefixId!]
        for marker in markers {
            XCTAssertEqual(input.ids.filter { $0 == marker }.count, marker == markers[3] ? 0 : 1, "marker \(marker)")
        }
        XCTAssertEqual(input.ids[input.sourcePosition], markers[0])
        XCTAssertEqual(input.ids[input.candidate1Position], markers[1])
        XCTAssertEqual(input.ids[input.candidate2Position], markers[2])
        // Literal [SEP] in user text is scrubbed to a space, as the reference does.
        let scrubbed = try builder.encode([("x [SEP] y", ["a[SEP]b", "c"])])[0]
        XCTAssertEqual(scrubbed.source.filter { $0 == 2 }.count, 1)
        XCTAssertEqual(scrubbed.candidates[0], try builder.body("a b"))
    }

    func testPerJobAndBatchBudgetsAgreeWithoutTruncationAndDifferWithIt() throws {
        let builder = Self.model.inputBuilder
        let short = [("hello, how are you!", ["get out!", "hi! I am fine, thanks!"]),
                     (String(repeating: "a long source text ", count: 40), ["bye!", "see you"])]
        let perJob = try builder.encode(short, budget: .perJob)
        let shared = try builder.encode(short, budget: .sharedByBatch)
        XCTAssertFalse(perJob.contains(where: \.truncated))
        for (a, b) in zip(perJob, shared) {
            XCTAssertEqual(builder.pair(a, left: 0, right: 1).ids, builder.pair(b, left: 0, right: 1).ids)
        }
        // With truncation the reference's shared budget lets a batch-mate's long source cut a short job's candidate.
        let longCandidate = String(repeating: "word ", count: 700)
        let mixed = [("short", [longCandidate, "x"]), (String(repeating: "source words ", count: 800), ["y", "z"])]
        let own = try builder.encode(mixed, budget: .perJob)[0]
        let batch = try builder.encode(mixed, budget: .sharedByBatch)[0]
        XCTAssertTrue(own.truncated && batch.truncated)
        XCTAssertGreaterThan(own.candidates[0].count, batch.candidates[0].count)
        XCTAssertEqual(own, try builder.encode([mixed[0]])[0], "a per-job budget does not depend on batch-mates")
    }

    func testRankerLayoutAndPytorchBinLoadTheSameModel() throws {
        let ranker = try PairRMModel(directory: ReferenceFixtures.path("pairrm-tiny-ranker-layout"))
        XCTAssertEqual(ranker.configuration, Self.model.configuration)
        let pair = reference.pairs[2]
        func logit(_ m: PairRMModel) throws -> Float {
            m.logits([m.inputBuilder.pair(try m.inputBuilder.encode([(pair.source, [pair.left, pair.right])])[0], left: 0, right: 1)])[0]
        }
        XCTAssertEqual(try logit(ranker), try logit(Self.model))
        XCTAssertTrue(Self.model.label.hasPrefix("pairrm:pairrm-tiny@"), Self.model.label)
    }

    func testMisShapedAndMissingTensorsAreReportedTogetherByName() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pairrm-broken-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for f in ["spm.model", "tokenizer.json", "tokenizer_config.json", "added_tokens.json", "special_tokens_map.json", "pytorch_model.bin"] {
            try FileManager.default.copyItem(atPath: ReferenceFixtures.path("pairrm-tiny/\(f)"), toPath: dir + "/" + f)
        }
        // A config claiming a wider FFN than the weights have.
        var config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: ReferenceFixtures.path("pairrm-tiny/config.json")))) as! [String: Any]
        config["intermediate_size"] = 48
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: dir + "/config.json"))
        XCTAssertThrowsError(try PairRMModel(directory: dir)) { error in
            guard case let CheckpointError.tensors(problems) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(problems.count, 6, "\(problems)")  // 2 layers × (intermediate weight and bias, output weight)
            XCTAssertTrue("\(error)".contains("pretrained_model.encoder.layer.0.intermediate.dense.weight has shape [64, 32], expected [48, 32]"), "\(error)")
        }
    }
}
