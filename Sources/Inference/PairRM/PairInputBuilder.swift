/// One ordered pair as the encoder reads it:
/// `[CLS] <|source|> src… [SEP] [CLS] <|candidate1|> left… [SEP] [CLS] <|candidate2|> right… [SEP]`,
/// with the positions of the three markers, whose hidden states feed the head.
public struct PairInput: Sendable, Hashable {
    public var ids: [Int]
    public var sourcePosition: Int
    public var candidate1Position: Int
    public var candidate2Position: Int

    public init(ids: [Int], sourcePosition: Int, candidate1Position: Int, candidate2Position: Int) {
        self.ids = ids
        self.sourcePosition = sourcePosition
        self.candidate1Position = candidate1Position
        self.candidate2Position = candidate2Position
    }
}

/// Builds PairRM inputs (spec §1.4) with two deliberate differences from the reference:
///
/// - **Per-job budget.** The reference gives candidates 412 + (1224 − Ls) // 2 tokens where Ls is the
///   longest source *in the batch*, so a score can change with the jobs that happen to share a batch.
///   We use the job's own source length (the reference's result for a batch of one, and what its HF
///   `tokenize_pair` helper does). When no candidate is truncated both give identical ids
///   (`Budget.sharedByBatch` reproduces the reference's rule so tests can show it).
/// - **Markers are ids, never text.** The reference prepends the marker *strings* and lets the tokenizer
///   find them, so a prompt containing `<|source|>` or `<|candidate|>` injects a second marker and breaks
///   the head's gather. We tokenize user text with LLM-Blender's markers treated as plain text, insert the
///   marker ids ourselves and read the head's inputs at known positions.
///
/// As in the reference, every literal `[SEP]` in user text becomes a space, truncation keeps the head of
/// each text (right side) and the closing `[SEP]`.
public struct PairInputBuilder: Sendable {
    public enum Budget: Sendable, Equatable {
        case perJob
        /// The reference's rule: the longest source among the jobs encoded together sets every candidate budget.
        case sharedByBatch
    }

    /// One job tokenized once; pairs are assembled from these pieces without tokenizing again.
    public struct EncodedJob: Sendable, Equatable {
        /// `[CLS] <|source|> … [SEP]`, at most `sourceMaxLength` ids.
        public var source: [Int]
        /// Candidate bodies, already cut to `candidateBudget − 3` ids.
        public var candidates: [[Int]]
        /// Ids each candidate segment may use including `[CLS]`, marker and `[SEP]`.
        public var candidateBudget: Int
        /// Whether any text of the job lost tokens to its budget.
        public var truncated: Bool
    }

    let tokenizer: Tokenizer
    let configuration: DebertaConfiguration
    let cls: Int
    let sep: Int

    init(tokenizer: Tokenizer, configuration: DebertaConfiguration) {
        self.tokenizer = tokenizer
        self.configuration = configuration
        cls = tokenizer.prefixIds.first ?? 1
        sep = tokenizer.suffixIds.first ?? 2
    }

    /// Text ids without special-token template and with the markers left as text.
    func body(_ text: String) throws -> [Int] {
        try tokenizer.encode(text.replacingOccurrences(of: "[SEP]", with: " "), addSpecialTokens: false,
                             matchNonSpecialAddedTokens: false)
    }

    /// Tokenizes jobs (source = instruction + input, joined without a separator as the reference does).
    public func encode(_ jobs: [(source: String, candidates: [String])], budget: Budget = .perJob) throws -> [EncodedJob] {
        let sourceMax = configuration.sourceMaxLength
        let sources = try jobs.map { job -> (ids: [Int], cut: Bool) in
            let b = try body(job.source)
            let keep = max(0, sourceMax - 3)
            return ([cls, configuration.sourcePrefixId!] + b.prefix(keep) + [sep], b.count > keep)
        }
        let longest = sources.map(\.ids.count).max() ?? 0
        return try zip(jobs, sources).map { job, source in
            let reference = budget == .perJob ? source.ids.count : longest
            let candidateBudget = configuration.candidateMaxLength + (sourceMax - reference) / 2
            let keep = max(0, candidateBudget - 3)
            var cut = source.cut
            let bodies = try job.candidates.map { text -> [Int] in
                let b = try body(text)
                if b.count > keep { cut = true }
                return Array(b.prefix(keep))
            }
            return EncodedJob(source: source.ids, candidates: bodies, candidateBudget: candidateBudget, truncated: cut)
        }
    }

    /// The ordered pair (left, right) of an encoded job.
    public func pair(_ job: EncodedJob, left: Int, right: Int) -> PairInput {
        let c1 = [cls, configuration.candidate1PrefixId!] + job.candidates[left] + [sep]
        let c2 = [cls, configuration.candidate2PrefixId!] + job.candidates[right] + [sep]
        return PairInput(ids: job.source + c1 + c2, sourcePosition: 1, candidate1Position: job.source.count + 1,
                         candidate2Position: job.source.count + c1.count + 1)
    }
}
