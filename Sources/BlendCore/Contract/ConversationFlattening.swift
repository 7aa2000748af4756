/// One turn of a conversation as the reference's `compare_conversations` takes it:
/// `{"role": "USER" | "ASSISTANT", "content": …}`.
public struct ConversationTurn: Sendable, Equatable, Codable {
    public var role: String
    public var content: String

    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }
}

/// Two conversations turned into the pairwise ranker's text inputs. The source the ranker reads
/// is `instruction + input` with no separator, as the reference's `RankerDataset` builds it.
public struct FlattenedConversationPair: Sendable, Equatable {
    public var instruction: String
    public var input: String
    public var a: String
    public var b: String

    public init(instruction: String, input: String, a: String, b: String) {
        self.instruction = instruction
        self.input = input
        self.a = a
        self.b = b
    }
}

/// Why a pair of conversations cannot be compared. `side` is "a" or "b" when one conversation is
/// at fault; `turn` is the 0-based index of the offending turn.
public struct ConversationProblem: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        case empty
        case emptyTurn = "empty_turn"
        case notAlternating = "not_alternating"
        case turnCountsDiffer = "turn_counts_differ"
        case userTurnsDiffer = "user_turns_differ"
    }

    public var kind: Kind
    public var side: String?
    public var turn: Int?
    public var message: String

    public init(kind: Kind, side: String? = nil, turn: Int? = nil, message: String) {
        self.kind = kind
        self.side = side
        self.turn = turn
        self.message = message
    }

    public var description: String { "\(kind.rawValue): \(message)" }
}

/// `compare_conversations` / `get_pair_from_conv` of llm-blender 0.0.2 (spec "Conversation
/// flattening"): USER turns become the input, ASSISTANT turns the candidates.
///
/// Roles are matched exactly and case-sensitively against "USER" and "ASSISTANT", because the
/// reference asserts `c[i]['role'] == 'USER'` (no `.upper()`): "user" is rejected there too.
/// Problems are checked in the reference's order (A's shape, B's shape, turn counts, user
/// turns), so every conversation the reference rejects is rejected here with the matching kind.
/// Stricter than the reference, on purpose: an empty conversation and a turn with empty
/// content are rejected (the reference would score an empty source or candidate). Those checks
/// come last, so they never hide a problem the reference itself reports.
public enum ConversationFlattening {
    /// The trained prompt; "coversation" is misspelled in the reference and must stay so.
    public static let instruction =
        "Finish the following coversation in each i-th turn by filling in <Response i> with your response."

    static let userRole = "USER"
    static let assistantRole = "ASSISTANT"

    public static func flatten(
        a: [ConversationTurn], b: [ConversationTurn]
    ) -> Result<FlattenedConversationPair, ConversationProblem> {
        if let problem = shapeProblem(a, side: "a") ?? shapeProblem(b, side: "b") {
            return .failure(problem)
        }
        guard a.count == b.count else {
            return .failure(ConversationProblem(
                kind: .turnCountsDiffer,
                message: "conversation a has \(a.count) turns and conversation b has \(b.count); both must have the same number"))
        }
        for i in stride(from: 0, to: a.count, by: 2) where !sameScalars(a[i].content, b[i].content) {
            return .failure(ConversationProblem(
                kind: .userTurnsDiffer, turn: i,
                message: "USER turn \(i) differs between conversation a and conversation b; both must ask the same"))
        }
        if let problem = emptinessProblem(a, side: "a") ?? emptinessProblem(b, side: "b") {
            return .failure(problem)
        }
        return .success(FlattenedConversationPair(
            instruction: instruction,
            input: stride(from: 0, to: a.count, by: 2)
                .map { "USER: " + a[$0].content + "\nAssistant: <Response \($0 / 2 + 1)>" }
                .joined(separator: "\n"),
            a: responses(a), b: responses(b)))
    }

    /// Python compares `str` by code points; Swift's `==` would equate canonically equivalent
    /// strings ("é" and "e\u{301}"), which the reference tells apart.
    private static func sameScalars(_ x: String, _ y: String) -> Bool {
        x.unicodeScalars.elementsEqual(y.unicodeScalars)
    }

    private static func responses(_ turns: [ConversationTurn]) -> String {
        stride(from: 1, to: turns.count, by: 2)
            .map { "<Response \($0 / 2 + 1)>: " + turns[$0].content }
            .joined(separator: "\n")
    }

    /// Strict alternation USER, ASSISTANT, …, ending on ASSISTANT (the reference's even-count
    /// and role assertions).
    private static func shapeProblem(_ turns: [ConversationTurn], side: String) -> ConversationProblem? {
        for (i, turn) in turns.enumerated() {
            let expected = i % 2 == 0 ? userRole : assistantRole
            guard !sameScalars(turn.role, expected) else { continue }
            let shown = sameScalars(turn.role, userRole) || sameScalars(turn.role, assistantRole) ? turn.role : "\"\(turn.role)\""
            let hint = turn.role.uppercased() == expected ? " (roles are matched exactly, in upper case)" : ""
            return ConversationProblem(
                kind: .notAlternating, side: side, turn: i,
                message: "conversation \(side) turn \(i) has role \(shown) where \(expected) was expected\(hint)")
        }
        if turns.count % 2 == 1 {
            return ConversationProblem(
                kind: .notAlternating, side: side, turn: turns.count,
                message: "conversation \(side) has \(turns.count) turns and ends with a USER turn; turn \(turns.count) must be its ASSISTANT reply")
        }
        return nil
    }

    private static func emptinessProblem(_ turns: [ConversationTurn], side: String) -> ConversationProblem? {
        if turns.isEmpty {
            return ConversationProblem(kind: .empty, side: side, message: "conversation \(side) has no turns")
        }
        if let i = turns.firstIndex(where: { $0.content.isEmpty }) {
            return ConversationProblem(
                kind: .emptyTurn, side: side, turn: i,
                message: "conversation \(side) turn \(i) (\(turns[i].role)) has empty content")
        }
        return nil
    }
}
