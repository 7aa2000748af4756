import Dispatch
import Foundation

/// The retry sleeps of a worker, ended by its stop: every sleep under way returns at once, and
/// every later one returns immediately. Sleeps of concurrent operations overlap (a batch's store
/// retrying while the next batch's lookup retries, or the fusion stage's stores), so each has a
/// continuation of its own. Waiting never occupies a thread.
final class StopLatch: @unchecked Sendable {
    private let lock = NSLock()
    private var released = false
    private var sleepers: [UInt64: CheckedContinuation<Void, Never>] = [:]
    private var nextId: UInt64 = 0

    var isReleased: Bool { lock.withLock { released } }

    func release() {
        let woken = lock.withLock { () -> [CheckedContinuation<Void, Never>] in
            released = true
            defer { sleepers = [:] }
            return Array(sleepers.values)
        }
        for sleeper in woken { sleeper.resume() }
    }

    /// Returns after `seconds`, on release (before or during the sleep), or on cancellation.
    func sleep(upTo seconds: Double) async {
        let id = lock.withLock { () -> UInt64 in
            nextId += 1
            return nextId
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let armed = lock.withLock { () -> Bool in
                    // Checked under the lock that `wake` takes, so a cancellation is never missed.
                    guard !released, !Task.isCancelled else { return false }
                    sleepers[id] = continuation
                    return true
                }
                guard armed else { return continuation.resume() }
                DispatchQueue.global().asyncAfter(deadline: .now() + max(0, seconds)) { self.wake(id) }
            }
        } onCancel: {
            wake(id)
        }
    }

    private func wake(_ id: UInt64) {
        let sleeper = lock.withLock { sleepers.removeValue(forKey: id) }
        sleeper?.resume()
    }
}
