import Foundation
import XCTest
@testable import BlendCore

/// Every numeric setting, generated from the declaration table, through every loader.
final class ConfigurationBoundaryTests: XCTestCase {
    private var numeric: [ConfigurationSetting] { ConfigurationLoader.settings.filter { !$0.boundaries.inside.isEmpty } }

    private func temporaryFile(_ text: String, suffix: String = ".yaml") throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("blendd-\(UUID().uuidString)\(suffix)").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    /// `path: value` nested as YAML sections.
    private func yaml(_ path: String, _ value: String) -> String {
        let parts = path.split(separator: ".")
        return parts.enumerated().map { i, part in
            String(repeating: "  ", count: i) + part + ":" + (i == parts.count - 1 ? " \(value)" : "")
        }.joined(separator: "\n")
    }

    /// The same value given through each loader: YAML file, BLENDD_* variable, BLENDD_*_FILE, --set.
    private func loadEachWay(_ setting: ConfigurationSetting, _ value: String) throws -> [(String, LoadedConfiguration)] {
        [
            ("file", ConfigurationLoader.load(file: try temporaryFile(yaml(setting.path, value)), environment: [:])),
            ("environment", ConfigurationLoader.load(file: nil, environment: [setting.environmentName: value])),
            ("secret file", ConfigurationLoader.load(file: nil, environment: [setting.environmentName + "_FILE": try temporaryFile(value + "\n", suffix: "")])),
            ("flag", ConfigurationLoader.load(file: nil, environment: [:], overrides: ["\(setting.path)=\(value)"])),
        ]
    }

    func testTheTableDeclaresARangeForEveryNumericSetting() {
        XCTAssertGreaterThanOrEqual(numeric.count, 35)
        for path in ["supervisor.restart_initial_ms", "supervisor.restart_max_ms", "supervisor.crash_loop_window_seconds",
                     "supervisor.stall_seconds", "kafka.session_timeout_ms", "kafka.delivery_timeout_ms", "outbox.claim_seconds"] {
            XCTAssertTrue(numeric.contains { $0.path == path }, path)
        }
        let defaults = BlendConfiguration()
        for setting in ConfigurationLoader.settings where setting.path != "worker_id" {
            XCTAssertNil(setting.problem(defaults), "the default of \(setting.path) lies in its own range")
        }
    }

    func testEveryNumericSettingAcceptsItsBoundsAndRefusesJustPastThemThroughEveryLoader() throws {
        for setting in numeric {
            for value in setting.boundaries.inside {
                for (way, loaded) in try loadEachWay(setting, value) {
                    let own = loaded.problems.filter { $0.location == setting.path && $0.message.hasPrefix("must be between") }
                    XCTAssertEqual(own, [], "\(setting.path)=\(value) from the \(way) is inside the declared range")
                    XCTAssertFalse(loaded.problems.contains { $0.message.contains("must be an integer") || $0.message.contains("must be a number") },
                                   "\(setting.path)=\(value) from the \(way) parses: \(loaded.problems)")
                    XCTAssertEqual(setting.value(in: loaded.configuration), setting.value(in: {
                        var c = BlendConfiguration()
                        try! setting.apply(&c, .string(value))
                        return c
                    }()), "\(setting.path)=\(value) from the \(way) is the value used")
                }
            }
            for value in setting.boundaries.outside {
                for (way, loaded) in try loadEachWay(setting, value) {
                    // A value past its range may break a rule with another setting as well.
                    let own = loaded.problems.filter { $0.location == setting.path && $0.message.hasPrefix("must be between") }
                    XCTAssertEqual(own.count, 1, "\(setting.path)=\(value) from the \(way) is refused: \(loaded.problems)")
                }
            }
        }
    }

    func testAllLowestAndAllHighestValuesTogetherAreAValidConfiguration() {
        for (label, pick) in [("lowest", 0), ("highest", 1)] {
            let overrides = numeric.map { "\($0.path)=\($0.boundaries.inside[pick])" }
            let loaded = ConfigurationLoader.load(file: nil, environment: [:], overrides: overrides)
            XCTAssertEqual(loaded.problems, [], "every setting at its \(label) value at once")
        }
    }

    func testTheCrashingValuesOfIssue16AreRefused() {
        for (override, path) in [("supervisor.restart_initial_ms=0", "supervisor.restart_initial_ms"),
                                 ("supervisor.restart_max_ms=-1", "supervisor.restart_max_ms"),
                                 ("supervisor.crash_loop_window_seconds=-5", "supervisor.crash_loop_window_seconds"),
                                 ("supervisor.stall_seconds=-1", "supervisor.stall_seconds")] {
            let loaded = ConfigurationLoader.load(file: nil, environment: [:], overrides: [override])
            XCTAssertTrue(loaded.problems.contains { $0.location == path }, "\(override): \(loaded.problems)")
        }
    }

    func testRulesBetweenSettingsAreReportedWhereTheyCanBeFixed() {
        func problems(_ overrides: [String]) -> [String] {
            ConfigurationLoader.load(file: nil, environment: [:], overrides: overrides).problems.map(\.description)
        }
        XCTAssertEqual(problems(["supervisor.restart_initial_ms=5000", "supervisor.restart_max_ms=4999"]),
                       ["supervisor.restart_max_ms: must be at least supervisor.restart_initial_ms (5000), is 4999"])
        XCTAssertEqual(problems(["retry.initial_ms=10", "retry.max_ms=9"]), ["retry.max_ms: must be at least retry.initial_ms (10), is 9"])
        XCTAssertEqual(problems(["kafka.session_timeout_ms=6000", "kafka.heartbeat_interval_ms=2001"]),
                       ["kafka.heartbeat_interval_ms: must be at most a third of kafka.session_timeout_ms (6000), is 2001"])
        XCTAssertEqual(problems(["kafka.session_timeout_ms=6000", "kafka.heartbeat_interval_ms=2000"]), [])
        XCTAssertEqual(problems(["outbox.claim_seconds=30", "kafka.delivery_timeout_ms=25000"]), [])
        XCTAssertEqual(problems(["outbox.claim_seconds=30", "kafka.delivery_timeout_ms=25001"]).count, 1)
        XCTAssertTrue(problems(["outbox.claim_seconds=20"]).first?.hasPrefix("kafka.delivery_timeout_ms: must end 5000 ms before outbox.claim_seconds (20 s)") ?? false,
                      "the default delivery timeout (20 s) does not fit a 20 s claim")
        XCTAssertEqual(problems(["supervisor.heartbeat_seconds=5", "supervisor.heartbeat_timeout_seconds=10"]),
                       ["supervisor.heartbeat_timeout_seconds: must exceed two heartbeat intervals (10.0 s), is 10.0"])
        XCTAssertEqual(problems(["limits.max_text_bytes=2000", "limits.max_job_bytes=1999"]),
                       ["limits.max_job_bytes: must be at least limits.max_text_bytes (2000), is 1999"])
    }

    func testTheDefaultsMovePartitionsWithinFifteenSecondsAndDeliverWithinTheClaim() {
        let c = BlendConfiguration()
        XCTAssertLessThanOrEqual(c.kafka.sessionTimeoutMilliseconds + 3 * c.kafka.heartbeatIntervalMilliseconds, 15000)
        XCTAssertLessThan(Double(c.kafka.deliveryTimeoutMilliseconds), c.outbox.claimSeconds * 1000)
        XCTAssertFalse(c.kafka.staticMembership)
    }

    func testSettingsManagedByBlenddCannotBeSetAsRawKafkaProperties() {
        for property in ["message.timeout.ms", "delivery.timeout.ms", "group.instance.id"] {
            let loaded = ConfigurationLoader.load(file: nil, environment: [:], overrides: ["kafka.properties.\(property)=1"])
            XCTAssertEqual(loaded.problems.map(\.location), ["kafka.properties.\(property)"], property)
        }
    }

    func testEveryKindRefusesAValueOfTheWrongType() {
        for setting in ConfigurationLoader.settings {
            let wrong: String
            switch setting.kind {
            case .integer: wrong = "1.5"
            case .number: wrong = "fast"
            case .boolean: wrong = "maybe"
            case .choice: wrong = "none-of-these"
            case .string: continue
            }
            let loaded = ConfigurationLoader.load(file: nil, environment: [:], overrides: ["\(setting.path)=\(wrong)"])
            XCTAssertEqual(loaded.problems.map(\.location), ["--set \(setting.path)"], "\(setting.path)=\(wrong)")
        }
    }

    func testAReloadAppliesTheWorkerCountAndNamesWhatNeedsARestart() {
        let old = BlendConfiguration()
        var new = old
        new.supervisor.workers = 3
        new.batching.maxJobs = 4
        new.kafka.properties["client.rack"] = "b"
        let plan = ConfigurationLoader.reloadPlan(from: old, to: new)
        XCTAssertEqual(plan.apply, ["supervisor.workers"])
        XCTAssertEqual(plan.needRestart, ["batching.max_jobs", "kafka.properties"])
        XCTAssertTrue(ConfigurationLoader.reloadPlan(from: old, to: old) == ([], []))
    }
}
