import Foundation

/// One metric family as exported: what the worker sends in heartbeats and what the
/// supervisor renders on /metrics.
public struct MetricFamily: Sendable, Codable, Equatable {
    public enum Kind: String, Sendable, Codable { case counter, gauge, histogram }

    public struct Sample: Sendable, Codable, Equatable {
        public var labels: [String: String]
        /// Counter or gauge value; for histograms the sum of observations.
        public var value: Double
        /// Histograms only: cumulative counts per upper bound (the last is +Inf), and the count.
        public var buckets: [Double]?
        public var count: Double?
    }

    public var name: String
    public var help: String
    public var kind: Kind
    /// Histograms only.
    public var bounds: [Double]?
    public var samples: [Sample]
}

/// Counters, gauges and fixed-bucket histograms with labels, safe to update from any thread.
public final class MetricsRegistry: @unchecked Sendable {
    private struct Key: Hashable { let name: String; let labels: [String: String] }
    private struct Descriptor { let help: String; let kind: MetricFamily.Kind; let bounds: [Double]? }
    private struct HistogramState { var counts: [Double]; var sum: Double; var count: Double }

    private let lock = NSLock()
    private var descriptors: [String: Descriptor] = [:]
    private var values: [Key: Double] = [:]
    private var histograms: [Key: HistogramState] = [:]

    public init() {}

    public func describe(_ name: String, _ kind: MetricFamily.Kind, help: String, buckets: [Double]? = nil) {
        precondition(kind != .histogram || !(buckets ?? []).isEmpty, "histogram \(name) needs buckets")
        lock.withLock { descriptors[name] = Descriptor(help: help, kind: kind, bounds: buckets?.sorted()) }
    }

    public func increment(_ name: String, by amount: Double = 1, labels: [String: String] = [:]) {
        lock.withLock { values[Key(name: name, labels: labels), default: 0] += amount }
    }

    public func set(_ name: String, _ value: Double, labels: [String: String] = [:]) {
        lock.withLock { values[Key(name: name, labels: labels)] = value }
    }

    /// Adds to a gauge (meters' increment/decrement).
    public func add(_ name: String, _ delta: Double, labels: [String: String] = [:]) {
        lock.withLock { values[Key(name: name, labels: labels), default: 0] += delta }
    }

    public func observe(_ name: String, _ value: Double, labels: [String: String] = [:]) {
        lock.withLock {
            guard let bounds = descriptors[name]?.bounds else { return }
            let key = Key(name: name, labels: labels)
            var state = histograms[key] ?? HistogramState(counts: [Double](repeating: 0, count: bounds.count + 1), sum: 0, count: 0)
            let slot = bounds.firstIndex { value <= $0 } ?? bounds.count
            state.counts[slot] += 1
            state.sum += value
            state.count += 1
            histograms[key] = state
        }
    }

    public func value(_ name: String, labels: [String: String] = [:]) -> Double? {
        lock.withLock { values[Key(name: name, labels: labels)] }
    }

    /// Every described family with its current samples, sorted for stable output.
    public func snapshot() -> [MetricFamily] {
        lock.withLock {
            descriptors.keys.sorted().map { name in
                let d = descriptors[name]!
                var samples: [MetricFamily.Sample] = []
                if d.kind == .histogram {
                    for (key, state) in histograms where key.name == name {
                        var cumulative: [Double] = []
                        var running = 0.0
                        for c in state.counts { running += c; cumulative.append(running) }
                        samples.append(.init(labels: key.labels, value: state.sum, buckets: cumulative, count: state.count))
                    }
                } else {
                    for (key, v) in values where key.name == name { samples.append(.init(labels: key.labels, value: v)) }
                }
                samples.sort { $0.labels.sorted { $0.key < $1.key }.description < $1.labels.sorted { $0.key < $1.key }.description }
                return MetricFamily(name: name, help: d.help, kind: d.kind, bounds: d.bounds, samples: samples)
            }
        }
    }
}

/// Prometheus text exposition format 0.0.4.
public enum PrometheusText {
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// Renders families; families of the same name (e.g. from several workers) are merged
    /// under one HELP/TYPE header, their samples distinguished by labels.
    public static func render(_ families: [MetricFamily]) -> String {
        var merged: [String: MetricFamily] = [:]
        var order: [String] = []
        for f in families {
            if merged[f.name] == nil { merged[f.name] = MetricFamily(name: f.name, help: f.help, kind: f.kind, bounds: f.bounds, samples: []); order.append(f.name) }
            merged[f.name]!.samples += f.samples
        }
        var out = ""
        for name in order.sorted() {
            let f = merged[name]!
            out += "# HELP \(name) \(escapeHelp(f.help))\n# TYPE \(name) \(f.kind.rawValue)\n"
            for s in f.samples {
                if f.kind == .histogram, let bounds = f.bounds, let buckets = s.buckets {
                    for (i, le) in (bounds.map(format) + ["+Inf"]).enumerated() {
                        out += "\(name)_bucket\(labels(s.labels, extra: ("le", le))) \(format(buckets[i]))\n"
                    }
                    out += "\(name)_sum\(labels(s.labels)) \(format(s.value))\n"
                    out += "\(name)_count\(labels(s.labels)) \(format(s.count ?? 0))\n"
                } else {
                    out += "\(name)\(labels(s.labels)) \(format(s.value))\n"
                }
            }
        }
        return out
    }

    /// Adds a label (e.g. worker="w-1") to every sample.
    public static func labelling(_ families: [MetricFamily], _ key: String, _ value: String) -> [MetricFamily] {
        families.map { f in
            var f = f
            f.samples = f.samples.map { s in var s = s; s.labels[key] = value; return s }
            return f
        }
    }

    static func labels(_ labels: [String: String], extra: (String, String)? = nil) -> String {
        var pairs = labels.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        if let extra { pairs.append(extra) }
        guard !pairs.isEmpty else { return "" }
        return "{" + pairs.map { "\($0.0)=\"\(escapeLabel($0.1))\"" }.joined(separator: ",") + "}"
    }

    static func escapeLabel(_ s: String) -> String {
        s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
    }

    static func escapeHelp(_ s: String) -> String {
        s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\n", with: "\\n")
    }

    static func format(_ v: Double) -> String {
        if v.isNaN { return "NaN" }
        if v.isInfinite { return v > 0 ? "+Inf" : "-Inf" }
        if v == v.rounded() && abs(v) < 1e15 { return String(Int64(v)) }
        return String(v)
    }
}
