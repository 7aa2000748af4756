import CoreMetrics

/// A swift-metrics backend writing into a `MetricsRegistry`: code records through the
/// standard API (`Counter`, `Recorder`, `Timer`, `Meter`), and the registry's snapshot travels
/// in heartbeats to the supervisor, which serves it as Prometheus text. Labels are metric
/// names, dimensions become Prometheus labels; timers record seconds, aggregating recorders
/// are histograms and non-aggregating ones gauges.
public final class RegistryMetricsFactory: MetricsFactory, @unchecked Sendable {
    public let registry: MetricsRegistry

    public init(registry: MetricsRegistry) { self.registry = registry }

    private func labels(_ dimensions: [(String, String)]) -> [String: String] {
        Dictionary(dimensions, uniquingKeysWith: { _, last in last })
    }

    public func makeCounter(label: String, dimensions: [(String, String)]) -> CounterHandler {
        Handler(registry: registry, name: label, labels: labels(dimensions), kind: .counter)
    }

    public func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> FloatingPointCounterHandler {
        Handler(registry: registry, name: label, labels: labels(dimensions), kind: .counter)
    }

    public func makeMeter(label: String, dimensions: [(String, String)]) -> MeterHandler {
        Handler(registry: registry, name: label, labels: labels(dimensions), kind: .gauge)
    }

    public func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> RecorderHandler {
        Handler(registry: registry, name: label, labels: labels(dimensions), kind: aggregate ? .histogram : .gauge)
    }

    public func makeTimer(label: String, dimensions: [(String, String)]) -> TimerHandler {
        Handler(registry: registry, name: label, labels: labels(dimensions), kind: .histogram)
    }

    public func destroyCounter(_ handler: CounterHandler) {}
    public func destroyFloatingPointCounter(_ handler: FloatingPointCounterHandler) {}
    public func destroyMeter(_ handler: MeterHandler) {}
    public func destroyRecorder(_ handler: RecorderHandler) {}
    public func destroyTimer(_ handler: TimerHandler) {}

    /// One handler type for every metric kind; the registry does the locking.
    final class Handler: CounterHandler, FloatingPointCounterHandler, MeterHandler, RecorderHandler, TimerHandler, @unchecked Sendable {
        let registry: MetricsRegistry
        let name: String
        let labels: [String: String]
        let kind: MetricFamily.Kind

        init(registry: MetricsRegistry, name: String, labels: [String: String], kind: MetricFamily.Kind) {
            self.registry = registry
            self.name = name
            self.labels = labels
            self.kind = kind
        }

        func increment(by amount: Int64) { registry.increment(name, by: Double(amount), labels: labels) }
        func increment(by amount: Double) {
            if kind == .gauge { registry.add(name, amount, labels: labels) } else { registry.increment(name, by: amount, labels: labels) }
        }
        func decrement(by amount: Double) { registry.add(name, -amount, labels: labels) }
        func reset() { registry.set(name, 0, labels: labels) }
        func set(_ value: Int64) { registry.set(name, Double(value), labels: labels) }
        func set(_ value: Double) { registry.set(name, value, labels: labels) }
        func record(_ value: Int64) { record(Double(value)) }
        func record(_ value: Double) {
            if kind == .histogram { registry.observe(name, value, labels: labels) } else { registry.set(name, value, labels: labels) }
        }
        func recordNanoseconds(_ duration: Int64) { registry.observe(name, Double(duration) / 1e9, labels: labels) }
        func preferDisplayUnit(_ unit: TimeUnit) {}
    }
}
