import BlendCore
import XCTest
@testable import Inference

/// The fusion prompt and the fuser end to end on the T5 fixture.
final class GenFuserTests: XCTestCase {
    static let fuser: GenFuser = try! GenFuser(directory: ReferenceFixtures.path("t5-tiny"))
    var reference: ReferenceFixtures.Reference { ReferenceFixtures.reference }

    func testFusionPromptTextAndIdsEqualTheReference() throws {
        // Covers Unicode, newlines, `</s>` and `<extra_id_…>` inside candidates, candidates over 128 tokens
        // (cut and marked "..."), and a prompt cut at 1024 tokens.
        let builder = Self.fuser.promptBuilder
        for (i, p) in reference.fusion_prompts.enumerated() {
            let candidates = p.candidates
            XCTAssertEqual(try builder.prompt(instruction: p.instruction, input: p.input, candidates: candidates), p.prompt, "prompt \(i)")
            XCTAssertEqual(try builder.inputIds(instruction: p.instruction, input: p.input, candidates: candidates), p.input_ids, "prompt \(i)")
            XCTAssertEqual(candidates, p.candidates)
        }
        XCTAssertEqual(reference.fusion_prompts.last?.input_ids.count, 1024)
        XCTAssertTrue(reference.fusion_prompts[3].prompt.contains("..."))
    }

    func testFuseDecodesWhatGenerateProducesAndABadJobFailsAlone() async throws {
        let p = reference.fusion_prompts[0]
        var greedy = BlendJob.FuseOptions()
        greedy.numBeams = 1
        greedy.maxNewTokens = 20
        var beams = greedy
        beams.numBeams = 4
        var bad = greedy
        bad.numBeams = 2
        bad.doSample = true
        let requests = [FuseRequest(jobId: "g", instruction: p.instruction, input: p.input, candidates: p.candidates, options: greedy),
                        FuseRequest(jobId: "bad", instruction: p.instruction, input: p.input, candidates: p.candidates, options: bad),
                        FuseRequest(jobId: "b", instruction: p.instruction, input: p.input, candidates: p.candidates, options: beams),
                        FuseRequest(jobId: "none", instruction: "x", input: "", candidates: [], options: greedy)]
        let results = await Self.fuser.fuse(requests)
        let eos = Self.fuser.model.configuration.eosId
        let greedyIds = T5ParityTests.generatedTokens(reference.t5_generate[0].ids[0], eos: eos)
        let beamIds = T5ParityTests.generatedTokens(reference.t5_generate[2].ids[0], eos: eos)
        XCTAssertEqual(try results[0].get(), FuseOutcome(text: Self.fuser.tokenizer.decode(greedyIds), generatedTokens: greedyIds.count))
        XCTAssertEqual(try results[2].get().text, Self.fuser.tokenizer.decode(beamIds))
        XCTAssertThrowsError(try results[1].get()) { XCTAssertTrue("\($0)".contains("sampling with beams"), "\($0)") }
        XCTAssertThrowsError(try results[3].get()) { XCTAssertEqual(($0 as? FusionError)?.jobId, "none") }
        XCTAssertTrue(Self.fuser.label.hasPrefix("genfuser:t5-tiny@"), Self.fuser.label)
    }

    func testStreamingSeesTheTextGrow() throws {
        let p = reference.fusion_prompts[1]
        var options = BlendJob.FuseOptions()
        options.numBeams = 1
        options.maxNewTokens = 10
        var texts: [String] = []
        let result = Self.fuser.fuseNow([FuseRequest(jobId: "s", instruction: p.instruction, input: p.input, candidates: p.candidates, options: options)]) { _, text in
            texts.append(text)
        }
        XCTAssertEqual(texts.count, try result[0].get().generatedTokens)
        XCTAssertEqual(texts.last, try result[0].get().text)
    }
}
