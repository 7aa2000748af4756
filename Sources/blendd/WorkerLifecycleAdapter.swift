import Foundation
import Logging
import ServiceLifecycle
import Worker

/// Builds `WorkerService` inside the `ServiceGroup` and runs it there. The worker is a `Service` of
/// its own once it exists; this wrapper is what lets a SIGTERM arrive while it is still being built.
///
/// The worker is built (its models loaded, which takes seconds to minutes) inside the service on
/// a thread of its own, so a SIGTERM during loading already finds the group listening: the service
/// returns at once, as there is nothing to drain. Afterwards graceful shutdown calls `stop()`,
/// which lets the batch in flight finish within the drain time; whatever the worker still does
/// when the drain time has passed (a retry sleeping out its backoff during start-up or an outage)
/// is cancelled. A run that ends because of the shutdown, cancelled or not, ends the service
/// normally: SIGTERM exits 0 at any moment.
final class WorkerLifecycleAdapter: Service, @unchecked Sendable {
    private let make: @Sendable () throws -> WorkerService
    private let drainSeconds: Double
    private let logger: Logger
    private let lock = NSLock()
    private var stopping = false
    private var pendingStart: CheckedContinuation<WorkerService?, any Error>?
    private var built: WorkerService?

    init(drainSeconds: Double, logger: Logger, make: @escaping @Sendable () throws -> WorkerService) {
        self.make = make
        self.drainSeconds = drainSeconds
        self.logger = logger
    }

    var isStopping: Bool { lock.withLock { stopping } }

    /// The worker once built (nil while its models load).
    var worker: WorkerService? { lock.withLock { built } }

    func run() async throws {
        guard let worker = try await build() else {
            logger.notice("worker: stopped while starting")
            return
        }
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

    /// Builds the worker on a dedicated thread (loading is blocking work that must stay off the
    /// cooperative pool); nil when a shutdown came first.
    private func build() async throws -> WorkerService? {
        try await withTaskCancellationOrGracefulShutdownHandler {
            try await withCheckedThrowingContinuation { continuation in
                let stopped = lock.withLock {
                    if stopping { return true }
                    pendingStart = continuation
                    return false
                }
                if stopped { return continuation.resume(returning: nil) }
                let loader = Thread { [self] in
                    let outcome = Result { try make() }
                    let waiting = lock.withLock { () -> CheckedContinuation<WorkerService?, any Error>? in
                        if case .success(let worker) = outcome { built = worker }
                        defer { pendingStart = nil }
                        return pendingStart
                    }
                    waiting?.resume(with: outcome.map { $0 })
                }
                loader.name = "blendd.worker.load"
                loader.stackSize = 16 << 20
                loader.start()
            }
        } onCancelOrGracefulShutdown: { [self] in
            let waiting = lock.withLock { () -> CheckedContinuation<WorkerService?, any Error>? in
                stopping = true
                defer { pendingStart = nil }
                return pendingStart
            }
            waiting?.resume(returning: nil)
        }
    }
}
