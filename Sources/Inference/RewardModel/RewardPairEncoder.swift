/// Builds a reward model's input for one (question, answer) pair as the fast tokenizer encodes a text pair:
/// `[CLS] question [SEP] answer [SEP]`, each text tokenized on its own. When the pair exceeds `maxLength`,
/// HF tokenizers' `longest_first` rule cuts it (what `tokenizer(q, a, truncation=True, max_length=L)` does):
/// the shorter text is kept whole if it fits in half the budget and the longer one takes the rest; otherwise
/// both get half, the odd id going to the longer text (to the answer on a tie). Token type ids are not built:
/// DeBERTa-v3's config has `type_vocab_size` 0, and `DebertaConfiguration` refuses any other value.
///
/// An empty answer is still a pair (`[CLS] q [SEP] [SEP]`), as every batched call encodes it, LLM-Blender's
/// reward-model collator included; a lone `tokenizer(q, "")` call would drop the second `[SEP]`.
public struct RewardPairEncoder: Sendable {
    public struct Encoded: Sendable, Equatable {
        public var ids: [Int]
        /// Whether either text lost ids to the budget.
        public var truncated: Bool
    }

    public let tokenizer: Tokenizer
    public let maxLength: Int

    public init(tokenizer: Tokenizer, maxLength: Int) {
        self.tokenizer = tokenizer
        self.maxLength = maxLength
    }

    public func encode(question: String, answer: String) throws -> Encoded {
        let q = try tokenizer.encode(question, addSpecialTokens: false)
        let a = try tokenizer.encode(answer, addSpecialTokens: false)
        let (keepQ, keepA) = Self.longestFirst(q.count, a.count, budget: maxLength - 3)
        let cls = tokenizer.prefixIds, sep = tokenizer.suffixIds
        return Encoded(ids: cls + q.prefix(keepQ) + sep + a.prefix(keepA) + sep, truncated: keepQ < q.count || keepA < a.count)
    }

    /// How many ids of each text survive a budget of `budget` ids for both, by HF tokenizers' rule.
    static func longestFirst(_ first: Int, _ second: Int, budget: Int) -> (Int, Int) {
        guard first + second > budget else { return (first, second) }
        let swapped = first > second
        var short = swapped ? second : first
        var long: Int
        long = short > budget ? short : max(short, budget - short)
        if short + long > budget {
            short = budget / 2
            long = short + budget % 2
        }
        return swapped ? (long, short) : (short, long)
    }
}
