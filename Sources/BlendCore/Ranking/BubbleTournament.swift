/// Single-pass bubble selection (spec §2.3) as a state machine, so a batch scheduler can run
/// step j of many jobs in one forward batch: ask `nextPair`, score both orders of it, `record`.
///
/// Differences from the reference, on purpose: the order is a permutation seeded per job
/// (the reference uses unseeded `torch.randperm`), so results reproduce.
public struct BubbleTournament: Sendable, Equatable {
    public enum Goal: String, Sendable, Codable { case best, worst }

    public struct Step: Sendable, Equatable {
        public let current: Int
        public let next: Int
        /// d = ℓ(current, next) − ℓ(next, current).
        public let difference: Float
        public let carried: Int
        public var eliminated: Int { carried == current ? next : current }
    }

    public let goal: Goal
    public let order: [Int]
    public private(set) var steps: [Step] = []
    private var carried: Int?

    public init(count: Int, goal: Goal = .best, seed: UInt64) {
        precondition(count >= 1, "a bubble tournament needs at least one candidate")
        self.goal = goal
        self.order = Array(0..<count).seededShuffle(seed: seed)
        self.carried = count == 1 ? order[0] : nil
    }

    /// A tournament in a given order, e.g. the permutation the reference's `torch.randperm` drew, so a
    /// parity test can replay the reference's run.
    public init(order: [Int], goal: Goal = .best) {
        precondition(!order.isEmpty, "a bubble tournament needs at least one candidate")
        precondition(order.sorted() == Array(order.indices), "bubble order \(order) is not a permutation of 0..<\(order.count)")
        self.goal = goal
        self.order = order
        self.carried = order.count == 1 ? order[0] : nil
    }

    public var isFinished: Bool { steps.count == order.count - 1 }

    /// The pair to compare next (both orders), or nil when finished.
    public var nextPair: (current: Int, next: Int)? {
        guard !isFinished else { return nil }
        let j = steps.count
        return (carried ?? order[0], order[j + 1])
    }

    /// Records d = ℓ(cur, nxt) − ℓ(nxt, cur) for `nextPair`. Ties go to the later element in both
    /// goals, as in the reference.
    public mutating func record(difference d: Float) {
        guard let pair = nextPair else { preconditionFailure("bubble tournament already finished") }
        let keepCurrent = goal == .best ? d > 0 : d < 0
        let winner = keepCurrent ? pair.current : pair.next
        steps.append(Step(current: pair.current, next: pair.next, difference: d, carried: winner))
        carried = winner
    }

    /// The selected candidate (best or worst) once finished.
    public var winner: Int? { isFinished ? carried : nil }

    /// [winner] + losers in elimination order (first eliminated first), as the reference's
    /// `return_all=True`.
    public var winnerThenEliminated: [Int]? {
        guard let w = winner else { return nil }
        return [w] + steps.map(\.eliminated)
    }

    /// A total order for storage and top-k: the winner first, then the losers from the last
    /// eliminated to the first (a candidate that survived more steps ranks higher). Scores are
    /// the number of steps each candidate won; ranks are 1...N without ties.
    public var placement: (ranks: [Int], scores: [Float])? {
        guard let w = winner else { return nil }
        let sequence = [w] + steps.map(\.eliminated).reversed()
        var ranks = [Int](repeating: 0, count: order.count)
        for (place, index) in sequence.enumerated() { ranks[index] = place + 1 }
        var scores = [Float](repeating: 0, count: order.count)
        for step in steps { scores[step.carried] += 1 }
        return (ranks, scores)
    }
}
