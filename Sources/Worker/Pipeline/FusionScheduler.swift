import BlendCore
import Foundation
import Inference
import Kafka
import Logging

/// The worker's fusion stage across micro-batches (`batching.continuous_fusion`): the consume loop hands
/// over each ranked micro-batch and goes on consuming, while one decode thread steps a running batch
/// that new fusions join and finished ones leave between steps. Each job's outcome is stored the step it
/// finishes (with the others finishing at that step), and a partition's offset is committed only below
/// its lowest job not yet stored (`OffsetWatermarks`), whatever order jobs finish in — so the delivery
/// guarantees are those of the micro-batch path: at-least-once, made exactly-once by the idempotent store.
final class FusionScheduler: @unchecked Sendable {
    typealias Finished = [(tag: Int, result: Result<FuseOutcome, FusionError>)]

    struct Hooks: Sendable {
        /// Stores outcomes durably, retrying transient faults; throws only when it gives up (the worker stops).
        var store: @Sendable ([JobOutcome]) async throws -> Void
        /// Marks a message done (its offset + 1 commits); false when its partition was revoked since.
        var commit: @Sendable (KafkaMessage) -> Bool
        /// The final outcome of a deferred fusion.
        var complete: @Sendable (JobOutcome, Result<FuseOutcome, FusionError>, _ fuseMs: Double) -> JobOutcome
        /// After outcomes were stored and their offsets released, with the seconds the store took.
        var stored: @Sendable ([JobOutcome], Double) -> Void
    }

    private struct Fusing {
        let outcome: JobOutcome
        let message: KafkaMessage
        let submitted: Date
    }

    /// Fusions in flight after which the consume loop waits (`batching.max_fusing_jobs`).
    let maxInFlight: Int
    private let session: any SteppedFusionSession  // used by the decode thread only
    private let hooks: Hooks
    private let logger: Logger

    private let condition = NSCondition()
    // Guarded by `condition`.
    private var submitted: [(tag: Int, request: FuseRequest)] = []
    private var fusing: [Int: Fusing] = [:]
    private var storing = 0
    private var watermarks = OffsetWatermarks<TopicPartition, KafkaMessage>()
    private var nextTag = 0
    private var stopping = false
    private var started = false

    private let finished: AsyncStream<Finished>
    private let finishedContinuation: AsyncStream<Finished>.Continuation
    private var storer: Task<Void, Never>?
    private let decoderExited = DispatchSemaphore(value: 0)

    init(session: any SteppedFusionSession, maxInFlight: Int, hooks: Hooks, logger: Logger) {
        self.session = session
        self.maxInFlight = max(1, maxInFlight)
        self.hooks = hooks
        self.logger = logger
        (finished, finishedContinuation) = AsyncStream<Finished>.makeStream()
    }

    /// Jobs handed over and not yet stored (fusing, or being stored).
    var unfinishedCount: Int { condition.withLock { fusing.count + storing } }

    var hasRoom: Bool { unfinishedCount < maxInFlight }

    /// Starts the decode thread and the task that stores finished fusions.
    func start() {
        let first = condition.withLock { () -> Bool in
            defer { started = true }
            return !started
        }
        guard first else { return }
        Thread.detachNewThread { [self] in decodeLoop() }
        storer = Task { await self.storeLoop() }
    }

    /// Takes a ranked micro-batch (`outcomes[i]` for `batch[i]`): stores the outcomes that are final now,
    /// releases their offsets as far as the watermarks allow, and queues the deferred fusions. Throws
    /// when the final outcomes cannot be stored; then nothing of the batch is queued or committed.
    func accept(_ batch: [KafkaMessage], outcomes: [JobOutcome]) async throws {
        precondition(batch.count == outcomes.count, "one outcome per message")
        condition.withLock {
            for message in batch { watermarks.register(message.topicPartition, offset: message.offset, item: message) }
        }
        let ready = zip(batch, outcomes).filter { $0.1.pendingFusion == nil }
        let deferred = zip(batch, outcomes).filter { $0.1.pendingFusion != nil }
        if !ready.isEmpty {
            let start = Date()
            try await hooks.store(ready.map(\.1))
            release(ready.map(\.0))
            hooks.stored(ready.map(\.1), Date().timeIntervalSince(start))
        }
        guard !deferred.isEmpty else { return }
        let now = Date()
        condition.withLock {
            for (message, outcome) in deferred {
                let tag = nextTag
                nextTag += 1
                fusing[tag] = Fusing(outcome: outcome, message: message, submitted: now)
                submitted.append((tag, outcome.pendingFusion!))
            }
            condition.signal()
        }
    }

    /// Partitions revoked or lost: nothing of them registered so far may commit. Their unfinished fusions
    /// still finish and are stored (harmless: the store is idempotent), and their new owner redelivers them.
    func revoke(_ partitions: [TopicPartition]) {
        condition.withLock { for p in partitions { watermarks.drop(p) } }
    }

    /// Stops the decode thread after its current step and waits for the fusions already finished to be
    /// stored. Unfinished ones are abandoned uncommitted (they will be redelivered).
    func shutdown() async {
        let wasStarted = condition.withLock { () -> Bool in
            stopping = true
            condition.signal()
            return started
        }
        guard wasStarted else { return }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().async { [decoderExited] in
                decoderExited.wait()
                continuation.resume()
            }
        }
        await storer?.value
        let abandoned = condition.withLock { fusing.count }
        if abandoned > 0 { logger.warning("\(abandoned) unfinished fusions abandoned uncommitted at shutdown (they will be redelivered)") }
    }

    // MARK: - Decode thread

    private func decodeLoop() {
        defer {
            finishedContinuation.finish()
            decoderExited.signal()
        }
        while true {
            condition.lock()
            while submitted.isEmpty && session.unfinishedCount == 0 && !stopping { condition.wait() }
            if stopping {
                condition.unlock()
                return
            }
            let arrivals = submitted
            submitted = []
            condition.unlock()
            for arrival in arrivals { session.submit(tag: arrival.tag, request: arrival.request) }
            let done = session.step()
            if !done.isEmpty { finishedContinuation.yield(done) }
        }
    }

    // MARK: - Storing

    private func storeLoop() async {
        for await done in finished {
            let now = Date()
            let items = condition.withLock { () -> [(outcome: JobOutcome, message: KafkaMessage)] in
                let found = done.compactMap { entry in fusing.removeValue(forKey: entry.tag).map { (entry.result, $0) } }
                storing += found.count
                return found.map { result, job in
                    (hooks.complete(job.outcome, result, now.timeIntervalSince(job.submitted) * 1000), job.message)
                }
            }
            guard !items.isEmpty else { continue }
            let start = Date()
            do {
                try await hooks.store(items.map(\.outcome))
                release(items.map(\.message))
                hooks.stored(items.map(\.outcome), Date().timeIntervalSince(start))
            } catch {
                logger.warning("\(items.count) fused jobs could not be stored (\(error)); their offsets stay uncommitted and they will be redelivered")
            }
            condition.withLock { storing -= items.count }
        }
    }

    /// Marks stored messages finished and commits each partition's advanced watermark. Commits happen under
    /// the lock, so two threads never store a partition's offsets out of order.
    private func release(_ messages: [KafkaMessage]) {
        condition.withLock {
            var advanced: [TopicPartition: KafkaMessage] = [:]
            for message in messages {
                if let mark = watermarks.finish(message.topicPartition, offset: message.offset) { advanced[message.topicPartition] = mark }
            }
            for mark in advanced.values { _ = hooks.commit(mark) }
        }
    }
}
