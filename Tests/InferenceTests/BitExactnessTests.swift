import BlendCore
import Foundation
import XCTest
@testable import Inference

/// A result never depends on its batch-mates, bit for bit: kernels, encoder states, pair logits, rank matrices,
/// T5 encoder states, decoder logits and generated ids, for generated inputs run alone, shuffled and mixed with
/// other jobs of other lengths. scripts/test.sh runs this class under `OPENBLAS_CORETYPE=Haswell` and again
/// under the CPU's own kernels, because OpenBLAS's edge cases differ by core type.
final class BitExactnessTests: XCTestCase {
    /// SplitMix64: generated, reproducible inputs.
    struct Generator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func int(_ range: Range<Int>) -> Int { range.lowerBound + Int(next() % UInt64(range.count)) }
        mutating func float() -> Float { Float(next() >> 40) / Float(1 << 24) * 2 - 1 }
        mutating func floats(_ count: Int) -> [Float] { (0..<count).map { _ in float() } }
        mutating func shuffle<T>(_ values: [T]) -> [T] {
            var v = values
            for i in stride(from: v.count - 1, to: 0, by: -1) { v.swapAt(i, int(0..<(i + 1))) }
            return v
        }
    }

    func bits(_ values: some Sequence<Float>) -> [UInt32] { values.map(\.bitPattern) }

    func testTheRequestedOpenBLASCoreIsTheOneInUse() {
        // A core type that did not take effect would make the second pass of scripts/test.sh test nothing new.
        print("OpenBLAS core \(NumericsThreading.blasCore): sequences aligned to \(Kernels.rowAlignment) rows")
        XCTAssertEqual(Kernels.rowBlock % Kernels.rowAlignment, 0)
        guard let requested = ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] else { return }
        XCTAssertEqual(NumericsThreading.blasCore.lowercased(), requested.lowercased())
    }

    // MARK: Kernels

    /// Rows of sequences laid out as `PackedSequences` lays them out, the gaps filled with noise.
    func packed(_ sequences: [[Float]], columns: Int, g: inout Generator) -> (x: Tensor, offsets: [Int]) {
        let layout = PackedSequences(sequences.map { Array(repeating: 0, count: $0.count / columns) }, padding: 0)
        var x = g.floats(layout.ids.count * columns)
        for (s, rows) in sequences.enumerated() { x.replaceSubrange((layout.offsets[s] * columns)..<(layout.offsets[s] * columns + rows.count), with: rows) }
        return (Tensor(shape: [layout.ids.count, columns], storage: x), layout.offsets)
    }

    func testPackedProductRowsAreIdenticalInEveryBatchAndMatchTheLoop() {
        var g = Generator(state: 11)
        // Shapes on both sides of OpenBLAS's small-matrix switch, odd widths, and more than one column part.
        for (n, k) in [(32, 32), (96, 32), (64, 37), (200, 48), (1100, 64)] {
            let weight = Tensor(shape: [n, k], storage: g.floats(n * k)), bias = Tensor(shape: [n], storage: g.floats(n))
            for _ in 0..<3 {
                let sequences = (0..<g.int(2..<7)).map { _ in g.floats(g.int(1..<260) * k) }
                let alone = sequences.map { s -> [UInt32] in
                    var local = g
                    let (x, _) = packed([s], columns: k, g: &local)
                    let y = Kernels.linear(x, weight: weight, bias: bias)
                    return bits(y.storage[0..<(s.count / k * n)])
                }
                let order = g.shuffle(Array(sequences.indices))
                let extra = (0..<g.int(1..<4)).map { _ in g.floats(g.int(1..<200) * k) }
                let mixed = g.shuffle(order.map { ($0, sequences[$0]) } + extra.map { (-1, $0) })
                let (x, offsets) = packed(mixed.map(\.1), columns: k, g: &g)
                let y = Kernels.linear(x, weight: weight, bias: bias)
                for (slot, (index, rows)) in mixed.enumerated() where index >= 0 {
                    let start = offsets[slot] * n
                    XCTAssertEqual(bits(y.storage[start..<(start + rows.count / k * n)]), alone[index], "n=\(n) k=\(k) sequence of \(rows.count / k) rows at row \(offsets[slot])")
                }
                // The fast path against the loop.
                for (slot, (_, rows)) in mixed.enumerated() {
                    for r in 0..<(rows.count / k) {
                        for j in stride(from: 0, to: n, by: 7) {
                            var sum = bias.storage[j]
                            for p in 0..<k { sum += rows[r * k + p] * weight.storage[j * k + p] }
                            XCTAssertEqual(y.storage[(offsets[slot] + r) * n + j], sum, accuracy: 1e-4)
                        }
                    }
                }
            }
        }
    }

    func testRowProductsAreIdenticalForAnyRowCountAndPosition() {
        var g = Generator(state: 12)
        for (n, k) in [(40, 32), (130, 48), (64, 2048)] {
            let values = g.floats(n * k)
            let f32 = Tensor(shape: [n, k], storage: values)
            // bf16-representable values are held as bf16 (the interleaved direct kernel).
            let rounded = Tensor(shape: [n, k], storage: values.map { Float(bitPattern: $0.bitPattern & 0xFFFF_0000) })
            let bf16 = WeightMatrix(rounded, compress: true)
            guard case .bf16 = bf16 else { return XCTFail("bf16 values were not held as bf16") }
            let row = g.floats(k)
            let single = Tensor(shape: [1, k], storage: row)
            let expected32 = bits(Kernels.linearRows(single, weight: f32, bias: nil).storage)
            let expected16 = bits(bf16.linearRows(single).storage)
            for j in 0..<n {
                var sum: Float = 0
                for p in 0..<k { sum += row[p] * rounded.storage[j * k + p] }
                XCTAssertEqual(Float(bitPattern: expected16[j]), sum, accuracy: 1e-3 * Float(k).squareRoot())
            }
            for m in [2, 3, 5, 8, 16, 17, 33] {
                let at = g.int(0..<m)
                var x = g.floats(m * k)
                x.replaceSubrange((at * k)..<((at + 1) * k), with: row)
                let batch = Tensor(shape: [m, k], storage: x)
                XCTAssertEqual(bits(Kernels.linearRows(batch, weight: f32, bias: nil)[row: at]), expected32, "f32 m=\(m) row \(at)")
                XCTAssertEqual(bits(bf16.linearRows(batch)[row: at]), expected16, "bf16 m=\(m) row \(at)")
            }
        }
    }

    // MARK: PairRM

    static let pairRM = PairRMParityTests.model

    func randomPair(_ g: inout Generator) -> PairInput {
        let vocabulary = Self.pairRM.configuration.vocabularySize
        let length = g.int(4..<300)
        return PairInput(ids: (0..<length).map { _ in g.int(0..<vocabulary) }, sourcePosition: 0,
                         candidate1Position: g.int(1..<length), candidate2Position: g.int(1..<length))
    }

    func testEncoderStatesAndPairLogitsAreIdenticalAloneShuffledAndMixed() {
        var g = Generator(state: 13)
        let network = Self.pairRM.network, h = Self.pairRM.configuration.hiddenSize
        let pairs = (0..<10).map { _ in randomPair(&g) }
        let alone = pairs.map { bits(network.logits([$0])) }
        let aloneStates = pairs.map { p -> [UInt32] in bits(network.encoder.forward([p.ids]).hidden.storage[0..<(p.ids.count * h)]) }
        for round in 0..<3 {
            let others = (0..<g.int(1..<6)).map { _ in randomPair(&g) }
            let mixed = g.shuffle(pairs.indices.map { ($0, pairs[$0]) } + others.map { (-1, $0) })
            let logits = network.logits(mixed.map(\.1))
            let (hidden, offsets) = network.encoder.forward(mixed.map(\.1.ids))
            for (slot, (index, pair)) in mixed.enumerated() where index >= 0 {
                XCTAssertEqual([logits[slot].bitPattern], alone[index], "round \(round): pair \(index) at slot \(slot)")
                let start = offsets[slot] * h
                XCTAssertEqual(bits(hidden.storage[start..<(start + pair.ids.count * h)]), aloneStates[index], "round \(round): states of pair \(index)")
            }
        }
    }

    /// Candidate texts from a small vocabulary of words, with copies of earlier candidates mixed in.
    static func randomJob(_ g: inout Generator, id: String) -> RankRequest {
        let words = ["Green.", "the", "answer", "is", "42", "Yes", "no", "maybe", "café", "🙂", "...", "99999", "\n", "code", "{x}"]
        func text(_ count: Int) -> String { (0..<count).map { _ in words[g.int(0..<words.count)] }.joined(separator: " ") }
        var candidates: [String] = []
        for _ in 0..<g.int(2..<6) {
            if !candidates.isEmpty && g.int(0..<3) == 0 {
                candidates.append(candidates[g.int(0..<candidates.count)])
            } else {
                candidates.append(text(g.int(1..<40)))
            }
        }
        if Set(candidates).count == candidates.count { candidates.append(candidates[0]) }
        return RankRequest(jobId: id, instruction: text(g.int(1..<30)), candidates: g.shuffle(candidates), mode: .maxLogits, seed: 3)
    }

    func testIdenticalCandidatesShareARankAndJobsRankTheSameAloneShuffledAndMixed() throws {
        var g = Generator(state: 14)
        let ranker = PairRMRanker(model: Self.pairRM, planner: TokenBudgetPlanner(maxSequences: 5, maxTokens: 600))
        let jobs = (0..<8).map { Self.randomJob(&g, id: "job-\($0)") }
        let alone = try jobs.map { try ranker.rankNow([$0]).results[0].get() }
        for (job, outcome) in zip(jobs, alone) {
            for i in job.candidates.indices {
                for j in job.candidates.indices where i != j && job.candidates[i] == job.candidates[j] {
                    XCTAssertEqual(outcome.ranks[i], outcome.ranks[j], "\(job.jobId): copies \(i) and \(j) share a rank")
                    XCTAssertEqual(outcome.scores[i].bitPattern, outcome.scores[j].bitPattern, "\(job.jobId): copies \(i) and \(j)")
                }
            }
        }
        for round in 0..<2 {
            let others = (0..<3).map { Self.randomJob(&g, id: "other-\(round)-\($0)") }
            let mixed = g.shuffle(jobs.indices.map { ($0, jobs[$0]) } + others.map { (-1, $0) })
            let (results, report) = ranker.rankNow(mixed.map(\.1))
            XCTAssertLessThan(report.distinctPairs, report.pairs, "copies are scored once")
            for ((index, _), result) in zip(mixed, results) where index >= 0 {
                let outcome = try result.get()
                XCTAssertEqual(bits(try XCTUnwrap(outcome.comparisons).values), bits(try XCTUnwrap(alone[index].comparisons).values), "round \(round): job \(index)")
                XCTAssertEqual(bits(outcome.scores), bits(alone[index].scores))
                XCTAssertEqual(outcome.ranks, alone[index].ranks)
            }
        }
    }

    // MARK: T5

    static let t5 = T5ParityTests.model

    static func randomPrompt(_ g: inout Generator) -> [Int] {
        let vocabulary = Self.t5.configuration.vocabularySize
        return (0..<g.int(1..<260)).map { _ in g.int(2..<vocabulary) } + [Self.t5.configuration.eosId]
    }

    func testT5StatesStepLogitsAndGenerationAreIdenticalAloneShuffledAndMixed() {
        var g = Generator(state: 15)
        let model = Self.t5, d = model.configuration.modelSize, v = model.configuration.vocabularySize
        let generator = T5Generator(model: model)
        let prompts = (0..<6).map { _ in Self.randomPrompt(&g) }
        let settings = prompts.indices.map { i in
            GenerationSettings(maxNewTokens: 12, numBeams: [1, 2, 3, 4][i % 4], lengthPenalty: i % 3 == 0 ? 1.5 : 1.0, earlyStopping: i % 2 == 0)
        }
        let aloneStates = prompts.map { bits(model.encode([$0]).hidden.storage[0..<($0.count * d)]) }
        let aloneSteps = prompts.map { prompt -> [UInt32] in
            let sources = model.encodeSources([prompt])
            var rows = [model.makeRow(source: 0)]
            _ = model.decodeStep(&rows, tokens: [model.configuration.decoderStartId], sources: sources)
            return bits(model.decodeStep(&rows, tokens: [prompt[0]], sources: sources).storage)
        }
        let aloneGenerated = prompts.indices.map { generator.generate([prompts[$0]], settings: [settings[$0]])[0] }
        for round in 0..<2 {
            let others = (0..<g.int(1..<4)).map { _ in Self.randomPrompt(&g) }
            let mixed = g.shuffle(prompts.indices.map { ($0, prompts[$0]) } + others.map { (-1, $0) })
            let (hidden, offsets) = model.encode(mixed.map(\.1))
            let sources = model.encodeSources(mixed.map(\.1))
            var rows = mixed.indices.map { model.makeRow(source: $0) }
            _ = model.decodeStep(&rows, tokens: Array(repeating: model.configuration.decoderStartId, count: rows.count), sources: sources)
            let step = model.decodeStep(&rows, tokens: mixed.map { $0.1[0] }, sources: sources)
            let generated = generator.generate(mixed.map(\.1), settings: mixed.map { $0.0 >= 0 ? settings[$0.0] : GenerationSettings(maxNewTokens: 9, numBeams: 2) })
            for (slot, (index, prompt)) in mixed.enumerated() where index >= 0 {
                XCTAssertEqual(bits(hidden.storage[(offsets[slot] * d)..<((offsets[slot] + prompt.count) * d)]), aloneStates[index], "round \(round): states of prompt \(index)")
                XCTAssertEqual(bits(step.storage[(slot * v)..<((slot + 1) * v)]), aloneSteps[index], "round \(round): step logits of prompt \(index)")
                XCTAssertEqual(generated[slot].tokens, aloneGenerated[index].tokens, "round \(round): tokens of prompt \(index)")
                XCTAssertEqual(generated[slot].score?.bitPattern, aloneGenerated[index].score?.bitPattern, "round \(round): beam score of prompt \(index)")
            }
        }
    }
}
