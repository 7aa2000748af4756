/// A blend job as it travels on the jobs topic (key = `jobId`, value = this as UTF-8 JSON).
/// Build one from bytes with `JobValidator`; encoding it gives the wire format back.
public struct BlendJob: Sendable, Equatable, Codable {
    public struct Candidate: Sendable, Equatable, Codable {
        public var model: String
        public var text: String
        public init(model: String, text: String) { self.model = model; self.text = text }
    }

    public struct RankOptions: Sendable, Equatable, Codable {
        public var mode: RankMode
        /// Seeds the bubble order so results reproduce; derived from the job id when absent.
        public var seed: UInt64?
        /// The named ranker (`models.rankers`) to rank with; nil: the worker's default ranker.
        public var model: String?
        public init(mode: RankMode = .maxLogits, seed: UInt64? = nil, model: String? = nil) {
            self.mode = mode; self.seed = seed; self.model = model
        }

        enum CodingKeys: String, CodingKey { case mode, seed, model }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            mode = try c.decodeIfPresent(RankMode.self, forKey: .mode) ?? .maxLogits
            seed = try c.decodeIfPresent(UInt64.self, forKey: .seed)
            model = try c.decodeIfPresent(String.self, forKey: .model)
        }

        /// `rank` of the other kinds: no mode (they choose with their own options); the bubble seed of a
        /// best/worst-of-n job, and the named ranker.
        struct WithoutMode: Encodable {
            var seed: UInt64?
            var model: String?
            var isEmpty: Bool { seed == nil && model == nil }
        }
    }

    /// Generation settings of the fuser; defaults are the reference's (4 beams, 128 new tokens).
    public struct FuseOptions: Sendable, Equatable, Codable {
        public var topK: Int = 3
        public var maxNewTokens: Int = 128
        public var minNewTokens: Int = 0
        public var numBeams: Int = 4
        public var lengthPenalty: Double = 1.0
        public var earlyStopping: Bool = false
        public var doSample: Bool = false
        public var temperature: Double = 1.0
        public var topP: Double = 1.0
        /// Sampling's top-k filter (0 = off); not to be confused with `topK`, the candidates fused.
        public var sampleTopK: Int = 0
        public var seed: UInt64?

        public init() {}

        enum CodingKeys: String, CodingKey, CaseIterable {
            case topK = "top_k", maxNewTokens = "max_new_tokens", minNewTokens = "min_new_tokens"
            case numBeams = "num_beams", lengthPenalty = "length_penalty", earlyStopping = "early_stopping"
            case doSample = "do_sample", temperature, topP = "top_p", sampleTopK = "sample_top_k", seed
        }
    }

    public var jobId: String
    /// What the job asks for; `blend` when the job does not say.
    public var task: JobTask = .blend
    public var instruction: String
    public var input: String
    public var candidates: [Candidate]
    public var rank: RankOptions
    /// nil when the job asked for ranking only (`"fuse": false`).
    public var fuse: FuseOptions?
    /// Exactly as the job wrote it (numbers keep their literal text).
    public var metadata: ExactJSON?
    /// `compare`: the pairs to judge (or `conversations`), and the mode.
    public var pairs: [ComparePair]?
    public var conversations: [ConversationPair]?
    public var compare: CompareOptions?
    /// `best_of_n` / `worst_of_n`: how to choose.
    public var select: SelectOptions?
    /// `reward`: the reference.
    public var reward: RewardOptions?

    public init(jobId: String, instruction: String, input: String = "", candidates: [Candidate],
                rank: RankOptions = RankOptions(), fuse: FuseOptions? = FuseOptions(), metadata: ExactJSON? = nil) {
        self.jobId = jobId
        self.instruction = instruction
        self.input = input
        self.candidates = candidates
        self.rank = rank
        self.fuse = fuse
        self.metadata = metadata
    }

    /// The bubble order seed: the job's own, or one derived from its id (FNV-1a) so that a
    /// redelivered job is ranked the same way.
    public var effectiveSeed: UInt64 {
        rank.seed ?? FNV1a.hash(jobId.utf8)
    }

    /// A job of another kind than blend: no fusion, and only the fields of its kind.
    public init(jobId: String, task: JobTask, instruction: String = "", input: String = "", candidates: [Candidate] = [],
                rank: RankOptions = RankOptions(), pairs: [ComparePair]? = nil, conversations: [ConversationPair]? = nil,
                compare: CompareOptions? = nil, select: SelectOptions? = nil, reward: RewardOptions? = nil,
                metadata: ExactJSON? = nil) {
        self.init(jobId: jobId, instruction: instruction, input: input, candidates: candidates, rank: rank,
                  fuse: task == .blend ? FuseOptions() : nil, metadata: metadata)
        self.task = task
        self.pairs = pairs
        self.conversations = conversations
        self.compare = compare
        self.select = select
        self.reward = reward
    }

    enum CodingKeys: String, CodingKey {
        case jobId = "job_id", task, instruction, input, candidates, rank, fuse, metadata
        case pairs, conversations, compare, select, reward
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        jobId = try c.decode(String.self, forKey: .jobId)
        task = try c.decodeIfPresent(JobTask.self, forKey: .task) ?? .blend
        instruction = try c.decodeIfPresent(String.self, forKey: .instruction) ?? ""
        input = try c.decodeIfPresent(String.self, forKey: .input) ?? ""
        candidates = try c.decodeIfPresent([Candidate].self, forKey: .candidates) ?? []
        rank = try c.decodeIfPresent(RankOptions.self, forKey: .rank) ?? RankOptions()
        if task != .blend || (try? c.decode(Bool.self, forKey: .fuse)) == false {
            fuse = nil
        } else {
            fuse = try c.decodeIfPresent(FuseOptions.self, forKey: .fuse) ?? FuseOptions()
        }
        metadata = try c.decodeIfPresent(ExactJSON.self, forKey: .metadata)
        pairs = try c.decodeIfPresent([ComparePair].self, forKey: .pairs)
        conversations = try c.decodeIfPresent([ConversationPair].self, forKey: .conversations)
        compare = try c.decodeIfPresent(CompareOptions.self, forKey: .compare)
        select = try c.decodeIfPresent(SelectOptions.self, forKey: .select)
        reward = try c.decodeIfPresent(RewardOptions.self, forKey: .reward)
    }

    /// A blend job encodes as it always did (no `task` field); other kinds write only their own fields.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(jobId, forKey: .jobId)
        if task != .blend { try c.encode(task, forKey: .task) }
        if task == .blend || !instruction.isEmpty { try c.encode(instruction, forKey: .instruction) }
        if !input.isEmpty { try c.encode(input, forKey: .input) }
        switch task {
        case .blend:
            try c.encode(candidates, forKey: .candidates)
            try c.encode(rank, forKey: .rank)
            if let fuse { try c.encode(fuse, forKey: .fuse) } else { try c.encode(false, forKey: .fuse) }
        case .compare:
            try c.encodeIfPresent(pairs, forKey: .pairs)
            try c.encodeIfPresent(conversations, forKey: .conversations)
            try c.encodeIfPresent(compare, forKey: .compare)
            if let model = rank.model { try c.encode(RankOptions.WithoutMode(model: model), forKey: .rank) }
        case .bestOfN, .worstOfN:
            try c.encode(candidates, forKey: .candidates)
            let options = RankOptions.WithoutMode(seed: rank.seed, model: rank.model)
            if !options.isEmpty { try c.encode(options, forKey: .rank) }
            try c.encodeIfPresent(select, forKey: .select)
        case .reward:
            try c.encode(candidates, forKey: .candidates)
            try c.encodeIfPresent(reward, forKey: .reward)
            if let model = rank.model { try c.encode(RankOptions.WithoutMode(model: model), forKey: .rank) }
        }
        try c.encodeIfPresent(metadata, forKey: .metadata)
    }
}

extension BlendJob.FuseOptions {
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = BlendJob.FuseOptions()
        topK = try c.decodeIfPresent(Int.self, forKey: .topK) ?? d.topK
        maxNewTokens = try c.decodeIfPresent(Int.self, forKey: .maxNewTokens) ?? d.maxNewTokens
        minNewTokens = try c.decodeIfPresent(Int.self, forKey: .minNewTokens) ?? d.minNewTokens
        numBeams = try c.decodeIfPresent(Int.self, forKey: .numBeams) ?? d.numBeams
        lengthPenalty = try c.decodeIfPresent(Double.self, forKey: .lengthPenalty) ?? d.lengthPenalty
        earlyStopping = try c.decodeIfPresent(Bool.self, forKey: .earlyStopping) ?? d.earlyStopping
        doSample = try c.decodeIfPresent(Bool.self, forKey: .doSample) ?? d.doSample
        temperature = try c.decodeIfPresent(Double.self, forKey: .temperature) ?? d.temperature
        topP = try c.decodeIfPresent(Double.self, forKey: .topP) ?? d.topP
        sampleTopK = try c.decodeIfPresent(Int.self, forKey: .sampleTopK) ?? d.sampleTopK
        seed = try c.decodeIfPresent(UInt64.self, forKey: .seed)
    }
}
