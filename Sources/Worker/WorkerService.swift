import BlendCore
import Foundation
import Inference
import Kafka
import Logging
import Postgres
import ServiceLifecycle

/// `blendd worker`: consume jobs, process them in micro-batches, store each batch in one
/// transaction with its outbox rows, then mark the messages done (so their offsets commit),
/// while a relay publishes the outbox. At-least-once from Kafka, made effectively exactly-once
/// by the idempotent store and stable event ids.
///
/// A swift-service-lifecycle `Service`: graceful shutdown (or cancellation) of `run()` is the
/// same as `stop()`, and `run()` then returns normally once drained, at whatever point it was
/// (start-up, retries, a batch, an outage).
public final class WorkerService: Service, @unchecked Sendable {
    public let config: BlendConfiguration
    public let metrics: MetricsRegistry
    private let instruments: WorkerMetrics
    private let logger: Logger
    private let processor: BatchProcessor
    private let pool: PostgresPool
    private let store: ResultStore
    // Internal, so tests can raise librdkafka's fatal errors on them.
    let producer: KafkaProducer
    let consumer: KafkaConsumer
    private let heartbeat: HeartbeatWriter?
    private let retry: TransientRetry
    private let startedAt = Date()

    private let lock = NSLock()
    private var _stopping = false
    private var kafkaFatal: WorkerError?
    private var relayRunning = false
    private var _state = HeartbeatReport.State.starting
    /// Batches claimed and not yet stored, by claim number: the one being computed, those waiting in
    /// the store queue and those being stored.
    private var inFlight: [Int: (partitions: Set<TopicPartition>, count: Int)] = [:]
    private var claims = 0
    private var inFlightCount: Int { inFlight.values.reduce(0) { $0 + $1.count } }
    private var lastProgress = Date()
    private let batchDone = DispatchSemaphore(value: 0)
    private var batchWaiters = 0
    /// When the drain time of a stop ends.
    private var drainDeadline: Date?
    /// Ends retry sleeps as soon as the worker stops (several may be under way at once).
    private let stopLatch = StopLatch()
    private let relay: OutboxRelay
    private let listener: PostgresListener
    /// Operations riding out an infrastructure fault now; the worker is `degraded` while any are.
    private var faulted: Set<String> = []
    /// The fusion stage across micro-batches, with `batching.continuous_fusion` and a model fuser; set once in init.
    private var fusion: FusionScheduler?

    public convenience init(config: BlendConfiguration, ranker: any CandidateRanker, fuser: any CandidateFuser,
                            logger: Logger = Logger(label: "blendd.worker")) throws {
        try self.init(config: config, rankers: RankerSet(single: ranker), fuser: fuser, logger: logger)
    }

    public init(config: BlendConfiguration, rankers: RankerSet, fuser: any CandidateFuser,
                logger: Logger = Logger(label: "blendd.worker")) throws {
        self.config = config
        self.logger = logger
        metrics = MetricsRegistry()
        instruments = WorkerMetrics(registry: metrics)
        processor = BatchProcessor(validator: JobValidator(limits: config.limits), rankers: rankers, fuser: fuser, workerId: config.workerId)
        let connectionOptions = PostgresConnection.Options(statementTimeoutMilliseconds: config.postgres.statementTimeoutMilliseconds,
                                                           keepaliveSeconds: config.postgres.keepaliveSeconds,
                                                           applicationName: "blendd worker \(config.workerId)")
        pool = PostgresPool(url: config.postgres.url, maxConnections: config.postgres.poolSize, options: connectionOptions)
        store = ResultStore(pool: pool, eventsTopic: config.kafka.eventsTopic, dlqTopic: config.kafka.dlqTopic)
        let kafka = KafkaConfiguration(config.kafka)
        producer = try KafkaProducer(configuration: kafka, options: .init(config), logger: logger)
        heartbeat = HeartbeatWriter()
        relay = OutboxRelay(store: store, producer: producer,
                            settings: .init(batchSize: config.outbox.batchSize, claimSeconds: config.outbox.claimSeconds, minIdleSeconds: Double(config.outbox.pollMilliseconds) / 1000,
                                            maxIdleSeconds: Double(config.outbox.maxIdleMilliseconds) / 1000,
                                            messageMaxBytes: kafka.messageMaxBytes, retry: Backoff(config.retry)),
                            instruments: instruments, logger: logger)
        let wake = relay.wake
        listener = PostgresListener(url: config.postgres.url, channels: [ResultStore.notifyChannel], options: connectionOptions,
                                    logger: logger) { _ in wake.signal() }
        // The callbacks below are created before `self` exists; they reach it through this box.
        let forward = Forwarder()
        retry = TransientRetry(backoff: Backoff(config.retry), logger: logger,
                               isStopping: { forward.target?.isStopping ?? true },
                               sleep: { [stopLatch] seconds in await stopLatch.sleep(upTo: seconds) })
        consumer = try KafkaConsumer(configuration: kafka, options: .init(config),
                                     logger: logger, rebalanceHandler: { forward.target?.rebalanced($0) })
        forward.target = self
        // Top-1 fusion answers at once: deferring it would only split each batch's transaction.
        if config.batching.continuousFusion, let stepped = fuser as? any SteppedFuser, !(fuser is TopCandidateFuser) {
            fusion = FusionScheduler(session: stepped.makeSession(maxRows: 4 * config.batching.maxJobs),
                                     maxInFlight: config.batching.maxFusingJobs, hooks: fusionHooks(), logger: logger)
        }
    }

    private func fusionHooks() -> FusionScheduler.Hooks {
        FusionScheduler.Hooks(
            store: { [weak self] outcomes in
                guard let self else { throw CancellationError() }
                try await self.storeDurably(outcomes)
                self.recovered("store")
            },
            commit: { [weak self] message in self?.consumer.markDone(message) ?? false },
            complete: { [processor] outcome, result, fuseMs in processor.completeFusion(outcome, with: result, fuseMs: fuseMs) },
            stored: { [weak self] outcomes, seconds in self?.recordStored(outcomes, storeSeconds: seconds) })
    }

    /// Metrics of stored outcomes (continuous fusion stores them as they finish), and a nudge to the relay.
    private func recordStored(_ outcomes: [JobOutcome], storeSeconds: Double) {
        for outcome in outcomes {
            if let status = outcome.status { instruments.jobFinished(status) } else { instruments.redelivered() }
        }
        recordStageTimes(store: storeSeconds, of: [outcomes])
        lock.withLock { lastProgress = Date() }
        relay.wake.signal()
    }

    /// The store's time, and per group of outcomes stored together its longest queue, rank and fuse times
    /// (a micro-batch waits for its slowest job).
    private func recordStageTimes(store seconds: Double, of groups: [[JobOutcome]]) {
        instruments.stage("store", seconds: seconds)
        for stage in ["queue", "rank", "fuse"] {
            for outcomes in groups {
                if let longest = outcomes.compactMap({ $0.timingsMs[stage] }).max() { instruments.stage(stage, seconds: longest / 1000) }
            }
        }
    }

    private final class Forwarder: @unchecked Sendable {
        weak var target: WorkerService?
    }

    var isStopping: Bool { lock.withLock { _stopping } }

    /// Runs until `stop()`, a graceful shutdown of its ServiceGroup, or cancellation; then
    /// drains: finishes the current batch within the drain time, flushes the outbox, commits
    /// and leaves the group, and returns. Throws only for faults no retry can fix (wrong
    /// credentials, a missing database, an outdated schema) and for unexpected errors.
    public func run() async throws {
        do {
            try await withTaskCancellationOrGracefulShutdownHandler {
                try await runUntilStopped()
            } onCancelOrGracefulShutdown: { [self] in
                Task { await self.stop() }
            }
        } catch {
            // The last word to the supervisor names the fault, so a crash loop says why.
            var report = currentReport()
            report.fatalError = "\(error)"
            _ = heartbeat?.send(report)
            throw error
        }
    }

    private func runUntilStopped() async throws {
        logger.info("worker \(config.workerId) starting: group \(config.kafka.groupId), topic \(config.kafka.jobsTopic), ranker \(processor.rankers.label), fuser \(processor.fuser.label)")
        // Heartbeats to the supervisor start first and never wait on the database, so a worker
        // that rides out an outage (even at start-up) is seen alive and degraded, not hung.
        let beats = Task { await self.supervisorHeartbeatLoop() }
        defer { beats.cancel() }
        do {
            try await registerWorker()
        } catch where isStopping && !Self.isPermanent(error) {
            logger.info("worker \(config.workerId) stopped during start-up")
            await shutDown(registered: false)
            return
        } catch {
            await shutDown(registered: false)
            throw error
        }
        setState(.running)
        listener.start()
        lock.withLock { relayRunning = true }
        let relayTask = Task {
            await self.relay.run()
            self.lock.withLock { self.relayRunning = false }
        }
        let fleet = Task { await self.fleetHeartbeatLoop() }
        let fatalWatch = Task { await self.stopOnFatalKafkaError() }
        var failure: Error?
        // Stores overlap the compute of the batches after them, stay in batch order, and mark each
        // batch's offsets done only once the store that wrote it returned.
        let stores = StoreQueue<ComputedBatch>(capacity: Self.storeQueueBatches, maxPerStore: Self.storeQueueBatches) { [weak self] batches in
            guard let self else { throw CancellationError() }
            try await self.storeAndCommit(batches)
        }
        fusion?.start()
        while !isStopping {
            // Backpressure: with too many fusions unfinished, stop taking batches (the consumer's buffer fills and pauses fetching).
            while let fusion, !fusion.hasRoom, !isStopping { try? await Task.sleep(for: .milliseconds(5)) }
            let consumeStart = Date()
            let batch = await consumer.nextBatch(maxCount: config.batching.maxJobs,
                                                 maxWait: .milliseconds(config.batching.maxWaitMilliseconds))
            instruments.stage("consume", seconds: Date().timeIntervalSince(consumeStart))
            // Claiming the batch and checking for a stop happen under one lock, so `stop()`
            // either sees this batch in flight (and waits for it) or the batch is never started.
            guard !batch.isEmpty, let claimed = claim(batch) else { break }
            do {
                if fusion != nil {
                    defer { release(claimed) }
                    try await computeAndHandOff(batch)
                    continue
                }
                let computed: [JobOutcome]
                do {
                    computed = try await compute(batch)
                } catch {
                    release(claimed)
                    throw error
                }
                do {
                    let waitStart = Date()
                    try await stores.enqueue(ComputedBatch(claim: claimed, messages: batch, outcomes: computed))
                    instruments.stage("store_wait", seconds: Date().timeIntervalSince(waitStart))
                } catch {
                    release(claimed)
                    throw error
                }
            } catch where isStopping {
                break
            } catch {
                failure = error
                break
            }
        }
        // The batches handed to the store are stored within the drain (a stop abandons no stored work half-way).
        do {
            try await stores.finish()
        } catch where isStopping {
            // A stop cut a store's retries short: its batches stay uncommitted and are delivered again.
        } catch {
            if failure == nil { failure = error }
        }
        for abandoned in stores.abandon() { release(abandoned.claim) }
        setState(.draining)
        await fusion?.shutdown()
        relayTask.cancel()
        fleet.cancel()
        fatalWatch.cancel()
        listener.stop()
        if failure == nil { failure = lock.withLock { kafkaFatal } }
        // A relay stopped mid-round finishes that round (the round is not cancelled) and still holds its
        // claims meanwhile: the flush would take them for another relay's and leave them. Let that round
        // settle first (within the drain time).
        let relayDeadline = Date().addingTimeInterval(secondsLeftToDrain)
        while lock.withLock({ relayRunning }) && Date() < relayDeadline {
            try? await Task.sleep(for: .milliseconds(10))
        }
        if failure == nil { await flushOutbox() }
        await shutDown(registered: true)
        if let failure { throw failure }
    }

    /// A fatal librdkafka error (a fenced or fatal idempotent producer, a fenced static member)
    /// leaves a client that can never work again: the worker stops and `run()` throws, so the
    /// process exits non-zero and its supervisor (or Kubernetes) starts a fresh one.
    private func stopOnFatalKafkaError() async {
        let fatal: WorkerError? = await withTaskGroup(of: WorkerError?.self) { group in
            group.addTask { [consumer] in
                for await case .fatal(let error) in consumer.events { return .kafkaFatal(client: "consumer", error) }
                return nil
            }
            group.addTask { [producer] in
                for await case .fatal(let error) in producer.events { return .kafkaFatal(client: "producer", error) }
                return nil
            }
            // Streams end only at shutdown; the first fatal error (or the watch's cancellation) decides.
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
        guard let fatal, !Task.isCancelled else { return }
        logger.critical("\(fatal); stopping")
        lock.withLock { kafkaFatal = fatal }
        await stop()
    }

    /// Leaves the group, flushes the producer and closes the pool, within what is left of the drain time.
    private func shutDown(registered: Bool) async {
        setState(.stopping)
        await consumer.close()
        await producer.flush(timeout: .milliseconds(Int(max(0.5, min(5, secondsLeftToDrain)) * 1000)))
        if registered && secondsLeftToDrain > 0 {
            _ = try? await pool.withConnection { conn in
                try await conn.execute("UPDATE workers SET state = 'stopped', last_heartbeat = now() WHERE worker_id = \(self.config.workerId)")
            }
        }
        await pool.close()
        logger.info("worker \(config.workerId) stopped")
    }

    private var secondsLeftToDrain: Double {
        lock.withLock { drainDeadline }.map { $0.timeIntervalSinceNow } ?? config.drainSeconds
    }

    /// Asks the worker to stop: no new batch starts, retry sleeps end at once, and the current
    /// batch may finish within the drain time. Returns once the in-flight batch finished or
    /// the drain time passed.
    public func stop() async {
        let first = lock.withLock { () -> Bool in
            defer { _stopping = true }
            if !_stopping { drainDeadline = Date().addingTimeInterval(config.drainSeconds) }
            return !_stopping
        }
        guard first else { return }
        setState(.draining)
        stopLatch.release()
        let deadline = lock.withLock { drainDeadline! }
        while hasUnfinishedWork && Date() < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        if hasUnfinishedWork {
            logger.warning("drain time of \(config.drainSeconds) s passed with a batch in flight: abandoning it uncommitted (it will be redelivered)")
        }
        // Wake the loop if it waits for messages; closing leaves the group and commits stored offsets.
        await consumer.close()
    }

    /// A batch in flight, or fusions not yet stored.
    private var hasUnfinishedWork: Bool { lock.withLock { inFlightCount > 0 } || (fusion?.unfinishedCount ?? 0) > 0 }

    static func isPermanent(_ error: Error) -> Bool {
        if error is WorkerError { return true }
        if let e = error as? PostgresError { return e.isPermanent }
        return false
    }

    // MARK: - Pipeline

    /// Registers a batch as in flight and returns its claim number, or nil when the worker stops.
    private func claim(_ batch: [KafkaMessage]) -> Int? {
        let number = lock.withLock { () -> Int? in
            guard !_stopping else { return nil }
            claims += 1
            inFlight[claims] = (Set(batch.map(\.topicPartition)), batch.count)
            return claims
        }
        instruments.inFlight(lock.withLock { inFlightCount })
        return number
    }

    /// A claimed batch is stored or abandoned: it no longer holds its partitions.
    private func release(_ claimed: Int) {
        let left = lock.withLock { () -> Int in
            inFlight[claimed] = nil
            lastProgress = Date()
            for _ in 0..<batchWaiters { batchDone.signal() }
            batchWaiters = 0
            return inFlightCount
        }
        instruments.inFlight(left)
    }

    /// With continuous fusion: computes the batch and hands its outcomes to the fusion stage, which stores them.
    private func computeAndHandOff(_ batch: [KafkaMessage]) async throws {
        let outcomes = try await compute(batch)
        try await fusion!.accept(batch, outcomes: outcomes)
    }

    /// Validates, looks up already-stored jobs and ranks (and fuses, without continuous fusion) one batch.
    /// The lookup may miss jobs the batches before are storing right now; the store skips those itself.
    private func compute(_ batch: [KafkaMessage]) async throws -> [JobOutcome] {
        instruments.batch(size: batch.count)
        let messages = batch.map { m in
            IncomingMessage(coordinates: MessageCoordinates(topic: m.topic, partition: m.partition, offset: m.offset),
                            key: m.key, value: m.value, timestamp: m.timestamp)
        }
        let validateStart = Date()
        let validated = processor.validate(messages)
        let lookupStart = Date()
        instruments.stage("validate", seconds: lookupStart.timeIntervalSince(validateStart))
        let stored = try await retry.run("looking up stored jobs", onRetry: retried("lookup")) {
            try await store.existingJobIds(validated.jobIds)
        }
        recovered("lookup")
        let processStart = Date()
        instruments.stage("lookup", seconds: processStart.timeIntervalSince(lookupStart))
        let outcomes = await processor.process(validated, isStored: stored, deferFusion: fusion != nil)
        instruments.stage("process", seconds: Date().timeIntervalSince(processStart))
        // Pairs compared: the full matrix, or the model passes of a bubble tournament; for the other kinds
        // the passes their answer cost.
        instruments.rankedPairs(outcomes.reduce(0) { total, outcome in
            if let rank = outcome.rank {
                return total + max(rank.forwardPasses, rank.comparisons.map { $0.count * ($0.count - 1) } ?? 0)
            }
            return total + (outcome.compare?.forwardPasses ?? outcome.selection?.forwardPasses ?? outcome.reward?.forwardPasses ?? 0)
        })
        if let padding = processor.ranker.lastPaddingAvoided { instruments.paddingAvoided(padding) }
        return outcomes
    }

    /// Batches computed and handed to the store queue: at most this many wait while one store runs,
    /// and one store writes at most this many.
    static let storeQueueBatches = 4

    /// A claimed batch with its outcomes, waiting for the store.
    struct ComputedBatch: Sendable {
        var claim: Int
        var messages: [KafkaMessage]
        var outcomes: [JobOutcome]
    }

    /// Stores computed batches as one statement, then marks their messages done so their offsets
    /// commit, and releases their claims (whether or not the store succeeded).
    private func storeAndCommit(_ batches: [ComputedBatch]) async throws {
        defer { batches.forEach { release($0.claim) } }
        let outcomes = batches.flatMap(\.outcomes)
        let storeStart = Date()
        var written = try await storeDurably(outcomes)
        recovered("store")
        let storeSeconds = Date().timeIntervalSince(storeStart)
        for (message, outcome) in zip(batches.flatMap(\.messages), outcomes) {
            consumer.markDone(message)
            // An outcome the store did not write was stored meanwhile (by an earlier copy in these
            // batches, a batch before, or another worker).
            if let status = outcome.status, written.remove(outcome.jobId) != nil {
                instruments.jobFinished(status)
            } else {
                instruments.redelivered()
            }
        }
        recordStageTimes(store: storeSeconds, of: batches.map(\.outcomes))
        relay.wake.signal()
        let counts = Dictionary(grouping: outcomes.compactMap(\.status), by: \.rawValue).mapValues(\.count)
        let already = outcomes.filter { $0.status == nil }.count
        logger.info("\(batches.count == 1 ? "batch" : "\(batches.count) batches") of \(outcomes.count) stored: \(counts.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", "))\(already > 0 ? ", \(already) already stored" : "")")
    }

    /// Stores the batch in one transaction, retrying transient faults. A batch the database
    /// refuses for another reason is stored job by job; a job that still cannot be stored is
    /// recorded as failed with the reason, so one bad job never blocks its partition.
    /// Returns the job ids it wrote (outcomes stored before are skipped).
    @discardableResult
    private func storeDurably(_ outcomes: [JobOutcome]) async throws -> Set<String> {
        do {
            let written = try await retry.run("storing a batch of \(outcomes.count)", onRetry: retried("store")) {
                try await store.store(outcomes, workerId: config.workerId)
            }
            return Set(written)
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            logger.error("storing the batch failed (\(error)); storing its jobs one by one")
        }
        var written = Set<String>()
        for outcome in outcomes where outcome.status != nil {
            do {
                let ids = try await retry.run("storing job \(outcome.jobId)", onRetry: retried("store")) {
                    try await store.store([outcome], workerId: config.workerId)
                }
                written.formUnion(ids)
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                let failed = processor.failed(outcome, reason: "storing the result failed: \(error)")
                logger.error("job \(outcome.jobId) could not be stored (\(error)); recording it as failed")
                let ids = try await retry.run("storing job \(outcome.jobId) as failed", onRetry: retried("store")) {
                    try await store.store([failed], workerId: config.workerId)
                }
                written.formUnion(ids)
            }
        }
        return written
    }

    /// Counts a retry and marks the worker degraded until the operation succeeds (`recovered`).
    private func retried(_ operation: String) -> @Sendable (Error) -> Void {
        { [weak self, instruments] _ in
            instruments.retried(operation)
            self?.lock.withLock { _ = self?.faulted.insert(operation) }
        }
    }

    private func recovered(_ operation: String) {
        lock.withLock { _ = faulted.remove(operation) }
    }

    /// Called on the consumer's thread before a revocation completes: waits for the batch that
    /// holds revoked partitions to finish (bounded by the drain time). Its offsets are stored
    /// before the handler returns, and anything later is fenced by the consumer.
    private func rebalanced(_ event: RebalanceEvent) {
        switch event {
        case .assigned(let tps):
            logger.info("partitions assigned: \(tps.map(\.description).sorted().joined(separator: ", "))")
        case .revoked(let tps), .lost(let tps):
            fusion?.revoke(tps)
            // Several batches may hold revoked partitions (computing, waiting for the store, storing): wait for each.
            let deadline = DispatchTime.now() + config.drainSeconds
            var logged = false
            while true {
                let mustWait = lock.withLock { () -> Bool in
                    // A stopping worker already waited its drain time in `stop()`: abandon, don't wait twice.
                    guard !_stopping, inFlight.values.contains(where: { !$0.partitions.isDisjoint(with: tps) }) else { return false }
                    batchWaiters += 1
                    return true
                }
                guard mustWait else { break }
                if !logged {
                    logger.info("partitions revoked during a batch: waiting up to \(config.drainSeconds) s for it to finish")
                    logged = true
                }
                if batchDone.wait(timeout: deadline) == .timedOut {
                    logger.warning("batch did not finish in time; its revoked partitions will be redelivered to their new owner")
                    break
                }
            }
        }
    }

    // MARK: - Outbox

    /// Publishes one round of due outbox rows (tests drive the relay with it).
    @discardableResult
    func publishPendingOnce() async throws -> Int {
        try await relay.publishPendingOnce().sent
    }

    /// Publishes what is pending until the outbox is empty or the drain time is over.
    private func flushOutbox() async {
        while secondsLeftToDrain > 0 {
            do {
                let round = try await relay.publishPendingOnce()
                guard round.claimed == 0 else { continue }
                // Done when nothing is pending, or when the next row falls due after the drain time.
                guard let due = try await store.secondsUntilNextDue(), due <= secondsLeftToDrain else { return }
                await relay.wake.wait(upTo: min(0.2, max(0, secondsLeftToDrain)))
            } catch {
                logger.warning("flushing the outbox: \(error)")
                await relay.wake.wait(upTo: min(0.2, max(0, secondsLeftToDrain)))
            }
        }
        logger.warning("outbox not empty at shutdown; another worker's relay will publish the rest")
    }

    // MARK: - Fleet state

    private func setState(_ state: HeartbeatReport.State) {
        lock.withLock { _state = state }
    }

    /// What heartbeats report: `degraded` while a starting or running worker rides out a fault.
    private var reportedState: HeartbeatReport.State {
        lock.withLock { (_state == .running || _state == .starting) && !faulted.isEmpty ? .degraded : _state }
    }

    /// The newest migration this build writes against; older databases must be migrated first.
    public static let requiredSchemaVersion = 5

    private func checkSchema() async throws {
        defer { recovered("schema") }
        let version = try await retry.run("checking the database schema", onRetry: retried("schema")) {
            try await pool.withConnection { conn -> Int in
                let exists = try await conn.query("SELECT to_regclass('schema_migrations') IS NOT NULL AS present")[0].decode("present", as: Bool.self)
                guard exists else { return 0 }
                return try await conn.query("SELECT coalesce(max(version), 0) AS v FROM schema_migrations")[0].decode("v", as: Int.self)
            }
        }
        guard version >= Self.requiredSchemaVersion else {
            throw WorkerError.schemaOutdated(found: version, required: Self.requiredSchemaVersion)
        }
    }

    private func registerWorker() async throws {
        try await checkSchema()
        let c = config
        defer { recovered("register") }
        try await retry.run("registering the worker", onRetry: retried("register")) {
            try await pool.withConnection { conn in
                try await conn.execute("""
                    INSERT INTO workers (worker_id, host, pid, state, ranker, fuser)
                    VALUES (\(c.workerId), \(ProcessInfo.processInfo.hostName), \(Int(getpid())), 'starting', \(self.processor.rankers.label), \(self.processor.fuser.label))
                    ON CONFLICT (worker_id) DO UPDATE SET host = EXCLUDED.host, pid = EXCLUDED.pid, state = EXCLUDED.state,
                        started_at = now(), last_heartbeat = now(), ranker = EXCLUDED.ranker, fuser = EXCLUDED.fuser
                    """)
            }
        }
    }

    /// Heartbeats on the supervisor's pipe: no database involved, from the first moment.
    private func supervisorHeartbeatLoop() async {
        let interval = config.supervisor.heartbeatSeconds
        while !Task.isCancelled {
            heartbeat?.send(currentReport())
            try? await Task.sleep(for: .milliseconds(Int(interval * 1000)))
        }
    }

    /// The worker's row in the workers table, the backlog metric, and the ageing of dead
    /// workers' rows (less often): about one statement per heartbeat interval.
    private func fleetHeartbeatLoop() async {
        let interval = config.supervisor.heartbeatSeconds
        var beats = 0
        while !Task.isCancelled {
            let report = currentReport()
            let partitions = try? PostgresJSON(encoding: report.partitions)
            let pending = try? await pool.withConnection { conn -> Int in
                try await conn.query("""
                    WITH beat AS (
                        UPDATE workers SET state = \(report.state.rawValue), last_heartbeat = now(), assigned_partitions = \(partitions)::jsonb,
                               in_flight = \(report.inFlight) WHERE worker_id = \(report.workerId))
                    SELECT count(*) AS n FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL
                    """)[0].decode("n")
            }
            if let pending { instruments.outboxPending(pending) }
            if beats % 30 == 0 {
                // Rows of workers that stopped heartbeating long ago age out (any worker may do it).
                let retention = config.supervisor.deadWorkerRetentionSeconds
                _ = try? await pool.withConnection { conn in
                    try await conn.execute("DELETE FROM workers WHERE last_heartbeat < now() - make_interval(secs => \(retention))")
                }
            }
            beats += 1
            try? await Task.sleep(for: .milliseconds(Int(interval * 1000)))
        }
    }

    func currentReport() -> HeartbeatReport {
        let lag = consumer.lag
        instruments.consumerLag(lag)
        let state = reportedState
        let (batchInFlight, progress) = lock.withLock { (inFlightCount, lastProgress) }
        let inFlight = batchInFlight + (fusion?.unfinishedCount ?? 0)
        return HeartbeatReport(workerId: config.workerId, pid: getpid(), state: state,
                               partitions: consumer.assignment.map(\.description).sorted(), inFlight: inFlight,
                               lastProgress: progress, lag: lag, rssBytes: HeartbeatWriter.residentBytes(), metrics: metrics.snapshot())
    }
}

/// Faults of the worker's environment that no retry fixes: the process ends with this line.
public enum WorkerError: Error, CustomStringConvertible {
    case schemaOutdated(found: Int, required: Int)
    case kafkaFatal(client: String, KafkaError)

    public var description: String {
        switch self {
        case .schemaOutdated(let found, let required):
            "the database schema is at version \(found), this worker needs \(required): run `blendd migrate` first"
        case .kafkaFatal(let client, let error):
            "the Kafka \(client) failed fatally and cannot recover: \(error)"
        }
    }
}
