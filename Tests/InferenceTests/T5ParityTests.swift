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
        // The fixture's weights are bf16 values, so they are kept as bf16: half the bytes of float32.
        XCTAssertEqual(bin.weightBytes, Self.model.weightBytes)
        let parameters = try WeightStore.open(directory: ReferenceFixtures.path("t5-tiny")).names
            .filter { !$0.contains("norm") && !$0.contains("relative_attention_bias") }
            .reduce(0) { $0 + (try WeightStore.open(directory: ReferenceFixtures.path("t5-tiny")).shape(of: $1)!.reduce(1, *)) }
        XCTAssertEqual(Self.model.weightBytes, parameters * 2)
    }

    /// The reference's rows hold the decoder start, then tokens up to EOS, then fill: the tokens we compare.
    static func generatedTokens(_ row: [Int], eos: Int) -> [Int] {
        var tokens: [Int] = []
        for t in row.dropFirst() {
            tokens.append(t)
            if t == eos { break }
        }
        return tokens
    }

    func testGreedyAndBeamSearchGenerateTheReferenceIdsForABatchOfMixedLengths() throws {
        let generator = T5Generator(model: Self.model)
        let eos = Self.model.configuration.eosId
        for case let generation in reference.t5_generate {
            let s = generation.settings
            let settings = GenerationSettings(maxNewTokens: generation.max_new_tokens, minNewTokens: s.min_new_tokens ?? 0,
                                              numBeams: s.num_beams, lengthPenalty: s.length_penalty ?? 1,
                                              earlyStopping: s.early_stopping ?? false)
            let results = generator.generate(batch, settings: Array(repeating: settings, count: batch.count))
            for (r, expected) in generation.ids.enumerated() {
                XCTAssertEqual(results[r].tokens, Self.generatedTokens(expected, eos: eos), "\(s) prompt \(r)")
            }
        }
    }

    func testJobsWithDifferentSettingsDecodeTogetherAsTheyWouldAlone() throws {
        let generator = T5Generator(model: Self.model)
        let settings = [GenerationSettings(maxNewTokens: 20, numBeams: 4), GenerationSettings(maxNewTokens: 6),
                        GenerationSettings(maxNewTokens: 20, numBeams: 3, lengthPenalty: 0.8, earlyStopping: true),
                        GenerationSettings(maxNewTokens: 12, doSample: true, temperature: 0.7, topP: 0.9, topK: 50, seed: 11)]
        let together = generator.generate(batch, settings: settings)
        for r in batch.indices {
            // Tokens identical; beam scores equal up to GEMM rounding, which depends on the batch's row count.
            let alone = generator.generate([batch[r]], settings: [settings[r]])[0]
            XCTAssertEqual(together[r].tokens, alone.tokens, "prompt \(r)")
            XCTAssertEqual(together[r].score ?? 0, alone.score ?? 0, accuracy: 1e-5, "prompt \(r)")
        }
        XCTAssertLessThanOrEqual(together[1].tokens.count, 6)
        // Sampling reproduces with its seed and changes with another.
        let again = generator.generate([batch[3]], settings: [settings[3]])[0]
        XCTAssertEqual(again, together[3])
        var other = settings[3]
        other.seed = 12
        let draws = (0..<4).map { seed -> [Int] in
            other.seed = UInt64(100 + seed)
            return generator.generate([batch[3]], settings: [other])[0].tokens
        }
        XCTAssertGreaterThan(Set(draws).count, 1, "different seeds draw different sequences")
    }

    /// Greedy choice reads the logits in place: the first largest value wins, and a barred EOS (before
    /// min_new_tokens) counts as −∞, exactly as masking a copy of the row and taking its first maximum.
    func testGreedyChoiceTakesTheFirstLargestLogitWithEOSBarredAsMinusInfinity() {
        var g = BitExactnessTests.Generator(state: 61)
        func masked(_ v: [Float], _ barred: Int?) -> Int {
            var copy = v
            if let barred { copy[barred] = -.infinity }
            var best = 0
            for i in copy.indices where copy[i] > copy[best] { best = i }
            return best
        }
        var cases: [([Float], Int?)] = [([-.infinity, -.infinity], 0), ([3, 3, 1], 0), ([2, 5, 5], 1), ([7], 0), ([7], nil)]
        for _ in 0..<200 {
            // Few distinct values, so ties are common; the barred index is often the maximum or index 0.
            var v = (0..<g.int(1..<40)).map { _ in Float(g.int(0..<4)) }
            if g.int(0..<4) == 0 { v[g.int(0..<v.count)] = -.infinity }
            cases.append((v, g.int(0..<3) == 0 ? nil : g.int(0..<v.count)))
        }
        for (v, barred) in cases {
            let chosen = v.withUnsafeBufferPointer { DecodingJob.argmax($0, barring: barred) }
            XCTAssertEqual(chosen, masked(v, barred), "\(v) barring \(String(describing: barred))")
        }
    }

    func testStreamingReportsEachGreedyTokenAsItIsChosen() throws {
        let generator = T5Generator(model: Self.model)
        var streamed: [Int] = []
        let result = generator.generate([batch[0]], settings: [GenerationSettings(maxNewTokens: 20)]) { job, token in
            XCTAssertEqual(job, 0)
            streamed.append(token)
        }
        XCTAssertEqual(streamed, result[0].tokens)
        XCTAssertEqual(streamed, Self.generatedTokens(reference.t5_generate[0].ids[0], eos: Self.model.configuration.eosId))
    }
}
