import Foundation

/// The verdict on one (A, B) pair of a compare job, in three readings of the same logits:
/// ours (`logit`, positive = A better in every mode, `CompareMode`), the reference's
/// (`referenceLogit`, what `Blender.compare(return_logits=True)` returns), and TRL's
/// (`probability`, `PairRMJudge(return_scores=True)`: the probability that A is better).
public struct PairJudgement: Sendable, Equatable, Codable {
    public enum Verdict: String, Sendable, Codable, CaseIterable { case a, b, tie }

    public var logit: Float
    public var referenceLogit: Float
    public var probability: Double
    /// The reference's boolean is `logit > 0`; an exact 0 (e.g. A and B identical) is a tie.
    public var verdict: Verdict

    public init(logit: Float, referenceLogit: Float, probability: Double) {
        self.logit = logit
        self.referenceLogit = referenceLogit
        self.probability = probability
        self.verdict = logit > 0 ? .a : logit < 0 ? .b : .tie
    }

    /// From PairRM's ℓ(A,B) and/or ℓ(B,A), as the mode computed them.
    /// - `[A,B]`: logit ℓ(A,B); reference ℓ(A,B); probability σ(ℓ(A,B)).
    /// - `[B,A]`: logit −ℓ(B,A); reference ℓ(B,A) un-negated (> 0 means B, the reference's sign);
    ///   probability σ(−ℓ(B,A)).
    /// - both: logit (ℓ(A,B) − ℓ(B,A)) / 2; reference the sum ℓ(A,B) − ℓ(B,A); probability
    ///   σ(ℓ(A,B) − ℓ(B,A)), the softmax of the two MaxLogits scores of rank([A, B]) that TRL takes.
    public static func pairwise(ab: Float?, ba: Float?, mode: CompareMode) -> PairJudgement {
        let logit = mode.combine(ab: ab, ba: ba)
        let reference: Float = switch mode {
        case .forward: ab!
        case .reverse: ba!
        case .both: ab! - ba!
        }
        let margin: Float = switch mode {
        case .forward: ab!
        case .reverse: -ba!
        case .both: ab! - ba!
        }
        return PairJudgement(logit: logit, referenceLogit: reference, probability: sigmoid(Double(margin)))
    }

    /// From a pointwise reward model's scores: compare = score_A − score_B in every mode, as the
    /// reference defines it for non-pair rankers (spec §4, "Other-RM paths"), and the
    /// Bradley–Terry probability σ(score_A − score_B).
    public static func pointwise(scoreA: Float, scoreB: Float) -> PairJudgement {
        let d = scoreA - scoreB
        return PairJudgement(logit: d, referenceLogit: d, probability: sigmoid(Double(d)))
    }

    /// σ(x) without overflow for large |x|.
    public static func sigmoid(_ x: Double) -> Double {
        x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x))
    }

    enum CodingKeys: String, CodingKey { case logit, referenceLogit = "reference_logit", probability, verdict }
}
