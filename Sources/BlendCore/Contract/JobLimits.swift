/// Limits applied when a job is validated. Defaults are sized for PairRM (≈2k-token pairs) and
/// GenFuser on CPU; operators change them in the configuration.
public struct JobLimits: Sendable, Equatable, Codable {
    /// Candidates a job may carry (the minimum is always 2: there is nothing to rank below that).
    public var maxCandidates: Int = 64
    /// UTF-8 bytes of one text: the instruction, the input, or one candidate.
    public var maxTextBytes: Int = 64 * 1024
    /// UTF-8 bytes of the whole message.
    public var maxJobBytes: Int = 1024 * 1024
    /// UTF-8 bytes of the encoded `metadata` object.
    public var maxMetadataBytes: Int = 16 * 1024
    /// Length of a candidate's `model` name.
    public var maxModelNameLength: Int = 128
    /// Upper bound of `fuse.top_k` (also capped by the number of candidates).
    public var maxTopK: Int = 8
    public var maxNewTokens: Int = 1024
    public var maxBeams: Int = 8
    /// Pairs (or conversation pairs) a compare job may judge.
    public var maxPairs: Int = 256

    public static let minCandidates = 2
    public static let maxJobIdLength = 128
    /// Levels of arrays and objects a job may nest (the job object is level 1, `metadata` level 2).
    public static let maxNestingDepth = 64

    public init() {}

    enum CodingKeys: String, CodingKey {
        case maxCandidates = "max_candidates", maxTextBytes = "max_text_bytes", maxJobBytes = "max_job_bytes"
        case maxMetadataBytes = "max_metadata_bytes", maxModelNameLength = "max_model_name_length"
        case maxTopK = "max_top_k", maxNewTokens = "max_new_tokens", maxBeams = "max_beams", maxPairs = "max_pairs"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = JobLimits.defaults
        maxCandidates = try c.decodeIfPresent(Int.self, forKey: .maxCandidates) ?? d.maxCandidates
        maxTextBytes = try c.decodeIfPresent(Int.self, forKey: .maxTextBytes) ?? d.maxTextBytes
        maxJobBytes = try c.decodeIfPresent(Int.self, forKey: .maxJobBytes) ?? d.maxJobBytes
        maxMetadataBytes = try c.decodeIfPresent(Int.self, forKey: .maxMetadataBytes) ?? d.maxMetadataBytes
        maxModelNameLength = try c.decodeIfPresent(Int.self, forKey: .maxModelNameLength) ?? d.maxModelNameLength
        maxTopK = try c.decodeIfPresent(Int.self, forKey: .maxTopK) ?? d.maxTopK
        maxNewTokens = try c.decodeIfPresent(Int.self, forKey: .maxNewTokens) ?? d.maxNewTokens
        maxBeams = try c.decodeIfPresent(Int.self, forKey: .maxBeams) ?? d.maxBeams
        maxPairs = try c.decodeIfPresent(Int.self, forKey: .maxPairs) ?? d.maxPairs
    }

    public static let defaults = JobLimits()
}
