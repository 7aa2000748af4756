import Dispatch
import Foundation

/// Wakes one waiting task early: the relay waits for the next due row, a NOTIFY or a stored
/// batch, whichever comes first. A signal with nobody waiting is kept for the next wait, so
/// none is lost between two waits. Waiting never occupies a thread.
final class WakeSignal: @unchecked Sendable {
    private let lock = NSLock()
    private var pending = false
    private var waiter: CheckedContinuation<Void, Never>?
    private var generation: UInt64 = 0

    func signal() {
        let woken = lock.withLock { () -> CheckedContinuation<Void, Never>? in
            guard let waiter else { pending = true; return nil }
            self.waiter = nil
            return waiter
        }
        woken?.resume()
    }

    /// Returns after a signal, `seconds`, or cancellation, whichever comes first.
    func wait(upTo seconds: Double) async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let armed = lock.withLock { () -> UInt64? in
                    if pending || Task.isCancelled { pending = false; return nil }
                    generation += 1
                    waiter = continuation
                    return generation
                }
                guard let armed else { return continuation.resume() }
                DispatchQueue.global().asyncAfter(deadline: .now() + max(0, seconds)) { self.fire(armed) }
            }
        } onCancel: {
            fire(nil)
        }
    }

    /// Resumes the waiter of `generation` (or any waiter, for cancellation) if it still waits.
    private func fire(_ generation: UInt64?) {
        let woken = lock.withLock { () -> CheckedContinuation<Void, Never>? in
            guard let waiter, generation == nil || generation == self.generation else { return nil }
            self.waiter = nil
            return waiter
        }
        woken?.resume()
    }
}
