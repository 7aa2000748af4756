/// What a job asks for. `blend` is today's job (rank every candidate, then optionally fuse); the
/// others are LLM-Blender's other entry points (spec §2.3–2.5, `compare_conversations`).
public enum JobTask: String, Sendable, Codable, CaseIterable {
    case blend
    /// Judge (A, B) pairs: `Blender.compare` / TRL's `PairRMJudge`.
    case compare
    /// `get_best_of_n` / `get_worst_of_n`.
    case bestOfN = "best_of_n"
    case worstOfN = "worst_of_n"
    /// `rank_with_ref`: one scalar reward per candidate against a reference.
    case reward

    /// The CloudEvents `type` of a completed job of this kind. A blend job keeps the type it always
    /// had; failed and rejected jobs of every kind keep `blend.job.failed` / `blend.job.rejected`.
    public var completedEventType: String {
        self == .blend ? JobStatus.completed.eventType : "blend.job.\(rawValue).completed"
    }

    /// The top-level fields that belong to this kind only (the common ones are `job_id`,
    /// `instruction`, `input`, `metadata` and `task`).
    public var ownFields: Set<String> {
        switch self {
        case .blend: ["candidates", "rank", "fuse"]
        case .compare: ["pairs", "conversations", "compare", "rank"]
        case .bestOfN, .worstOfN: ["candidates", "rank", "select"]
        case .reward: ["candidates", "reward", "rank"]
        }
    }

    /// Every kind-specific field, for telling a field of another kind from an unknown one.
    public static let kindFields: Set<String> = allCases.reduce(into: []) { $0.formUnion($1.ownFields) }

    /// The kinds a kind-specific field belongs to, for messages.
    public static func kinds(owning field: String) -> [JobTask] { allCases.filter { $0.ownFields.contains(field) } }
}

/// How `best_of_n` / `worst_of_n` choose (spec §2.3).
public enum SelectMethod: String, Sendable, Codable, CaseIterable {
    /// The seeded single-pass bubble tournament: 2(N−1) forward passes.
    case bubble
    /// The full matrix, N(N−1) forward passes, then the MaxLogits top-1 (or bottom-1).
    case full
}

extension BlendJob {
    /// One (A, B) pair of a compare job.
    public struct ComparePair: Sendable, Equatable, Codable {
        public var a: String
        public var b: String
        public init(a: String, b: String) { self.a = a; self.b = b }
    }

    /// Two conversations that share their user turns, judged as `compare_conversations` does.
    public struct ConversationPair: Sendable, Equatable, Codable {
        public var a: [ConversationTurn]
        public var b: [ConversationTurn]
        public init(a: [ConversationTurn], b: [ConversationTurn]) { self.a = a; self.b = b }
    }

    public struct CompareOptions: Sendable, Equatable, Codable {
        public var mode: CompareMode
        public init(mode: CompareMode = .both) { self.mode = mode }
    }

    public struct SelectOptions: Sendable, Equatable, Codable {
        public var method: SelectMethod
        public init(method: SelectMethod = .bubble) { self.method = method }
    }

    /// The reference of a reward job: a candidate picked by a rule, or a text of the job's own.
    public enum RewardReference: Sendable, Equatable {
        case mode(ReferenceMode)
        case text(String)
    }

    public struct RewardOptions: Sendable, Equatable, Codable {
        public var reference: RewardReference
        public init(reference: RewardReference = .mode(.longest)) { self.reference = reference }

        enum CodingKeys: String, CodingKey { case reference, referenceText = "reference_text" }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            if let text = try c.decodeIfPresent(String.self, forKey: .referenceText) {
                reference = .text(text)
            } else {
                reference = .mode(try c.decodeIfPresent(ReferenceMode.self, forKey: .reference) ?? .longest)
            }
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            switch reference {
            case .mode(let m): try c.encode(m, forKey: .reference)
            case .text(let t): try c.encode(t, forKey: .referenceText)
            }
        }
    }

    /// One pair to judge with the source it is judged against.
    public struct CompareItem: Sendable, Equatable {
        public var source: String
        public var a: String
        public var b: String
        public init(source: String, a: String, b: String) { self.source = source; self.a = a; self.b = b }
    }

    /// The pairs of a compare job with their sources: instruction + input for `pairs` (joined without a
    /// separator, as the reference joins them), the flattened conversation for `conversations`.
    /// A conversation that cannot be flattened is left out; the validator never lets one through.
    public var compareItems: [CompareItem] {
        if let conversations {
            return conversations.compactMap { pair in
                guard case .success(let flat) = ConversationFlattening.flatten(a: pair.a, b: pair.b) else { return nil }
                return CompareItem(source: flat.instruction + flat.input, a: flat.a, b: flat.b)
            }
        }
        return (pairs ?? []).map { CompareItem(source: instruction + input, a: $0.a, b: $0.b) }
    }
}
