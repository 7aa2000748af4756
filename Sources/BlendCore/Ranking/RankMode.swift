/// How a job's candidates are compared and aggregated (spec §2).
public enum RankMode: String, Codable, Sendable, CaseIterable {
    /// Full matrix of ordered pairs, MaxLogits scores: the reference `rank`.
    case maxLogits = "max_logits"
    /// Full matrix, MaxWins with consistent counts.
    case maxWins = "max_wins"
    /// Single-pass best-of-n in a seeded order: 2(N−1) forward passes.
    case bubble = "bubble"
}
