/// Capped exponential backoff with jitter, for retrying transient faults (worker) and
/// restarting crashed processes (supervisor). Jitter spreads a fleet's retries apart.
public struct Backoff: Sendable, Equatable {
    public var initialSeconds: Double
    public var maxSeconds: Double
    public var multiplier: Double
    /// Fraction of each delay drawn at random: the delay lies in [d·(1−jitter), d].
    public var jitter: Double

    /// Parameters outside these bounds are a programming error: the configuration's declared
    /// ranges and rules (`retry.*`, `supervisor.restart_*`) keep every configured backoff inside them.
    public init(initialSeconds: Double, maxSeconds: Double, multiplier: Double = 2, jitter: Double = 0.2) {
        precondition(initialSeconds > 0 && maxSeconds >= initialSeconds && multiplier >= 1 && (0...1).contains(jitter),
                     "invalid backoff parameters: initial \(initialSeconds) s, max \(maxSeconds) s, multiplier \(multiplier), jitter \(jitter)")
        self.initialSeconds = initialSeconds
        self.maxSeconds = maxSeconds
        self.multiplier = multiplier
        self.jitter = jitter
    }

    public init(_ retry: BlendConfiguration.Retry) {
        self.init(initialSeconds: Double(retry.initialMilliseconds) / 1000, maxSeconds: Double(retry.maxMilliseconds) / 1000,
                  multiplier: retry.multiplier, jitter: retry.jitter)
    }

    /// The cap before jitter for the given 0-based attempt.
    public func ceiling(attempt: Int) -> Double {
        var d = initialSeconds
        for _ in 0..<max(0, attempt) {
            d *= multiplier
            if d >= maxSeconds { return maxSeconds }
        }
        return min(d, maxSeconds)
    }

    public func delay(attempt: Int, using rng: inout some RandomNumberGenerator) -> Double {
        let d = ceiling(attempt: attempt)
        guard jitter > 0 else { return d }
        return d * (1 - jitter * Double.random(in: 0...1, using: &rng))
    }

    public func delay(attempt: Int) -> Double {
        var rng = SystemRandomNumberGenerator()
        return delay(attempt: attempt, using: &rng)
    }
}
