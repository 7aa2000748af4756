import Foundation
import XCTest
import Yams
@testable import BlendCore

/// The deploy files parse, and they name only metrics the code exports and settings the
/// configuration knows.
final class DeployFilesTests: XCTestCase {
    var deploy: URL { RepositoryPaths.root.appendingPathComponent("deploy") }

    func files(_ suffixes: [String]) throws -> [URL] {
        let walker = FileManager.default.enumerator(at: deploy, includingPropertiesForKeys: nil)!
        return walker.compactMap { $0 as? URL }.filter { url in suffixes.contains { url.path.hasSuffix($0) } }.sorted { $0.path < $1.path }
    }

    func testEveryYAMLAndJSONFileParses() throws {
        let yaml = try files([".yaml", ".yml"])
        XCTAssertGreaterThanOrEqual(yaml.count, 7)
        for file in yaml {
            let text = try String(contentsOf: file, encoding: .utf8)
            let documents = try Array(Yams.load_all(yaml: text))
            XCTAssertFalse(documents.isEmpty, file.lastPathComponent)
            for case let document as [String: Any] in documents where file.path.contains("/k8s/") {
                XCTAssertNotNil(document["apiVersion"], "\(file.lastPathComponent) has apiVersion")
                XCTAssertNotNil(document["kind"], "\(file.lastPathComponent) has kind")
            }
        }
        for file in try files([".json"]) {
            XCTAssertNoThrow(try JSONSerialization.jsonObject(with: Data(contentsOf: file)), file.lastPathComponent)
        }
        // The ConfigMap's embedded configuration is itself a valid blendd configuration.
        let configMap = try Yams.load(yaml: String(contentsOf: deploy.appendingPathComponent("k8s/configmap.yaml"), encoding: .utf8)) as! [String: Any]
        let embedded = (configMap["data"] as! [String: String])["blendd.yaml"]!
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("cm-\(UUID().uuidString).yaml").path
        try embedded.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let problems = ConfigurationLoader.load(file: path, environment: [:]).problems
        XCTAssertEqual(problems.filter { !$0.location.hasPrefix("models.") }.map(\.description), [], "only the model directories are missing here")
    }

    func testTheDashboardUsesOnlyExportedMetricNames() throws {
        let dashboard = try String(contentsOf: deploy.appendingPathComponent("grafana/blendd.json"), encoding: .utf8)
        let exported: Set<String> = [
            MetricNames.jobs, MetricNames.stageDuration, MetricNames.batchJobs, MetricNames.paddingWaste, MetricNames.outboxPending,
            MetricNames.eventsPublished, MetricNames.consumerLag, MetricNames.inFlight, MetricNames.transientRetries,
            MetricNames.redeliveries, MetricNames.rankedPairs, MetricNames.restarts, MetricNames.workers, MetricNames.uptime, MetricNames.degraded,
        ]
        let histograms: Set<String> = [MetricNames.stageDuration, MetricNames.batchJobs]
        let regex = try NSRegularExpression(pattern: "blendd_[a-z_]+")
        let used = Set(regex.matches(in: dashboard, range: NSRange(dashboard.startIndex..., in: dashboard)).map { String(dashboard[Range($0.range, in: dashboard)!]) })
        XCTAssertFalse(used.isEmpty)
        for name in used {
            let base = ["_bucket", "_sum", "_count"].reduce(name) { $0.hasSuffix($1) && histograms.contains(String($0.dropLast($1.count))) ? String($0.dropLast($1.count)) : $0 }
            XCTAssertTrue(exported.contains(base), "the dashboard uses \(name), which blendd does not export")
        }
        XCTAssertEqual(exported.subtracting(used.map { n in ["_bucket", "_sum", "_count"].reduce(n) { $0.hasSuffix($1) ? String($0.dropLast($1.count)) : $0 } }), [],
                       "every exported metric has a panel")
    }

    func testEveryEnvironmentVariableTheDeployFilesSetIsASetting() throws {
        let regex = try NSRegularExpression(pattern: "BLENDD_[A-Z0-9_]+")
        var names = Set<String>()
        for file in try files([".yaml", ".env", ".service", "Dockerfile"]) {
            let text = try String(contentsOf: file, encoding: .utf8)
            for m in regex.matches(in: text, range: NSRange(text.startIndex..., in: text)) { names.insert(String(text[Range(m.range, in: text)!])) }
        }
        XCTAssertGreaterThan(names.count, 5)
        for raw in names {
            let name = raw.hasSuffix("_FILE") ? String(raw.dropLast(5)) : raw
            let known = ConfigurationLoader.settingsByEnvironment[name] != nil || ConfigurationLoader.aliases[name] != nil
                || name.hasPrefix(ConfigurationLoader.kafkaPropertyEnvironmentPrefix)
            XCTAssertTrue(known, "\(raw) is set in deploy/ but is not a blendd setting")
        }
    }
}

final class MetricsRenderingTests: XCTestCase {
    func testSwiftMetricsInstrumentsLandInTheRegistryAndRenderAsPrometheusText() {
        let registry = MetricsRegistry()
        MetricNames.describeWorkerMetrics(registry)
        let factory = RegistryMetricsFactory(registry: registry)
        let counter = factory.makeCounter(label: MetricNames.jobs, dimensions: [("status", "completed")])
        counter.increment(by: 3)
        factory.makeTimer(label: MetricNames.stageDuration, dimensions: [("stage", "rank")]).recordNanoseconds(20_000_000)
        factory.makeRecorder(label: MetricNames.inFlight, dimensions: [], aggregate: false).record(Int64(7))
        let text = PrometheusText.render(PrometheusText.labelling(registry.snapshot(), "worker", "w\"1"))
        XCTAssertTrue(text.contains("# TYPE blendd_jobs_total counter\nblendd_jobs_total{status=\"completed\",worker=\"w\\\"1\"} 3\n"), text)
        XCTAssertTrue(text.contains("blendd_stage_duration_seconds_bucket{stage=\"rank\",worker=\"w\\\"1\",le=\"0.025\"} 1\n"), text)
        XCTAssertTrue(text.contains("blendd_stage_duration_seconds_bucket{stage=\"rank\",worker=\"w\\\"1\",le=\"0.01\"} 0\n"), text)
        XCTAssertTrue(text.contains("blendd_stage_duration_seconds_count{stage=\"rank\",worker=\"w\\\"1\"} 1\n"), text)
        XCTAssertTrue(text.contains("blendd_inflight_jobs{worker=\"w\\\"1\"} 7\n"), text)
    }

    func testHeartbeatReportsRoundTripAsOneLine() throws {
        let report = HeartbeatReport(workerId: "h-w0", pid: 42, state: .running, partitions: ["blend.jobs[1]"], inFlight: 3,
                                     lastProgress: Date(timeIntervalSince1970: 1_800_000_000.5), lag: 12, rssBytes: 1 << 20, metrics: [])
        let line = try report.line()
        XCTAssertEqual(line.last, 0x0A)
        XCTAssertEqual(line.filter { $0 == 0x0A }.count, 1)
        XCTAssertEqual(try HeartbeatReport.parse(line: line.dropLast()), report)
    }
}
