import BlendCore
import Foundation
import XCTest
@testable import Inference

/// The T5 v1.1 fixture against `T5ForConditionalGeneration` (scripts/fixtures/generate.py): encoder states and
/// first-step logits within 1e-4 in fp32, generated ids identical to `generate()`.
final class T5ParityTests: XCTestCase {
    static let tolerance: Float = 1e-4
    static let model: T5Model = try! T5Model(directory: ReferenceFixtures.path("t5-tiny"))
    var reference: ReferenceFixtures.Reference { ReferenceFixtures.reference }
    var batch: [[Int]] { reference.t5_batch.map { reference.fusion_prompts[$0].input_ids } }

    func assertClose(_ ours: ArraySlice<Float>, _ theirs: [Float], _ what: String) {
        XCTAssertEqual(ours.count, theirs.count, what)
        let worst = zip(ours, theirs).map { abs($0 - $1) }.max() ?? 0
        XCTAssertLessThanOrEqual(worst, Self.tolerance, "\(what): max abs difference \(worst)")
    }

    func testEncoderStatesMatchTheReferenceForPromptsOfMixedLengths() throws {
        let (hidden, offsets) = Self.model.encode(batch)
        let d = Self.model.configuration.modelSize
        for (r, ids) in batch.enumerated() {
            let expected = try XCTUnwrap(try ReferenceFixtures.tensors.tensor("t5.\(r).encoder"))
            assertClose(hidden.storage[(offsets[r] * d)..<((offsets[r] + ids.count) * d)], expected.storage, "prompt \(r) (\(ids.count) tokens)")
        }
    }

    func testFirstStepLogitsMatchTheReference() throws {
        let model = Self.model
        let sources = model.encodeSources(batch)
        var rows = sources.indices.map { model.makeRow(source: $0) }
        let logits = model.decodeStep(&rows, tokens: Array(repeating: model.configuration.decoderStartId, count: rows.count), sources: sources)
        let v = model.configuration.vocabularySize
        for r in sources.indices {
            let expected = try XCTUnwrap(try ReferenceFixtures.tensors.tensor("t5.\(r).first_logits"))
            assertClose(logits.storage[(r * v)..<((r + 1) * v)], expected.storage, "prompt \(r)")
        }
    }

    func testBF16BinAndShardedSafetensorsLoadTheSameModel() throws {
        let bin = try T5Model(configuration: Self.model.configuration,
                              store: try WeightStore.open(file: ReferenceFixtures.path("t5-tiny/pytorch_model.bin")))
        let sharded = try T5Model(directory: ReferenceFixtures.path("t5-tiny-sharded"))
        let prompt = [batch[1]]
        let a = Self.model.encode(prompt).hidden, b = bin.encode(prompt).hidden, c = sharded.encode(prompt).hidden
        XCTAssertEqual(a, b)
        XCTAssertEqual(a, c)
    }
}
