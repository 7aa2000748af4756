import BlendCore
import Foundation
import XCTest
@testable import Inference

/// A job decoded in a batch that changes between steps (jobs joining at random steps, others leaving as they
/// finish, encoder work split over steps, row budgets that make jobs wait) gives exactly the ids and beam
/// score it gets decoded alone, for generated mixes of beams, lengths, penalties, stopping rules and sampling.
final class ContinuousDecoderTests: XCTestCase {
    typealias Generator = BitExactnessTests.Generator
    static let model = T5ParityTests.model

    static func randomSettings(_ g: inout Generator) -> GenerationSettings {
        let beams = g.int(1..<5)
        var s = GenerationSettings(maxNewTokens: g.int(1..<15), numBeams: beams,
                                   lengthPenalty: [0.5, 1.0, 1.5, 2.0, -0.5][g.int(0..<5)], earlyStopping: g.int(0..<2) == 0)
        if g.int(0..<3) == 0 { s.minNewTokens = g.int(0..<(s.maxNewTokens + 3)) }
        if beams == 1 && g.int(0..<2) == 0 {
            s.doSample = true
            s.temperature = [0.6, 1.0, 1.4][g.int(0..<3)]
            s.topP = [1.0, 0.9, 0.5][g.int(0..<3)]
            s.topK = [0, 1, 20][g.int(0..<3)]
            s.seed = g.next()
        }
        return s
    }

    /// Prompts of 1…80 tokens, some shorter than a row alignment, ending with EOS as tokenized prompts do.
    static func randomPrompt(_ g: inout Generator) -> [Int] {
        let vocabulary = model.configuration.vocabularySize
        return (0..<g.int(0..<80)).map { _ in g.int(2..<vocabulary) } + [model.configuration.eosId]
    }

    func testJobsJoiningAndLeavingAtRandomStepsDecodeAsTheyDoAlone() {
        let generator = T5Generator(model: Self.model)
        var g = Generator(state: 2026)
        var checked = 0
        for round in 0..<12 {
            let count = g.int(1..<14)
            let prompts = (0..<count).map { _ in Self.randomPrompt(&g) }
            let settings = (0..<count).map { _ in Self.randomSettings(&g) }
            let joins = (0..<count).map { _ in g.int(0..<20) }
            let alone = (0..<count).map { generator.generate([prompts[$0]], settings: [settings[$0]])[0] }
            let decoder = ContinuousDecoder(model: Self.model, maxRows: g.int(1..<16), encodeTokensPerStep: g.int(1..<200))
            var results: [Int: GeneratedSequence] = [:]
            var step = 0
            while results.count < count {
                for j in 0..<count where joins[j] == step { decoder.submit(tag: j, prompt: prompts[j], settings: settings[j]) }
                for (tag, sequence) in decoder.step() {
                    XCTAssertNil(results[tag], "round \(round): job \(tag) finished twice")
                    results[tag] = sequence
                }
                step += 1
                XCTAssertLessThan(step, 2000, "round \(round): the session does not finish")
                if step >= 2000 { return }
            }
            XCTAssertTrue(decoder.isIdle)
            for j in 0..<count {
                let context = "round \(round), job \(j), \(settings[j]), joined at step \(joins[j]), \(prompts[j].count) prompt tokens"
                XCTAssertEqual(results[j]?.tokens, alone[j].tokens, context)
                XCTAssertEqual(results[j]?.score?.bitPattern, alone[j].score?.bitPattern, context)
                checked += 1
            }
        }
        XCTAssertGreaterThan(checked, 40)
    }

    func testARowBudgetSmallerThanAJobsBeamsStillRunsItAlone() {
        let generator = T5Generator(model: Self.model)
        var g = Generator(state: 7)
        let prompts = (0..<3).map { _ in Self.randomPrompt(&g) }
        let settings = [GenerationSettings(maxNewTokens: 6, numBeams: 4), GenerationSettings(maxNewTokens: 3),
                        GenerationSettings(maxNewTokens: 5, numBeams: 3, lengthPenalty: 2)]
        let decoder = ContinuousDecoder(model: Self.model, maxRows: 2, encodeTokensPerStep: 1)
        for j in prompts.indices { decoder.submit(tag: j, prompt: prompts[j], settings: settings[j]) }
        var order: [Int] = []
        var results: [Int: GeneratedSequence] = [:]
        while !decoder.isIdle {
            XCTAssertLessThanOrEqual(decoder.runningCount, 1, "with 2 rows, a 4- or 3-beam job runs alone")
            for (tag, sequence) in decoder.step() { order.append(tag); results[tag] = sequence }
        }
        XCTAssertEqual(order, [0, 1, 2], "jobs are admitted in arrival order")
        for j in prompts.indices {
            XCTAssertEqual(results[j], generator.generate([prompts[j]], settings: [settings[j]])[0], "job \(j)")
        }
    }

    func testAStepWithNothingSubmittedReturnsNothing() {
        let decoder = ContinuousDecoder(model: Self.model)
        XCTAssertTrue(decoder.step().isEmpty)
        XCTAssertTrue(decoder.isIdle)
    }

    func testTheGenFuserSessionGivesWhatFuseNowGivesAndBadRequestsFailAlone() throws {
        let fuser = GenFuserTests.fuser
        var g = Generator(state: 99)
        let words = ["alpha", "beta", "gamma", "delta", "the", "answer", "is", "42", "because", "of", "reasons", "Paris", "☃", "über"]
        func text(_ n: Int) -> String { (0..<n).map { _ in words[g.int(0..<words.count)] }.joined(separator: " ") }
        var requests: [FuseRequest] = []
        for i in 0..<16 {
            var options = BlendJob.FuseOptions()
            let s = Self.randomSettings(&g)
            options.maxNewTokens = s.maxNewTokens
            options.minNewTokens = s.minNewTokens
            options.numBeams = s.numBeams
            options.lengthPenalty = s.lengthPenalty
            options.earlyStopping = s.earlyStopping
            options.doSample = s.doSample
            options.temperature = s.temperature
            options.topP = s.topP
            options.sampleTopK = s.topK
            options.seed = g.int(0..<2) == 0 ? s.seed : nil
            if i == 5 { options.numBeams = 2; options.doSample = true }  // refused: sampling with beams
            let candidates = i == 9 ? [] : (0..<g.int(1..<4)).map { _ in text(g.int(1..<40)) }
            requests.append(FuseRequest(jobId: "job-\(i)", instruction: text(g.int(0..<12)), input: text(g.int(0..<20)),
                                        candidates: candidates, options: options))
        }
        let expected = fuser.fuseNow(requests)
        let session = fuser.makeSession(maxRows: 6)
        var got: [Int: Result<FuseOutcome, FusionError>] = [:]
        var next = 0
        while next < requests.count || session.unfinishedCount > 0 {
            // One to three requests join before each step.
            for _ in 0..<g.int(0..<4) where next < requests.count {
                session.submit(tag: next, request: requests[next])
                next += 1
            }
            for (tag, result) in session.step() {
                XCTAssertNil(got[tag], "request \(tag) answered twice")
                got[tag] = result
            }
        }
        for i in requests.indices { XCTAssertEqual(got[i], expected[i], "request \(i)") }
        XCTAssertThrowsError(try got[5]?.get())
        XCTAssertThrowsError(try got[9]?.get())
    }

    func testTheTopCandidateSessionAnswersEveryRequestAtTheNextStep() throws {
        let session = TopCandidateFuser().makeSession(maxRows: 1)
        session.submit(tag: 3, request: FuseRequest(jobId: "a", instruction: "", input: "", candidates: ["best", "second"], options: .init()))
        session.submit(tag: 4, request: FuseRequest(jobId: "b", instruction: "", input: "", candidates: [], options: .init()))
        XCTAssertEqual(session.unfinishedCount, 2)
        let done = session.step()
        XCTAssertEqual(done.map(\.tag), [3, 4])
        XCTAssertEqual(try done[0].result.get(), FuseOutcome(text: "best", generatedTokens: 0))
        XCTAssertThrowsError(try done[1].result.get())
        XCTAssertEqual(session.unfinishedCount, 0)
        XCTAssertTrue(session.step().isEmpty)
    }
}
