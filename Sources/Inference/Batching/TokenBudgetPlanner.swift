/// Groups variable-length sequences into forward batches under a sequence cap and a padded
/// token budget (sequences × longest length), so memory stays bounded and little compute is
/// spent on padding. Sequences are sorted by length (longest first, ties by arrival), so each
/// batch holds neighbours in length; a batch never mixes a 2k-token pair with short ones
/// unless it must.
public struct TokenBudgetPlanner: Sendable, Equatable {
    public var maxSequences: Int
    public var maxTokens: Int

    public init(maxSequences: Int, maxTokens: Int) {
        precondition(maxSequences >= 1 && maxTokens >= 1, "batch limits must be positive")
        self.maxSequences = maxSequences
        self.maxTokens = maxTokens
    }

    public struct Batch: Sendable, Equatable {
        /// Indexes into the planned lengths.
        public var members: [Int]
        /// The padded length of every sequence in the batch.
        public var paddedLength: Int
        public var paddedTokens: Int { members.count * paddedLength }
    }

    public struct Plan: Sendable, Equatable {
        public var batches: [Batch]
        public var realTokens: Int
        public var paddedTokens: Int
        /// Share of computed positions that are padding (0 = none).
        public var paddingWaste: Double { paddedTokens == 0 ? 0 : Double(paddedTokens - realTokens) / Double(paddedTokens) }
    }

    /// A sequence longer than `maxTokens` gets a batch of its own: refusing it is the caller's
    /// decision (the tokenizer truncates to the model's budget before this point).
    public func plan(lengths: [Int]) -> Plan {
        let order = lengths.indices.sorted { lengths[$0] != lengths[$1] ? lengths[$0] > lengths[$1] : $0 < $1 }
        var batches: [Batch] = []
        var current: [Int] = []
        var currentLength = 0
        for index in order {
            let length = max(lengths[index], 1)
            // Sorted descending: the first member fixes the padded length of the batch.
            let padded = current.isEmpty ? length : currentLength
            if !current.isEmpty && (current.count + 1 > maxSequences || (current.count + 1) * padded > maxTokens) {
                batches.append(Batch(members: current, paddedLength: currentLength))
                current = []
            }
            if current.isEmpty { currentLength = length }
            current.append(index)
        }
        if !current.isEmpty { batches.append(Batch(members: current, paddedLength: currentLength)) }
        let real = lengths.reduce(0) { $0 + max($1, 1) }
        return Plan(batches: batches, realTokens: real, paddedTokens: batches.reduce(0) { $0 + $1.paddedTokens })
    }
}
