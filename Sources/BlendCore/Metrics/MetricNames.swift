/// Every metric blendd exports. The dashboard in deploy/grafana and the alerting examples use
/// exactly these names; a test checks that.
public enum MetricNames {
    // Worker
    public static let jobs = "blendd_jobs_total"
    public static let stageDuration = "blendd_stage_duration_seconds"
    public static let batchJobs = "blendd_batch_jobs"
    public static let paddingWaste = "blendd_padding_waste_ratio"
    public static let outboxPending = "blendd_outbox_pending_events"
    public static let eventsPublished = "blendd_events_published_total"
    public static let outboxFailures = "blendd_outbox_failures_total"
    public static let deadLettersCut = "blendd_dead_letters_cut_total"
    public static let consumerLag = "blendd_consumer_lag_messages"
    public static let inFlight = "blendd_inflight_jobs"
    public static let transientRetries = "blendd_transient_retries_total"
    public static let redeliveries = "blendd_redelivered_jobs_total"
    public static let rankedPairs = "blendd_ranked_pairs_total"
    // Supervisor
    public static let restarts = "blendd_worker_restarts_total"
    public static let workers = "blendd_workers"
    public static let uptime = "blendd_supervisor_uptime_seconds"
    public static let degraded = "blendd_supervisor_degraded"

    public static let stageBuckets: [Double] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120]
    public static let batchBuckets: [Double] = [1, 2, 4, 8, 16, 32, 64]

    /// Describes the worker's metrics on a registry.
    public static func describeWorkerMetrics(_ r: MetricsRegistry) {
        r.describe(jobs, .counter, help: "Jobs finished, by outcome status (completed, failed, rejected).")
        r.describe(stageDuration, .histogram, help: "Time per pipeline stage: per batch consume, validate, lookup, process, queue, rank, fuse, store_wait, store; per relay round outbox_due, outbox_claim, outbox_claim_empty, outbox_publish, outbox_settle.", buckets: stageBuckets)
        r.describe(batchJobs, .histogram, help: "Jobs per micro-batch.", buckets: batchBuckets)
        r.describe(paddingWaste, .gauge, help: "Share of positions padding would have cost in the last ranking batch; blendd packs sequences and computes none of them.")
        r.describe(outboxPending, .gauge, help: "Completion events stored but not yet published.")
        r.describe(eventsPublished, .counter, help: "Outbox entries published, by topic.")
        r.describe(outboxFailures, .counter, help: "Outbox entries not published, by topic and class (transient: retried later; permanent: set aside with the error).")
        r.describe(deadLettersCut, .counter, help: "Dead-letter copies too large for the producer, published cut with a digest of the original.")
        r.describe(consumerLag, .gauge, help: "Messages behind the high watermark on this worker's partitions.")
        r.describe(inFlight, .gauge, help: "Jobs being processed now.")
        r.describe(transientRetries, .counter, help: "Retries after transient infrastructure faults, by operation.")
        r.describe(redeliveries, .counter, help: "Redelivered jobs acknowledged without recomputation.")
        r.describe(rankedPairs, .counter, help: "Ordered candidate pairs compared by the ranker (rate = pairs per second).")
    }

    public static func describeSupervisorMetrics(_ r: MetricsRegistry) {
        r.describe(restarts, .counter, help: "Worker replacements, by reason (exited, crashed, hung, stalled, memory).")
        r.describe(workers, .gauge, help: "Worker processes by state.")
        r.describe(uptime, .gauge, help: "Seconds since the supervisor started.")
        r.describe(degraded, .gauge, help: "1 when workers crash-loop and the supervisor reports itself not ready.")
    }
}
