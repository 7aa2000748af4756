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

    /// Every Kubernetes document in deploy/k8s, by kind.
    func kubernetesDocuments() throws -> [String: [[String: Any]]] {
        var byKind: [String: [[String: Any]]] = [:]
        for file in try files([".yaml"]) where file.path.contains("/k8s/") {
            for case let document as [String: Any] in try Yams.load_all(yaml: String(contentsOf: file, encoding: .utf8)) {
                byKind[document["kind"] as! String, default: []].append(document)
            }
        }
        return byKind
    }

    func testTheDeploymentLeavesItsReplicaCountToKEDA() throws {
        let k8s = try kubernetesDocuments()
        let deployment = try XCTUnwrap(k8s["Deployment"]?.first)
        let spec = deployment["spec"] as! [String: Any]
        XCTAssertNil(spec["replicas"], "a fixed replica count resets KEDA's on every apply")
        let scaled = try XCTUnwrap(k8s["ScaledObject"]?.first)
        let target = (scaled["spec"] as! [String: Any])["scaleTargetRef"] as! [String: Any]
        XCTAssertEqual(target["name"] as? String, (deployment["metadata"] as! [String: Any])["name"] as? String)
    }

    /// The brokers take SASL_SSL with SCRAM: KEDA's lag trigger needs the same credentials, from
    /// the Secret the workers read, with the mechanism and TLS matching the workers' settings.
    func testTheLagTriggerAuthenticatesLikeTheWorkers() throws {
        let k8s = try kubernetesDocuments()
        let scaled = try XCTUnwrap(k8s["ScaledObject"]?.first)
        let triggers = (scaled["spec"] as! [String: Any])["triggers"] as! [[String: Any]]
        let kafka = try XCTUnwrap(triggers.first { $0["type"] as? String == "kafka" })
        let reference = try XCTUnwrap((kafka["authenticationRef"] as? [String: Any])?["name"] as? String, "the kafka trigger has an authenticationRef")
        let auth = try XCTUnwrap(k8s["TriggerAuthentication"]?.first { ($0["metadata"] as! [String: Any])["name"] as? String == reference },
                                 "TriggerAuthentication \(reference) is in deploy/k8s")
        let refs = (auth["spec"] as! [String: Any])["secretTargetRef"] as! [[String: String]]
        XCTAssertEqual(Set(refs.map { $0["parameter"]! }), ["sasl", "username", "password", "tls"])
        let secret = try XCTUnwrap(k8s["Secret"]?.first)
        let secretName = (secret["metadata"] as! [String: Any])["name"] as! String
        let values = secret["stringData"] as! [String: String]
        var resolved: [String: String] = [:]
        for ref in refs {
            XCTAssertEqual(ref["name"], secretName, "\(ref["parameter"]!) comes from the workers' Secret")
            resolved[ref["parameter"]!] = try XCTUnwrap(values[ref["key"]!], "the Secret has \(ref["key"]!)")
        }
        let configMap = try XCTUnwrap(k8s["ConfigMap"]?.first)
        let embedded = try Yams.load(yaml: (configMap["data"] as! [String: String])["blendd.yaml"]!) as! [String: Any]
        let properties = (embedded["kafka"] as! [String: Any])["properties"] as! [String: String]
        // librdkafka's mechanism names and KEDA's for the same thing.
        let kedaMechanism = ["PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256", "SCRAM-SHA-512": "scram_sha512"]
        XCTAssertEqual(resolved["sasl"], kedaMechanism[properties["sasl.mechanisms"]!])
        XCTAssertEqual(resolved["tls"], properties["security.protocol"]!.hasSuffix("SSL") ? "enable" : "disable")
        XCTAssertEqual(resolved["username"], properties["sasl.username"])
        XCTAssertEqual(resolved["password"], values["kafka-password"], "the same password the workers use")
    }

    /// A Job's template is immutable, so each release needs a Job of its own: the name carries
    /// `blendd --version`, and finished Jobs clean themselves up.
    func testTheMigrateJobIsNamedForTheReleaseAndDeletedAfterItFinishes() throws {
        let source = try String(contentsOf: RepositoryPaths.root.appendingPathComponent("Sources/blendd/Blendd.swift"), encoding: .utf8)
        let match = try XCTUnwrap(source.range(of: #"static let version = "[0-9.]+""#, options: .regularExpression))
        let version = source[match].split(separator: "\"")[1]
        let job = try XCTUnwrap(try kubernetesDocuments()["Job"]?.first)
        XCTAssertEqual((job["metadata"] as! [String: Any])["name"] as? String, "blendd-migrate-" + version.replacingOccurrences(of: ".", with: "-"))
        let ttl = try XCTUnwrap((job["spec"] as! [String: Any])["ttlSecondsAfterFinished"] as? Int)
        XCTAssertGreaterThan(ttl, 0)
    }

    func testTheImageBuildContextLeavesOutBuildTreesModelsAndHistory() throws {
        let ignore = try String(contentsOf: RepositoryPaths.root.appendingPathComponent(".dockerignore"), encoding: .utf8)
        let rules = Set(ignore.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty && !$0.hasPrefix("#") })
        for excluded in [".build", ".build*", ".git", "models", "**/*.safetensors", "**/*.bin"] {
            XCTAssertTrue(rules.contains(excluded), ".dockerignore leaves out \(excluded)")
        }
        let dockerfile = try String(contentsOf: deploy.appendingPathComponent("Dockerfile"), encoding: .utf8)
        let copied = dockerfile.split(separator: "\n").filter { $0.hasPrefix("COPY ") && !$0.contains("--from") }.map { $0.split(separator: " ")[1] }
        XCTAssertFalse(copied.isEmpty)
        for source in copied {
            XCTAssertFalse(rules.contains(String(source)), "the Dockerfile copies \(source), which .dockerignore leaves out")
            if source != "Package.swift" {
                XCTAssertTrue(FileManager.default.fileExists(atPath: RepositoryPaths.root.appendingPathComponent(String(source)).path), "\(source) exists")
            }
        }
        XCTAssertTrue(copied.contains("Plugins"), "the BuildCommit plugin is part of the build")
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
