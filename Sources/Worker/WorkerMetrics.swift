import BlendCore
import Metrics

/// The worker's instruments, recorded through swift-metrics into the worker's registry
/// (whose snapshot goes to the supervisor in every heartbeat).
struct WorkerMetrics: Sendable {
    let factory: RegistryMetricsFactory

    init(registry: MetricsRegistry) {
        MetricNames.describeWorkerMetrics(registry)
        factory = RegistryMetricsFactory(registry: registry)
    }

    func jobFinished(_ status: JobStatus) {
        Counter(label: MetricNames.jobs, dimensions: [("status", status.rawValue)], factory: factory).increment()
    }

    func redelivered() { Counter(label: MetricNames.redeliveries, factory: factory).increment() }

    func stage(_ stage: String, seconds: Double) {
        Timer(label: MetricNames.stageDuration, dimensions: [("stage", stage)], factory: factory).recordSeconds(seconds)
    }

    func batch(size: Int) { Recorder(label: MetricNames.batchJobs, aggregate: true, factory: factory).record(size) }

    func inFlight(_ jobs: Int) { Gauge(label: MetricNames.inFlight, factory: factory).record(jobs) }

    func retried(_ operation: String) {
        Counter(label: MetricNames.transientRetries, dimensions: [("operation", operation)], factory: factory).increment()
    }

    func published(topic: String) {
        Counter(label: MetricNames.eventsPublished, dimensions: [("topic", topic)], factory: factory).increment()
    }

    func outboxFailed(topic: String, permanent: Bool) {
        Counter(label: MetricNames.outboxFailures, dimensions: [("topic", topic), ("class", permanent ? "permanent" : "transient")],
                factory: factory).increment()
    }

    func deadLetterCut() { Counter(label: MetricNames.deadLettersCut, factory: factory).increment() }

    func outboxPending(_ events: Int) { Gauge(label: MetricNames.outboxPending, factory: factory).record(events) }

    func consumerLag(_ messages: Int64) { Gauge(label: MetricNames.consumerLag, factory: factory).record(messages) }

    func paddingAvoided(_ share: Double) { Gauge(label: MetricNames.paddingWaste, factory: factory).record(share) }

    func rankedPairs(_ pairs: Int) {
        Counter(label: MetricNames.rankedPairs, factory: factory).increment(by: pairs)
    }
}
