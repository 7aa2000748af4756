import BlendCore

/// One job's fusion question: the top-k candidates, best first.
public struct FuseRequest: Sendable, Equatable {
    public var jobId: String
    public var instruction: String
    public var input: String
    /// Texts of the selected candidates in rank order (best first).
    public var candidates: [String]
    public var options: BlendJob.FuseOptions

    public init(jobId: String, instruction: String, input: String, candidates: [String], options: BlendJob.FuseOptions) {
        self.jobId = jobId
        self.instruction = instruction
        self.input = input
        self.candidates = candidates
        self.options = options
    }
}

public struct FuseOutcome: Sendable, Equatable {
    public var text: String
    /// Tokens the fuser generated (0 when nothing was generated).
    public var generatedTokens: Int

    public init(text: String, generatedTokens: Int) {
        self.text = text
        self.generatedTokens = generatedTokens
    }
}

public struct FusionError: Error, Sendable, Equatable, CustomStringConvertible {
    public var jobId: String
    public var message: String

    public init(jobId: String, message: String) {
        self.jobId = jobId
        self.message = message
    }

    public var description: String { "fusing job \(jobId) failed: \(message)" }
}

/// Fuses the candidates of many jobs at once, so a model can decode them in shared batches.
public protocol CandidateFuser: Sendable {
    /// Names the fuser in results and events.
    var label: String { get }
    /// One result per request, in order.
    func fuse(_ requests: [FuseRequest]) async -> [Result<FuseOutcome, FusionError>]
}

/// Used when no GenFuser checkpoint is configured: the fused text is the best-ranked
/// candidate, unchanged, and the label says so.
public struct TopCandidateFuser: CandidateFuser {
    public let label = "top1"

    public init() {}

    public func fuse(_ requests: [FuseRequest]) async -> [Result<FuseOutcome, FusionError>] {
        requests.map(fuseOne)
    }

    public func fuseOne(_ request: FuseRequest) -> Result<FuseOutcome, FusionError> {
        guard let best = request.candidates.first else {
            return .failure(FusionError(jobId: request.jobId, message: "no candidates were selected for fusion"))
        }
        return .success(FuseOutcome(text: best, generatedTokens: 0))
    }
}
