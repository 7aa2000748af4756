import BlendCore
import Logging
import Postgres
import Kafka

/// Retries an operation while its failure is transient (database or broker unreachable),
/// with capped exponential backoff and jitter; other failures (permanent ones such as wrong
/// credentials among them) are thrown at once.
struct TransientRetry: Sendable {
    let backoff: Backoff
    let logger: Logger
    let isStopping: @Sendable () -> Bool
    /// Waits between attempts; may return early when the worker stops.
    var sleep: @Sendable (Double) async -> Void = { seconds in try? await Task.sleep(for: .milliseconds(Int(seconds * 1000))) }

    static func isTransient(_ error: Error) -> Bool {
        if let e = error as? PostgresError { return e.isTransient }
        if let e = error as? KafkaError { return e.isRetriable && !e.isFatal }
        return false
    }

    /// - Returns: the value, or throws the first non-transient error, or `CancellationError`
    ///   when the worker is stopping between attempts.
    @discardableResult
    func run<T: Sendable>(_ what: String, onRetry: @Sendable (Error) -> Void = { _ in }, _ operation: () async throws -> T) async throws -> T {
        var attempt = 0
        while true {
            do {
                return try await operation()
            } catch where Self.isTransient(error) {
                onRetry(error)
                let delay = backoff.delay(attempt: attempt)
                logger.warning("\(what) failed, retrying in \(String(format: "%.2f", delay)) s (attempt \(attempt + 1)): \(error)")
                attempt += 1
                if isStopping() { throw CancellationError() }
                await sleep(delay)
                if isStopping() { throw CancellationError() }
            }
        }
    }
}
