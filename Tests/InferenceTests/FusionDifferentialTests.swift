import BlendCore
import Foundation
import XCTest
@testable import Inference

/// Generated fusion jobs run through the reference's `Blender.fuse` (loadfuser on t5-tiny, cpu, fp32): greedy
/// and beam search with 2, 3 and 4 beams, length penalties, early stopping, a minimum length, and candidates
/// cut at 128 tokens that contain characters the vocabulary lacks, `</s>` and sentinels
/// (scripts/fixtures/differential.py). Jobs whose fp64 decode differs from the fp32 one were not kept: their
/// best hypotheses are within fp32 noise of each other. Each job is fused in a call of its own.
final class FusionDifferentialTests: XCTestCase {
    struct Settings: Decodable {
        var max_new_tokens: Int
        var num_beams: Int
        var length_penalty: Double?
        var early_stopping: Bool?
        var min_new_tokens: Int?
    }

    struct Job: Decodable {
        var instruction: String
        var input: String
        var candidates: [String]
        var cut_candidates: [String]
        var settings: Settings
        var prompt_ids: [Int]
        var output_ids: [Int]
        var fused: String
    }

    struct File: Decodable { var jobs: [Job] }

    static let jobs: [Job] = {
        let data = FileManager.default.contents(atPath: ReferenceFixtures.path("differential/fusion-jobs.json"))!
        return try! JSONDecoder().decode(File.self, from: data).jobs
    }()

    static func options(_ s: Settings) -> BlendJob.FuseOptions {
        var o = BlendJob.FuseOptions()
        o.maxNewTokens = s.max_new_tokens
        o.numBeams = s.num_beams
        o.lengthPenalty = s.length_penalty ?? 1.0
        o.earlyStopping = s.early_stopping ?? false
        o.minNewTokens = s.min_new_tokens ?? 0
        return o
    }

    /// The prompt's ids equal `GenFuserDataset`'s, including for cut candidates whose unknown characters came
    /// back from `decode` as `<unk>` (the reference keeps special tokens when it decodes a cut candidate).
    func testPromptIdsEqualTheReferenceForCutCandidatesWithUnknownsAndSpecials() throws {
        let builder = GenFuserTests.fuser.promptBuilder
        for (i, job) in Self.jobs.enumerated() {
            XCTAssertEqual(try builder.inputIds(instruction: job.instruction, input: job.input, candidates: job.candidates),
                           job.prompt_ids, "job \(i)")
        }
        let unk = try XCTUnwrap(GenFuserTests.fuser.tokenizer.id(of: "<unk>"))
        let cutWithUnknowns = Self.jobs.filter { job in job.cut_candidates.contains { $0.contains("<unk>") } }
        XCTAssertGreaterThanOrEqual(cutWithUnknowns.count, 3)
        XCTAssertTrue(cutWithUnknowns.allSatisfy { $0.prompt_ids.contains(unk) })
    }

    func testFusedIdsAndTextsEqualBlenderFuse() throws {
        XCTAssertGreaterThanOrEqual(Self.jobs.count, 14)
        let fuser = GenFuserTests.fuser
        let eos = fuser.model.configuration.eosId
        var identical = 0
        for (i, job) in Self.jobs.enumerated() {
            let request = FuseRequest(jobId: "fuse-\(i)", instruction: job.instruction, input: job.input,
                                      candidates: job.candidates, options: Self.options(job.settings))
            let outcome = try fuser.fuseNow([request])[0].get()
            let expected = T5ParityTests.generatedTokens(job.output_ids, eos: eos)
            let generated = fuser.generator.generate([job.prompt_ids], settings: [GenerationSettings(options: request.options, seed: 0)])[0].tokens
            XCTAssertEqual(generated, expected, "job \(i) \(job.settings)")
            XCTAssertEqual(outcome.text, job.fused, "job \(i) \(job.settings)")
            if outcome.text == job.fused && generated == expected { identical += 1 }
        }
        print("fusion: \(identical)/\(Self.jobs.count) fused texts and ids identical")
        let beams = Set(Self.jobs.map(\.settings.num_beams))
        XCTAssertEqual(beams, [1, 2, 3, 4])
        XCTAssertTrue(Self.jobs.contains { $0.settings.early_stopping == true })
        XCTAssertTrue(Self.jobs.contains { ($0.settings.length_penalty ?? 1) != 1 })
    }
}
