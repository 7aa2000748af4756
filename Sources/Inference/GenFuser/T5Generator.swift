import BlendCore
import Foundation

/// How one job decodes, with Hugging Face `generate()` semantics and defaults.
public struct GenerationSettings: Sendable, Equatable {
    public var maxNewTokens = 128
    public var minNewTokens = 0
    public var numBeams = 1
    public var lengthPenalty = 1.0
    public var earlyStopping = false
    public var doSample = false
    public var temperature = 1.0
    public var topP = 1.0
    /// Sampling's top-k filter; 0 = off.
    public var topK = 0
    public var seed: UInt64 = 0

    public init(maxNewTokens: Int = 128, minNewTokens: Int = 0, numBeams: Int = 1, lengthPenalty: Double = 1.0,
                earlyStopping: Bool = false, doSample: Bool = false, temperature: Double = 1.0, topP: Double = 1.0,
                topK: Int = 0, seed: UInt64 = 0) {
        self.maxNewTokens = maxNewTokens
        self.minNewTokens = minNewTokens
        self.numBeams = numBeams
        self.lengthPenalty = lengthPenalty
        self.earlyStopping = earlyStopping
        self.doSample = doSample
        self.temperature = temperature
        self.topP = topP
        self.topK = topK
        self.seed = seed
    }

    /// A job's fuse options; `seed` orders sampling when the job gives none.
    public init(options: BlendJob.FuseOptions, seed: UInt64) {
        self.init(maxNewTokens: options.maxNewTokens, minNewTokens: options.minNewTokens, numBeams: options.numBeams,
                  lengthPenalty: options.lengthPenalty, earlyStopping: options.earlyStopping, doSample: options.doSample,
                  temperature: options.temperature, topP: options.topP, topK: options.sampleTopK, seed: options.seed ?? seed)
    }

    /// Why these settings cannot run, or nil.
    public var problem: String? {
        if maxNewTokens < 1 { return "max_new_tokens must be at least 1" }
        if numBeams < 1 { return "num_beams must be at least 1" }
        if doSample && numBeams > 1 { return "sampling with beams is not supported; use num_beams 1 to sample" }
        if doSample && !(temperature > 0) { return "temperature must be positive" }
        if doSample && !(topP > 0 && topP <= 1) { return "top_p must be in (0, 1]" }
        return nil
    }
}

/// A generated sequence: tokens after the decoder start, ending with EOS when the model produced it.
public struct GeneratedSequence: Sendable, Equatable {
    public var tokens: [Int]
    /// The beam score (sum of log-probabilities over length^penalty) for beam search; nil otherwise.
    public var score: Float?
}

/// Decodes many jobs together: every step feeds one token to each live row (a greedy or sampled
/// sequence, or a beam) of every unfinished job in one decoder pass. A job leaves the batch the
/// step it finishes; its result is what HF's batched `generate()` returns for it.
public final class T5Generator: Sendable {
    public let model: T5Model

    public init(model: T5Model) { self.model = model }

    /// `onToken(job, token)` sees each token chosen for greedy and sampled jobs as it is produced.
    public func generate(_ prompts: [[Int]], settings: [GenerationSettings],
                         onToken: ((Int, Int) -> Void)? = nil) -> [GeneratedSequence] {
        precondition(prompts.count == settings.count, "one settings value per prompt")
        for s in settings { precondition(s.problem == nil, s.problem ?? "") }
        let sources = model.encodeSources(prompts)
        let start = model.configuration.decoderStartId
        var jobs: [DecodingJob] = settings.enumerated().map { index, s in
            DecodingJob(settings: s, eos: model.configuration.eosId, rows: [model.makeRow(source: index)], feed: [start])
        }
        let vocabulary = model.configuration.vocabularySize
        while true {
            let active = jobs.indices.filter { !jobs[$0].done }
            if active.isEmpty { break }
            var rows: [T5Model.DecoderRow] = []
            var tokens: [Int] = []
            var ranges: [Range<Int>] = []
            for j in active {
                ranges.append(rows.count..<(rows.count + jobs[j].rows.count))
                rows += jobs[j].rows
                tokens += jobs[j].feed
                jobs[j].rows = []  // rows has the only reference, so appending to the caches does not copy them
            }
            let logits = model.decodeStep(&rows, tokens: tokens, sources: sources)
            for (j, range) in zip(active, ranges) { jobs[j].rows = Array(rows[range]) }
            let chosen = jobs.withUnsafeMutableBufferPointer { jobs in
                DecodingJob.advanceAll(logits, rows: ranges) { i, rowLogits in jobs[active[i]].advance(logits: rowLogits, vocabulary: vocabulary) }
            }
            if let onToken {
                for (i, j) in active.enumerated() { if let token = chosen[i] { onToken(j, token) } }
            }
        }
        return jobs.map(\.result)
    }
}

/// One job's decoding state.
struct DecodingJob {
    let settings: GenerationSettings
    let eos: Int
    var rows: [T5Model.DecoderRow]
    /// The token each row is fed next.
    var feed: [Int]
    var done = false
    /// Tokens generated so far in every live row.
    var generated = 0

    // Greedy and sampling.
    var sequence: [Int] = []
    var random: SplitMix64

    // Beam search (HF ≥ 4.50 vectorized semantics).
    var running: [[Int]] = [[]]
    var runningScores: [Float] = [0]
    var finished: [(tokens: [Int], score: Float)] = []
    var improvementPossible = true

    init(settings: GenerationSettings, eos: Int, rows: [T5Model.DecoderRow], feed: [Int]) {
        self.settings = settings
        self.eos = eos
        self.rows = rows
        self.feed = feed
        random = SplitMix64(seed: settings.seed)
    }

    /// `advance(i, logits)` for the jobs of one step, job i given rows `ranges[i]` of the step's [rows, vocabulary]
    /// logits; returns what each call returned. Jobs run in parallel on the decoder step's team: each reads only its
    /// own rows and changes only its own state (beams, scores, random generator), so which worker takes it changes
    /// nothing. A beam row costs about 0.1 ms (an exp per token and the selection pass).
    static func advanceAll(_ logits: Tensor, rows ranges: [Range<Int>],
                           _ advance: (Int, UnsafeBufferPointer<Float>) -> Int?) -> [Int?] {
        let vocabulary = logits.columns
        var chosen = [Int?](repeating: nil, count: ranges.count)
        logits.storage.withUnsafeBufferPointer { all in
            chosen.withUnsafeMutableBufferPointer { chosen in
                let one = { (i: Int) in
                    chosen[i] = advance(i, UnsafeBufferPointer(rebasing: all[(ranges[i].lowerBound * vocabulary)..<(ranges[i].upperBound * vocabulary)]))
                }
                if ranges.count > 1 { NumericsThreading.team.forEach(ranges.count, one) } else { ranges.indices.forEach(one) }
            }
        }
        return chosen
    }

    var result: GeneratedSequence {
        if settings.numBeams > 1 {
            let best = finished.first ?? (running.first.map { ($0, runningScores[0]) } ?? ([], 0))
            return GeneratedSequence(tokens: best.tokens, score: best.score)
        }
        return GeneratedSequence(tokens: sequence, score: nil)
    }

    /// Consumes the logits of this job's rows; returns the token chosen for a single-row job. Greedy choice reads
    /// them in place (a copy of a row is 128 KB at Flan-T5's vocabulary, per row and step).
    mutating func advance(logits: UnsafeBufferPointer<Float>, vocabulary: Int) -> Int? {
        if settings.numBeams > 1 {
            beamStep(logits: logits, vocabulary: vocabulary)
            return nil
        }
        let eosBarred = generated < settings.minNewTokens
        let token: Int
        if settings.doSample {
            var scores = Array(logits)
            if eosBarred { scores[eos] = -.infinity }
            token = sample(&scores)
        } else {
            token = Self.argmax(logits, barring: eosBarred ? eos : nil)
        }
        sequence.append(token)
        generated += 1
        feed = [token]
        if token == eos || generated >= settings.maxNewTokens { done = true }
        return token
    }

    static func argmax(_ v: [Float]) -> Int { v.withUnsafeBufferPointer { argmax($0, barring: nil) } }

    /// The first index of the largest value, the `barred` index read as −∞ (EOS before min_new_tokens).
    static func argmax(_ v: UnsafeBufferPointer<Float>, barring barred: Int?) -> Int {
        var best = 0, top = barred == 0 ? -Float.infinity : v[0]
        for i in v.indices.dropFirst() {
            let value = i == barred ? -Float.infinity : v[i]
            if value > top { (best, top) = (i, value) }
        }
        return best
    }

    /// HF's warpers in order (temperature, top-k, top-p), then a draw from the seeded generator.
    mutating func sample(_ scores: inout [Float]) -> Int {
        if settings.temperature != 1 { for i in scores.indices { scores[i] /= Float(settings.temperature) } }
        var order = Self.descendingOrder(scores)
        if settings.topK > 0 && settings.topK < order.count { order = Array(order.prefix(settings.topK)) }
        let maxValue = scores[order[0]]
        var probabilities = order.map { expf(scores[$0] - maxValue) }
        let total = probabilities.reduce(0, +)
        for i in probabilities.indices { probabilities[i] /= total }
        if settings.topP < 1 {
            // Keep the smallest prefix of the sorted tokens whose mass reaches top_p (at least one token).
            var mass: Float = 0
            var keep = 0
            while keep < probabilities.count {
                mass += probabilities[keep]
                keep += 1
                if mass >= Float(settings.topP) { break }
            }
            order = Array(order.prefix(keep))
            probabilities = Array(probabilities.prefix(keep))
            let kept = probabilities.reduce(0, +)
            for i in probabilities.indices { probabilities[i] /= kept }
        }
        let u = Float(Double(random.next() >> 11) / Double(1 << 53))
        var cumulative: Float = 0
        for (k, p) in probabilities.enumerated() {
            cumulative += p
            if u < cumulative { return order[k] }
        }
        return order[order.count - 1]
    }

    /// Indices of `scores` from the largest score to the smallest, equal scores (−0 equal to +0) by index: the order
    /// of sorting the indices by that rule, from a stable radix sort of 32-bit keys (three passes of 11 bits) instead
    /// of a comparison sort (about 2 ms per sampled row at Flan-T5's 32,128 tokens). NaN goes last.
    static func descendingOrder(_ scores: [Float]) -> [Int] {
        let n = scores.count
        guard n > 1 else { return Array(0..<n) }
        var keys = [UInt32](repeating: 0, count: n), spareKeys = keys
        var order = [Int32](repeating: 0, count: n), spareOrder = order
        for i in 0..<n {
            let v = scores[i]
            let bits = v == 0 ? 0 : v.bitPattern
            // Ascending float order as unsigned order, then flipped so the largest score gets the smallest key.
            let ascending = bits >> 31 != 0 ? ~bits : bits | 0x8000_0000
            keys[i] = v.isNaN ? .max : ~ascending
            order[i] = Int32(i)
        }
        var counts = [Int](repeating: 0, count: 2048)
        for shift in [0, 11, 22] {
            counts.withUnsafeMutableBufferPointer { c in
                c.update(repeating: 0)
                for i in 0..<n { c[Int((keys[i] >> UInt32(shift)) & 2047)] += 1 }
                var sum = 0
                for d in 0..<2048 { (c[d], sum) = (sum, sum + c[d]) }
                for i in 0..<n {
                    let d = Int((keys[i] >> UInt32(shift)) & 2047)
                    spareKeys[c[d]] = keys[i]
                    spareOrder[c[d]] = order[i]
                    c[d] += 1
                }
            }
            swap(&keys, &spareKeys)
            swap(&order, &spareOrder)
        }
        return order.map { Int($0) }
    }

    /// The `keep` best continuations of all beams by log_softmax(row) + running score, best first, ties to the lower
    /// flat index (beam · vocabulary + token), the `barred` token scoring −∞ (EOS before min_new_tokens). Per row: the
    /// largest logit, the sum of exp(v − max) in index order, then one pass that keeps a candidate only when it beats
    /// the current last one (a score never decreases with its logit, so the result is that of a full sort).
    static func topContinuations(_ logits: UnsafeBufferPointer<Float>, vocabulary: Int, runningScores: [Float], keep: Int,
                                 barred: Int?) -> [(score: Float, beam: Int, token: Int)] {
        var top: [(score: Float, beam: Int, token: Int)] = []
        top.reserveCapacity(keep + 1)
        let base = logits.baseAddress!, barred = barred ?? -1
        for b in runningScores.indices {
            let row = base + b * vocabulary
            var maxValue = row[0]
            for t in 1..<vocabulary where maxValue < row[t] { maxValue = row[t] }
            var total: Float = 0
            for t in 0..<vocabulary { total += expf(row[t] - maxValue) }
            let logTotal = logf(total) + maxValue, running = runningScores[b]
            for t in 0..<vocabulary {
                let score = (t == barred ? -Float.infinity : row[t] - logTotal) + running
                if top.count == keep && !(score > top[keep - 1].score) { continue }
                var at = top.count
                while at > 0 && score > top[at - 1].score { at -= 1 }
                top.insert((score, b, t), at: at)
                if top.count > keep { top.removeLast() }
            }
        }
        return top
    }

    /// One step of beam search as transformers' `_beam_search`: the top 2·B continuations of all beams,
    /// finished hypotheses scored with length `generated + 1` (EOS included), the best B unfinished ones
    /// continue, and the early-stop heuristic compares the best running score against the worst kept one.
    mutating func beamStep(logits: UnsafeBufferPointer<Float>, vocabulary: Int) {
        let beams = settings.numBeams, keep = 2 * beams
        let penalty = settings.lengthPenalty
        let maxLength = settings.maxNewTokens
        let top = Self.topContinuations(logits, vocabulary: vocabulary, runningScores: runningScores, keep: keep,
                                        barred: generated < settings.minNewTokens ? eos : nil)
        let lastStep = generated + 1 >= maxLength
        let hits = top.map { $0.token == eos || lastStep }

        // Finished hypotheses: only the first B continuations may finish, and not once the job cannot improve.
        let full = settings.earlyStopping && finished.count == beams
        if improvementPossible && !full {
            let divisor = Float(pow(Double(generated + 1), penalty))
            var merged = finished
            for k in 0..<min(beams, top.count) where hits[k] {
                merged.append((running[top[k].beam] + [top[k].token], top[k].score / divisor))
            }
            // Stable: earlier entries win ties, as torch.topk over [kept, new] returns them.
            let order = merged.indices.sorted { merged[$0].score != merged[$1].score ? merged[$0].score > merged[$1].score : $0 < $1 }
            finished = order.prefix(beams).map { merged[$0] }
        }

        // The best B continuations that did not finish go on.
        let adjusted = top.indices.map { top[$0].score + (hits[$0] ? -1.0e9 : 0) }
        let next = top.indices.sorted { adjusted[$0] != adjusted[$1] ? adjusted[$0] > adjusted[$1] : $0 < $1 }.prefix(beams)
        let parents = next.map { top[$0].beam }
        let oldRows = rows
        rows = parents.map { oldRows[$0] }
        running = next.map { running[top[$0].beam] + [top[$0].token] }
        runningScores = next.map { adjusted[$0] }
        feed = next.map { top[$0].token }
        generated += 1

        if improvementPossible {
            let best = runningScores[0] / Float(pow(Double(generated), penalty))
            let worst: Float = finished.count == beams ? finished.map(\.score).min()! : -1.0e9
            improvementPossible = best > worst
        }
        if !improvementPossible || (settings.earlyStopping && finished.count == beams) || lastStep { done = true }
        if done { rows = [] }
    }
}
