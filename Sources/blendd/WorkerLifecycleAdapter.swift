import Foundation
import Logging
import ServiceLifecycle
import Worker

/// Runs `WorkerService` (which has `run()` and `stop()`) as a lifecycle `Service`, until the worker
/// conforms to `Service` itself; then the worker joins the `ServiceGroup` directly and this goes.
///
/// Graceful shutdown calls `stop()`, which lets the batch in flight finish within the drain time.
/// Whatever the worker is still doing when the drain time has passed (a retry sleeping out its
/// backoff during start-up or an outage) is cancelled. A run that ends because of that shutdown,
/// cancelled or not, ends the service normally: SIGTERM exits 0 at any moment.
final class WorkerLifecycleAdapter: Service, @unchecked Sendable {
    let worker: WorkerService
    private let drainSeconds: Double
    private let logger: Logger
    private let lock = NSLock()
    private var stopping = false

    init(worker: WorkerService, drainSeconds: Double, logger: Logger) {
        self.worker = worker
        self.drainSeconds = drainSeconds
        self.logger = logger
    }

    var isStopping: Bool { lock.withLock { stopping } }

    func run() async throws {
        // Unstructured, so that graceful shutdown (not cancellation) decides how the worker stops.
        let running = Task { try await worker.run() }
        let stopper = Task<Void, Never> {
            do { try await gracefulShutdown() } catch { return }
            lock.withLock { stopping = true }
            logger.notice("worker: stopping (drain up to \(drainSeconds) s)")
            let deadline = ContinuousClock.now + .milliseconds(Int64(drainSeconds * 1000))
            await worker.stop()
            try? await Task.sleep(until: deadline)
            running.cancel()
        }
        do {
            try await withTaskCancellationHandler {
                try await running.value
            } onCancel: {
                running.cancel()
            }
        } catch is CancellationError where isStopping {
            logger.info("worker: stopped during shutdown")
        }
        stopper.cancel()
    }
}
