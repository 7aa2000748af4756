import BlendCore
import Dispatch
import Foundation

/// GenFuser behind the `CandidateFuser` API: builds each job's prompt, decodes all jobs of a call
/// together (each with its own beams and limits) and decodes the output with special tokens skipped.
/// A job whose prompt or settings are bad fails alone.
public final class GenFuser: CandidateFuser {
    public let model: T5Model
    public let tokenizer: Tokenizer
    public let promptBuilder: FusionPromptBuilder
    public let generator: T5Generator
    public let label: String
    /// Jobs decoded in one batch; more are decoded in successive batches.
    public let maxJobsPerBatch: Int
    private let queue = DispatchQueue(label: "blendd.genfuser")

    /// `precision` other than fp32 appears in the label (`+bf16`, `+int8`), so results say how they were computed.
    public init(directory: String, maxJobsPerBatch: Int = 8, precision: ModelPrecision = .fp32) throws {
        let store = try WeightStore.open(directory: directory)
        model = try T5Model(configuration: try T5Configuration.load(directory: directory), store: store, precision: precision)
        tokenizer = try Tokenizer.load(directory: directory)
        guard tokenizer.family == .t5 else {
            throw CheckpointError.config(path: directory, reason: "GenFuser needs a T5 tokenizer (spiece.model), found \(tokenizer.family.rawValue)")
        }
        if tokenizer.count > model.configuration.vocabularySize {
            throw CheckpointError.config(path: directory, reason: "the tokenizer has \(tokenizer.count) ids but the model only \(model.configuration.vocabularySize)")
        }
        promptBuilder = FusionPromptBuilder(tokenizer: tokenizer)
        generator = T5Generator(model: model)
        self.maxJobsPerBatch = max(1, maxJobsPerBatch)
        label = "genfuser:" + WeightStore.label(directory: directory, store: store) + (precision == .fp32 ? "" : "+" + precision.rawValue)
    }

    /// A fuser over a model built elsewhere (benchmarks on random weights); `label` names it in results.
    public init(model: T5Model, tokenizer: Tokenizer, label: String, maxJobsPerBatch: Int = 8) throws {
        guard tokenizer.family == .t5, tokenizer.count <= model.configuration.vocabularySize else {
            throw CheckpointError.config(path: label, reason: "GenFuser needs a T5 tokenizer of at most \(model.configuration.vocabularySize) ids")
        }
        self.model = model
        self.tokenizer = tokenizer
        promptBuilder = FusionPromptBuilder(tokenizer: tokenizer)
        generator = T5Generator(model: model)
        self.maxJobsPerBatch = max(1, maxJobsPerBatch)
        self.label = label
    }

    public func fuse(_ requests: [FuseRequest]) async -> [Result<FuseOutcome, FusionError>] {
        await withCheckedContinuation { continuation in
            queue.async { continuation.resume(returning: self.fuseNow(requests)) }
        }
    }

    /// `fuse` on the calling thread; `onText(request index, text so far)` streams greedy jobs.
    public func fuseNow(_ requests: [FuseRequest], onText: ((Int, String) -> Void)? = nil) -> [Result<FuseOutcome, FusionError>] {
        var results = [Result<FuseOutcome, FusionError>?](repeating: nil, count: requests.count)
        var ready: [(index: Int, ids: [Int], settings: GenerationSettings)] = []
        for (i, request) in requests.enumerated() {
            switch prepare(request) {
            case .success(let prepared): ready.append((i, prepared.ids, prepared.settings))
            case .failure(let error): results[i] = .failure(error)
            }
        }
        for start in stride(from: 0, to: ready.count, by: maxJobsPerBatch) {
            let batch = Array(ready[start..<min(start + maxJobsPerBatch, ready.count)])
            var streamed = [[Int]](repeating: [], count: batch.count)
            let outputs = generator.generate(batch.map(\.ids), settings: batch.map(\.settings), onToken: onText.map { callback in
                { job, token in
                    streamed[job].append(token)
                    callback(batch[job].index, self.tokenizer.decode(streamed[job]))
                }
            })
            for (entry, output) in zip(batch, outputs) {
                results[entry.index] = .success(FuseOutcome(text: tokenizer.decode(output.tokens), generatedTokens: output.tokens.count))
            }
        }
        return results.map { $0! }
    }

    /// A request's prompt ids and decoding settings, or why it cannot be decoded.
    public func prepare(_ request: FuseRequest) -> Result<(ids: [Int], settings: GenerationSettings), FusionError> {
        // Sampling without a seed of the job's own: one derived from its id, so a redelivery samples alike.
        let settings = GenerationSettings(options: request.options, seed: FNV1a.hash(request.jobId.utf8))
        if let problem = settings.problem {
            return .failure(FusionError(jobId: request.jobId, message: problem))
        }
        guard !request.candidates.isEmpty else {
            return .failure(FusionError(jobId: request.jobId, message: "no candidates were selected for fusion"))
        }
        do {
            return .success((try promptBuilder.inputIds(instruction: request.instruction, input: request.input, candidates: request.candidates), settings))
        } catch {
            return .failure(FusionError(jobId: request.jobId, message: "cannot tokenize the fusion prompt: \(error)"))
        }
    }

}
