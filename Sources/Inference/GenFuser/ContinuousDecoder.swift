import BlendCore
import Foundation

/// A decoding session whose batch changes between steps: jobs are submitted at any time, join the
/// running batch at the next step (their prompts encoded then, a bounded number of tokens per step so
/// a burst of long prompts does not stall the running rows for long), and leave it the step they finish.
///
/// A job decodes exactly as `T5Generator.generate` decodes it alone: the encoder and every decoder product
/// treat sequences and rows as independent items (see `BitExactnessTests`), and each job keeps its own
/// `DecodingJob` (beams, scores, settings, stopping rules, random generator). Not thread-safe: one caller
/// drives `submit` and `step`.
public final class ContinuousDecoder {
    public let model: T5Model
    /// Rows (greedy sequences and beams) the running batch may hold; a job reserves `numBeams` rows.
    /// A job larger than the budget still runs, alone.
    public let maxRows: Int
    /// Prompt tokens encoded before one step; at least one waiting prompt is encoded when there is room.
    public let encodeTokensPerStep: Int

    private struct Waiting {
        let tag: Int
        let prompt: [Int]
        let settings: GenerationSettings
    }

    private struct Running {
        let tag: Int
        let slot: Int
        var job: DecodingJob
    }

    private var waiting: [Waiting] = []
    private var waitingHead = 0
    private var running: [Running] = []
    /// Encoded sources by slot; a finished job's slot is emptied and reused.
    private var sources: [T5Model.EncodedSource] = []
    private var freeSlots: [Int] = []
    private var reservedRows = 0
    /// Decoder steps taken and rows fed over them (their ratio is the mean batch), and the seconds spent
    /// encoding prompts, in decoder passes and in choosing tokens (for benchmarks).
    public private(set) var steps = 0
    public private(set) var rowSteps = 0
    public private(set) var encodeSeconds = 0.0, decodeSeconds = 0.0, chooseSeconds = 0.0

    public init(model: T5Model, maxRows: Int = 64, encodeTokensPerStep: Int = 2048) {
        self.model = model
        self.maxRows = max(1, maxRows)
        self.encodeTokensPerStep = max(1, encodeTokensPerStep)
    }

    /// Jobs submitted and not yet finished.
    public var unfinishedCount: Int { running.count + waiting.count - waitingHead }
    public var isIdle: Bool { unfinishedCount == 0 }
    /// Jobs in the running batch (encoded, decoding).
    public var runningCount: Int { running.count }

    /// Queues a job; `tag` names it in `step`'s results. The settings must be valid (`problem == nil`).
    public func submit(tag: Int, prompt: [Int], settings: GenerationSettings) {
        precondition(settings.problem == nil, settings.problem ?? "")
        waiting.append(Waiting(tag: tag, prompt: prompt, settings: settings))
    }

    /// Admits waiting jobs that fit, then feeds one token to every running row. Returns the jobs that
    /// finished at this step, in the order they joined.
    public func step() -> [(tag: Int, sequence: GeneratedSequence)] {
        let t0 = Date()
        admit()
        encodeSeconds += Date().timeIntervalSince(t0)
        guard !running.isEmpty else { return [] }
        var rows: [T5Model.DecoderRow] = []
        var tokens: [Int] = []
        var ranges: [Range<Int>] = []
        for i in running.indices {
            ranges.append(rows.count..<(rows.count + running[i].job.rows.count))
            rows += running[i].job.rows
            tokens += running[i].job.feed
            running[i].job.rows = []  // the step's array holds the only reference: appending to the caches does not copy them
        }
        steps += 1
        rowSteps += rows.count
        let t1 = Date()
        let logits = model.decodeStep(&rows, tokens: tokens, sources: sources)
        decodeSeconds += Date().timeIntervalSince(t1)
        let t2 = Date()
        defer { chooseSeconds += Date().timeIntervalSince(t2) }
        let vocabulary = model.configuration.vocabularySize
        for (i, range) in ranges.enumerated() { running[i].job.rows = Array(rows[range]) }
        _ = running.withUnsafeMutableBufferPointer { entries in
            DecodingJob.advanceAll(logits, rows: ranges) { i, rowLogits in entries[i].job.advance(logits: rowLogits, vocabulary: vocabulary) }
        }
        var finished: [(tag: Int, sequence: GeneratedSequence)] = []
        var kept: [Running] = []
        kept.reserveCapacity(running.count)
        for entry in running {
            if entry.job.done {
                finished.append((entry.tag, entry.job.result))
                release(entry)
            } else {
                kept.append(entry)
            }
        }
        running = kept
        return finished
    }

    /// Encodes waiting jobs in arrival order while they fit the row budget and this step's token budget.
    private func admit() {
        var chosen: [Waiting] = []
        var tokens = 0
        while waitingHead < waiting.count {
            let next = waiting[waitingHead]
            let fitsRows = reservedRows + next.settings.numBeams <= maxRows || (running.isEmpty && chosen.isEmpty)
            let fitsTokens = chosen.isEmpty || tokens + next.prompt.count <= encodeTokensPerStep
            guard fitsRows, fitsTokens else { break }
            chosen.append(next)
            tokens += next.prompt.count
            reservedRows += next.settings.numBeams
            waitingHead += 1
        }
        if waitingHead > 64 && waitingHead * 2 > waiting.count {
            waiting.removeFirst(waitingHead)
            waitingHead = 0
        }
        guard !chosen.isEmpty else { return }
        let encoded = model.encodeSources(chosen.map(\.prompt))
        let start = model.configuration.decoderStartId, eos = model.configuration.eosId
        for (entry, source) in zip(chosen, encoded) {
            let slot: Int
            if let free = freeSlots.popLast() {
                slot = free
                sources[slot] = source
            } else {
                slot = sources.count
                sources.append(source)
            }
            running.append(Running(tag: entry.tag, slot: slot,
                                   job: DecodingJob(settings: entry.settings, eos: eos, rows: [model.makeRow(source: slot)], feed: [start])))
        }
    }

    private func release(_ entry: Running) {
        sources[entry.slot] = T5Model.EncodedSource()
        freeSlots.append(entry.slot)
        reservedRows -= entry.job.settings.numBeams
    }
}
