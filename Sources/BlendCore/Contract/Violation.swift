/// One way a job breaks the contract. `code` is for machines (DLQ headers, metrics, tests);
/// `message` is one sentence for people, naming the field, the limit and the value seen.
public struct Violation: Sendable, Equatable, Codable, CustomStringConvertible {
    public enum Code: String, Sendable, Codable, CaseIterable {
        case notJSON = "not_json"
        case invalidUTF8 = "invalid_utf8"
        case notObject = "not_object"
        case missingField = "missing_field"
        case unknownField = "unknown_field"
        case wrongType = "wrong_type"
        case invalidJobId = "invalid_job_id"
        case tooFewCandidates = "too_few_candidates"
        case tooManyCandidates = "too_many_candidates"
        case emptyText = "empty_text"
        case textTooLarge = "text_too_large"
        case jobTooLarge = "job_too_large"
        case metadataTooLarge = "metadata_too_large"
        case unknownRankMode = "unknown_rank_mode"
        /// `rank.model` names no ranker this worker serves (or is no valid name).
        case unknownRanker = "unknown_ranker"
        case topKOutOfRange = "top_k_out_of_range"
        case optionOutOfRange = "option_out_of_range"
        /// U+0000 in a text or metadata string: PostgreSQL text and jsonb cannot store it.
        case nulCharacter = "nul_character"
        /// A `\\u` escape of half a UTF-16 surrogate pair: no character, so no valid UTF-8 either.
        case loneSurrogate = "lone_surrogate"
        /// An object key written twice: parsers disagree on which one counts.
        case duplicateField = "duplicate_field"
        /// Arrays and objects nested deeper than `JobLimits.maxNestingDepth`.
        case nestingTooDeep = "nesting_too_deep"
    }

    public var code: Code
    /// Where in the document, e.g. `candidates[3].text`; empty for the whole message.
    public var path: String
    public var message: String

    public init(_ code: Code, at path: String, _ message: String) {
        self.code = code
        self.path = path
        self.message = message
    }

    public var description: String { path.isEmpty ? "\(code.rawValue): \(message)" : "\(code.rawValue) at \(path): \(message)" }
}

/// A job that was refused, with every violation found (not just the first).
public struct JobRejection: Error, Sendable, Equatable, CustomStringConvertible {
    /// The job id when one could be read, even if the rest of the job is invalid.
    public var jobId: String?
    public var violations: [Violation]

    public var description: String {
        let id = jobId.map { "job \($0)" } ?? "job without a readable job_id"
        return "\(id) rejected: " + violations.map(\.description).joined(separator: "; ")
    }
}
