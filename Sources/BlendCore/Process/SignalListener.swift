import Dispatch
import Foundation

/// Turns process signals into an async sequence. The default handlers are replaced (set to
/// ignore) first, so SIGTERM leads to an orderly shutdown instead of an immediate exit.
public final class SignalListener: @unchecked Sendable {
    private let sources: [DispatchSourceSignal]
    public let signals: AsyncStream<Int32>

    public init(_ signalNumbers: [Int32]) {
        var continuation: AsyncStream<Int32>.Continuation!
        signals = AsyncStream { continuation = $0 }
        let c = continuation!
        sources = signalNumbers.map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { c.yield(number) }
            source.resume()
            return source
        }
    }

    deinit { sources.forEach { $0.cancel() } }

    /// Waits for the first of the signals.
    public func first() async -> Int32? {
        for await number in signals { return number }
        return nil
    }

    public static func terminationSignals() -> SignalListener { SignalListener([SIGINT, SIGTERM]) }
}
