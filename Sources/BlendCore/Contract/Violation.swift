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
        /// `task` names no job kind.
        case unknownTask = "unknown_task"
        /// A field of another job kind, e.g. `fuse` in a compare job.
        case fieldNotForTask = "field_not_for_task"
        /// Two fields given where one or the other is meant (`pairs` and `conversations`,
        /// `reward.reference` and `reward.reference_text`).
        case conflictingFields = "conflicting_fields"
        /// A compare job without a pair to judge (no or empty `pairs` / `conversations`).
        case noPairs = "no_pairs"
        case tooManyPairs = "too_many_pairs"
        case unknownCompareMode = "unknown_compare_mode"
        case unknownSelectMethod = "unknown_select_method"
        case unknownReferenceMode = "unknown_reference_mode"
        /// Conversations `compare_conversations` cannot flatten (`ConversationProblem.Kind`).
        case conversationEmpty = "conversation_empty"
        case conversationEmptyTurn = "conversation_empty_turn"
        case conversationNotAlternating = "conversation_not_alternating"
        case conversationTurnCountsDiffer = "conversation_turn_counts_differ"
        case conversationUserTurnsDiffer = "conversation_user_turns_differ"
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
