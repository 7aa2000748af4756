import BlendCore

/// A fusion session driven one step at a time: requests join between steps and each leaves with its
/// result the step it finishes, so fusions of different micro-batches decode together and a short one
/// never waits for a long one. Not thread-safe: one caller drives it.
public protocol SteppedFusionSession: AnyObject {
    /// Queues a request; `tag` names it in `step`'s results.
    func submit(tag: Int, request: FuseRequest)
    /// Advances every running request once; returns those that finished (failed ones included).
    func step() -> [(tag: Int, result: Result<FuseOutcome, FusionError>)]
    /// Requests submitted and not yet returned by `step`.
    var unfinishedCount: Int { get }
}

/// A fuser that can decode continuously (see `SteppedFusionSession`).
public protocol SteppedFuser: CandidateFuser {
    /// `maxRows`: rows (sequences and beams) the running batch may hold, where the fuser decodes in batches.
    func makeSession(maxRows: Int) -> any SteppedFusionSession
}

/// GenFuser's session: prompts built as `fuseNow` builds them, decoded by a `ContinuousDecoder`.
public final class GenFuserSession: SteppedFusionSession {
    public let fuser: GenFuser
    public let decoder: ContinuousDecoder
    /// Requests that failed before decoding (bad settings or prompt), answered at the next step.
    private var failed: [(tag: Int, result: Result<FuseOutcome, FusionError>)] = []

    public init(fuser: GenFuser, maxRows: Int, encodeTokensPerStep: Int = 2048) {
        self.fuser = fuser
        decoder = ContinuousDecoder(model: fuser.model, maxRows: maxRows, encodeTokensPerStep: encodeTokensPerStep)
    }

    public var unfinishedCount: Int { decoder.unfinishedCount + failed.count }

    public func submit(tag: Int, request: FuseRequest) {
        switch fuser.prepare(request) {
        case .success(let prepared): decoder.submit(tag: tag, prompt: prepared.ids, settings: prepared.settings)
        case .failure(let error): failed.append((tag, .failure(error)))
        }
    }

    public func step() -> [(tag: Int, result: Result<FuseOutcome, FusionError>)] {
        var results = failed
        failed = []
        for (tag, sequence) in decoder.step() {
            results.append((tag, .success(FuseOutcome(text: fuser.tokenizer.decode(sequence.tokens), generatedTokens: sequence.tokens.count))))
        }
        return results
    }
}

extension GenFuser: SteppedFuser {
    public func makeSession(maxRows: Int) -> any SteppedFusionSession {
        GenFuserSession(fuser: self, maxRows: maxRows)
    }
}

/// The top-1 fuser's session: every request is answered at the next step.
public final class TopCandidateSession: SteppedFusionSession {
    private let fuser: TopCandidateFuser
    private var queued: [(tag: Int, request: FuseRequest)] = []

    public init(fuser: TopCandidateFuser) { self.fuser = fuser }

    public var unfinishedCount: Int { queued.count }

    public func submit(tag: Int, request: FuseRequest) { queued.append((tag, request)) }

    public func step() -> [(tag: Int, result: Result<FuseOutcome, FusionError>)] {
        defer { queued = [] }
        return queued.map { ($0.tag, fuser.fuseOne($0.request)) }
    }
}

extension TopCandidateFuser: SteppedFuser {
    public func makeSession(maxRows: Int) -> any SteppedFusionSession { TopCandidateSession(fuser: self) }
}
